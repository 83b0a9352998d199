"""LegalizeBlockConv: exported block-conv chains -> one `bctvm.block_conv2d` per layer.

Matches (Relax dataflow patterns, tvm.relax.dpl), tried in this order:
  1. multi-block: reshape(x, [n, c, nh, bh, nw, bw]) -> permute_dims([0,2,4,1,3,5])
     -> reshape([n*nh*nw, c, bh, bw]) -> nn.pad -> nn.conv2d (stride 1, padding 0)
     [-> add(reshape(bias, [1, O, 1, 1]))] -> reshape([n, nh, nw, O, oh, ow])
     -> permute_dims([0,3,1,4,2,5]) -> reshape([n, O, nh*oh, nw*ow])
  2. single block: nn.pad -> nn.conv2d [-> add(bias)]
  3. a plain nn.conv2d (its own zero padding, any stride: one whole-map block) [-> add(bias)]
  4. nn.max_pool2d(2x2, stride 2, no padding, floor) of a block_conv2d used once -> the
     same block_conv2d with pool=True (BlockConv2d's stride-2 form).
Produces: `bctvm.block_conv2d(x, weight, bias)` with attrs block, padding, padding_mode,
  kernel, dilation, groups, pool, layer. `layer` is the PyTorch module path of the conv,
  taken from the weight parameter's qualified name ("bctvm.param_fqn" attribute written by
  ImportModel); weights bound as constants get conv0, conv1, ... in graph order.
Requires: the module as ImportModel produces it (NCHW data, OIHW weights, float32).

A chain that does not have the block-conv shape (other reshapes/permutes) is left alone. A
conv2d that cannot be a block conv (stride != 1 inside a multi-block chain, non-zero constant
pad value, non-NCHW layout) raises UnsupportedOpError naming the layer.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

from bctvm.errors import UnsupportedOpError

from . import ops
from .base import BctvmPass, relax_functions, replace_functions, rewrite


def _op(name, *args):
    return is_op(name)(*args, varg_default_wildcard=True)


def _ints(arr) -> tuple[int, ...]:
    return tuple(int(v) for v in arr)


def _shape_arg(call) -> tuple[int, ...] | None:
    """Target shape of a relax.reshape call (None if not static)."""
    try:
        return _ints(call.args[1].values)
    except (AttributeError, TypeError):
        return None


class _Namer:
    """Layer names from weight parameter names (or conv<k> for constant weights)."""

    def __init__(self, fqn: dict[str, str]):
        self.fqn = fqn
        self.count = 0

    def __call__(self, weight) -> str:
        if isinstance(weight, relax.Var) and weight.name in self.fqn:
            name = self.fqn[weight.name]
            return name[: -len(".weight")] if name.endswith(".weight") else name
        name = f"conv{self.count}"
        self.count += 1
        return name


def _bias_vector(expr, channels: int):
    """1-D bias from the add operand: reshape(b, [1, O, 1, 1]) or a (1, O, 1, 1) constant."""
    if ops.op_name(expr) == "relax.reshape" and _shape_arg(expr) == (1, channels, 1, 1):
        inner = expr.args[0]
        if ops.static_shape(inner) == (channels,):
            return inner
    if isinstance(expr, tvm.ir.GenericConst) and ops.static_shape(expr) == (1, channels, 1, 1):
        return ops.const(expr.value.numpy().reshape(channels))
    if ops.static_shape(expr) in ((1, channels, 1, 1), (channels, 1, 1)):
        return relax.op.reshape(expr, (channels,))
    return None


def _zero_bias(channels: int, dtype: str):
    return ops.const(np.zeros(channels, dtype=dtype))


def _conv_params(conv, layer: str, strided_ok: bool = False) -> dict:
    """Check a conv2d call for block-conv use; return its dilation/groups/padding/strides."""
    a = conv.attrs
    if _ints(a["strides"]) != (1, 1) and not strided_ok:
        raise UnsupportedOpError(
            f"layer '{layer}': conv2d with stride {_ints(a['strides'])} inside a block-conv "
            f"chain (a block conv has stride 1; stride 2 is its 2x2 max-pool)")
    if str(a["data_layout"]) != "NCHW" or str(a["kernel_layout"]) != "OIHW":
        raise UnsupportedOpError(
            f"layer '{layer}': conv2d layout {a['data_layout']}/{a['kernel_layout']} "
            f"(bctvm expects NCHW/OIHW)")
    pad = _ints(a["padding"])  # (top, left, bottom, right)
    return dict(dilation=_ints(a["dilation"]), groups=int(a["groups"]), conv_padding=pad,
                strides=_ints(a["strides"]))


def _pad_params(pad_call, layer: str) -> tuple[tuple[int, int, int, int], str]:
    a = pad_call.attrs
    width = _ints(a["pad_width"])
    if len(width) != 8 or any(width[:4]):
        raise UnsupportedOpError(f"layer '{layer}': pad {width} pads batch or channels")
    t, b, l, r = width[4:]
    mode = str(a["pad_mode"])
    if mode == "constant" and float(a["pad_value"]) != 0.0:
        raise UnsupportedOpError(
            f"layer '{layer}': constant pad value {float(a['pad_value'])} (only 0 is supported)")
    if mode not in ("constant", "replicate", "reflect"):
        raise UnsupportedOpError(f"layer '{layer}': pad mode '{mode}'")
    return (t, l, b, r), mode


class LegalizeBlockConv(BctvmPass):
    """Block-conv chains -> bctvm.block_conv2d (see module docstring)."""

    def __init__(self):
        # 1. multi-block chain
        self.x = wildcard()
        self.w = wildcard()
        self.b = wildcard()
        self.r1 = _op("relax.reshape", self.x)
        self.p1 = _op("relax.permute_dims", self.r1)
        self.r2 = _op("relax.reshape", self.p1)
        self.pad = _op("relax.nn.pad", self.r2)
        self.conv = _op("relax.nn.conv2d", self.pad, self.w)
        self.add = _op("relax.add", self.conv, self.b)
        self.r3 = _op("relax.reshape", self.add | self.conv)
        self.p2 = _op("relax.permute_dims", self.r3)
        self.r4 = _op("relax.reshape", self.p2)
        # 2. single block (pad -> conv [-> add])
        self.sx, self.sw, self.sb = wildcard(), wildcard(), wildcard()
        self.spad = _op("relax.nn.pad", self.sx)
        self.sconv = _op("relax.nn.conv2d", self.spad, self.sw)
        self.sadd = _op("relax.add", self.sconv, self.sb)
        # 3. plain conv [-> add]
        self.cx, self.cw, self.cb = wildcard(), wildcard(), wildcard()
        self.cconv = _op("relax.nn.conv2d", self.cx, self.cw)
        self.cadd = _op("relax.add", self.cconv, self.cb)
        # 4. pool folding
        self.bc = _op(ops.BLOCK_CONV2D)
        self.mp = _op("relax.nn.max_pool2d", self.bc)

    def transform_module(self, mod: tvm.IRModule, ctx=None) -> tvm.IRModule:
        return replace_functions(mod, {gv: self.transform_function(f)
                                       for gv, f in relax_functions(mod)})

    def transform_function(self, func: relax.Function) -> relax.Function:
        fqn = {}
        if func.attrs is not None and "bctvm.param_fqn" in func.attrs.keys():
            fqn = {str(k): str(v) for k, v in func.attrs["bctvm.param_fqn"].items()}
        self.namer = _Namer(fqn)
        func = rewrite(self.r4, self._rewrite_multi, func)
        func = rewrite(self.sadd, self._rewrite_single, func)
        func = rewrite(self.sconv, self._rewrite_single, func)
        func = rewrite(self.cadd, self._rewrite_plain, func)
        func = rewrite(self.cconv, self._rewrite_plain, func)
        uses = _use_counts(func)
        func = rewrite(self.mp, lambda e, m: self._rewrite_pool(e, m, uses), func)
        return relax.analysis.remove_all_unused(func)

    # rewriters -----------------------------------------------------------------------------
    def _rewrite_multi(self, expr, m):
        x, w = m[self.x], m[self.w]
        try:
            n, c, h, wd = ops.static_shape(x)
            o, _, kh, kw = ops.static_shape(w)
        except UnsupportedOpError:
            return expr
        r1, r2, r3, r4 = (_shape_arg(m[p]) for p in (self.r1, self.r2, self.r3, self.r4))
        if r1 is None or len(r1) != 6 or r1[0] != n or r1[1] != c:
            return expr
        _, _, nh, bh, nw, bw = r1
        if _ints(m[self.p1].attrs["axes"]) != (0, 2, 4, 1, 3, 5) or \
                r2 != (n * nh * nw, c, bh, bw) or \
                _ints(m[self.p2].attrs["axes"]) != (0, 3, 1, 4, 2, 5):
            return expr
        if r3 is None or len(r3) != 6 or r3[:4] != (n, nh, nw, o):
            return expr
        oh, ow = r3[4], r3[5]
        if r4 != (n, o, nh * oh, nw * ow):
            return expr
        layer = self.namer(w)
        padding, mode = _pad_params(m[self.pad], layer)
        cp = _conv_params(m[self.conv], layer)
        if any(cp["conv_padding"]):
            raise UnsupportedOpError(f"layer '{layer}': conv2d pads again after the block pad")
        bias = self._bias(m, self.add, self.b, o, x, layer)
        if bias is None:
            return expr
        return ops.block_conv2d(x, w, bias, block=(bh, bw), padding=padding, padding_mode=mode,
                                dilation=cp["dilation"], groups=cp["groups"], layer=layer)

    def _rewrite_single(self, expr, m):
        x, w = m[self.sx], m[self.sw]
        n, c, h, wd = ops.static_shape(x)
        o = ops.static_shape(w)[0]
        layer = self.namer(w)
        padding, mode = _pad_params(m[self.spad], layer)
        cp = _conv_params(m[self.sconv], layer, strided_ok=True)
        if any(cp["conv_padding"]):
            raise UnsupportedOpError(f"layer '{layer}': conv2d pads again after nn.pad")
        bias = self._bias(m, self.sadd, self.sb, o, x, layer)
        if bias is None:
            return expr
        return ops.block_conv2d(x, w, bias, block=(h, wd), padding=padding, padding_mode=mode,
                                dilation=cp["dilation"], groups=cp["groups"],
                                strides=cp["strides"], layer=layer)

    def _rewrite_plain(self, expr, m):
        x, w = m[self.cx], m[self.cw]
        n, c, h, wd = ops.static_shape(x)
        o = ops.static_shape(w)[0]
        layer = self.namer(w)
        cp = _conv_params(m[self.cconv], layer, strided_ok=True)
        bias = self._bias(m, self.cadd, self.cb, o, x, layer)
        if bias is None:
            return expr
        return ops.block_conv2d(x, w, bias, block=(h, wd), padding=cp["conv_padding"],
                                padding_mode="constant", dilation=cp["dilation"],
                                groups=cp["groups"], strides=cp["strides"], layer=layer)

    def _bias(self, m, add_pat, bias_pat, channels, x, layer):
        """The bias vector (zeros when the matched chain has no add)."""
        if add_pat in m:
            return _bias_vector(m[bias_pat], channels)
        return _zero_bias(channels, ops.dtype_of(x))

    def _rewrite_pool(self, expr, m, uses):
        pool, bc = m[self.mp], m[self.bc]
        a = pool.attrs
        if (_ints(a["pool_size"]) != (2, 2) or _ints(a["strides"]) != (2, 2)
                or any(_ints(a["padding"])) or _ints(a["dilation"]) != (1, 1)
                or bool(a["ceil_mode"]) or str(a["layout"]) != "NCHW"):
            return expr
        attrs = ops.attrs_dict(bc)
        if attrs["pool"] or attrs.get("strides", (1, 1)) != (1, 1) or uses.get(_key(bc), 0) != 1:
            return expr
        attrs["pool"] = True
        return relax.Call(bc.op, list(bc.args), ops.make_attrs(**attrs))


def _key(call):
    return call.__hash__()


def _use_counts(func: relax.Function) -> dict:
    """How many times the value of each bound block_conv2d call is used (keyed by the call)."""
    value_of = {}
    counts = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            value_of[binding.var] = binding.value
    for block in func.body.blocks:
        for binding in block.bindings:
            for v in relax.analysis.free_vars(binding.value):
                val = value_of.get(v)
                if ops.op_name(val) == ops.BLOCK_CONV2D:
                    counts[_key(val)] = counts.get(_key(val), 0) + 1
    for v in relax.analysis.free_vars(func.body.body):
        val = value_of.get(v)
        if ops.op_name(val) == ops.BLOCK_CONV2D:
            counts[_key(val)] = counts.get(_key(val), 0) + 2  # returned: keep unpooled copy
    return counts
