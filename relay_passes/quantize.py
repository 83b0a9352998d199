"""Quantize: float graph -> the integer graph of a calibrated QuantizedNet (bctvm.quant).

Matches:  in the folded float graph, every op of the QuantizedNet's integer layers:
          - bctvm.block_conv2d [-> multiply(sign)] [-> add(residual)] [-> relu] as one QConv
            (found by its `layer` attribute = the QConv's source conv; the chain must match
            the QConv's flags: residual add iff QConv.residual, relu iff QConv.relu);
          - nn.max_pool2d / nn.relu / add of integer tensors as QMaxPool / QRelu / QAdd
            (found by their input tensors).
Produces: bctvm.quantize(x, e_in) on the network input; bctvm.qblock_conv2d with the int8
          weights, int32 bias, sign, shift / residual_shift / relu of the QConv;
          bctvm.qmax_pool2d, bctvm.qrelu, bctvm.qadd; bctvm.dequantize(boundary, e_b) where
          the boundary tensor enters the float host head, which stays the float graph's own
          ops (avg-pool, flatten, linear, softmax).
Requires: LegalizeBlockConv, BindParams, FoldBN; a QuantizedNet calibrated on the same model
          (`bctvm.quant.calibrate`). All numbers come from the QuantizedNet: one calibration,
          one set of numbers, so the compiled module equals IntegerReference bit for bit.

A float op in the integer part that the QuantizedNet does not describe, or a graph that
disagrees with the QuantizedNet (other block size, another input tensor), raises
UnsupportedOpError / BadInputError naming the layer.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from bctvm.errors import BadInputError, UnsupportedOpError

from . import ops
from .base import BctvmPass
from .graph import bindings, rebuild, replace_main, substitute, users

SKIP = object()


def _ints(v) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


class _Match:
    """Where each QuantizedNet layer sits in the float graph."""

    def __init__(self):
        self.anchor: dict = {}  # var -> (qlayer, {"data": var, "residual": var, ...})
        self.skip: set = set()  # vars fused into an anchor
        self.tensor: dict = {}  # var -> qnet tensor name


def _is_sign_multiply(value, cur) -> bool:
    if ops.op_name(value) != "relax.multiply":
        return False
    a, b = value.args
    other = b if a.same_as(cur) else a if b.same_as(cur) else None
    if not isinstance(other, tvm.ir.GenericConst):
        return False
    vals = other.value.numpy()
    return bool(np.all(np.abs(vals) == 1))


class Quantize(BctvmPass):
    """Float graph -> integer graph of `qnet` (see module docstring)."""

    def __init__(self, qnet):
        self.qnet = qnet
        self.convs = {}
        for layer in qnet.layers:
            if layer.kind == "conv":
                self.convs[layer.sources.get("conv", layer.name)] = layer
                self.convs.setdefault(layer.name, layer)

    # ---- analysis ----------------------------------------------------------------------------
    def match(self, func: relax.Function) -> _Match:
        """Locate every integer layer of the QuantizedNet in `func`."""
        qnet = self.qnet
        m = _Match()
        m.tensor[func.params[0]] = qnet.input_name
        value_of = dict(bindings(func))
        use = users(func)
        used_layers: set[str] = set()
        last_layer = "the network input"

        def single_user(v):
            u = use.get(v, [])
            return u[0] if len(u) == 1 and u[0] != "@return" else None

        for var, value in bindings(func):
            if var in m.skip or var in m.anchor:
                continue
            name = ops.op_name(value)
            int_args = [a for a in relax.analysis.free_vars(value) if a in m.tensor]
            if name == ops.BLOCK_CONV2D:
                layer_name = ops.attrs_dict(value)["layer"]
                q = self.convs.get(layer_name)
                if q is None:
                    raise UnsupportedOpError(
                        f"layer '{layer_name}': conv not in the quantized network")
                data = value.args[0]
                if m.tensor.get(data) != q.inputs[0]:
                    raise BadInputError(
                        f"layer '{q.name}': reads '{m.tensor.get(data, 'a float tensor')}' in "
                        f"the graph but '{q.inputs[0]}' in the quantized network")
                chain, info = [var], {"data": data, "call": value, "sign": False}
                cur = var
                nxt = single_user(cur)
                if nxt is not None and _is_sign_multiply(value_of[nxt], cur):
                    chain.append(nxt)
                    info["sign"] = True
                    cur = nxt
                if q.residual is not None:
                    nxt = single_user(cur)
                    val = value_of.get(nxt)
                    if ops.op_name(val) != "relax.add":
                        raise UnsupportedOpError(
                            f"layer '{q.name}': expected the residual add after the conv, "
                            f"found '{ops.op_name(val) or 'nothing'}'")
                    other = val.args[1] if val.args[0].same_as(cur) else val.args[0]
                    if m.tensor.get(other) != q.residual:
                        raise BadInputError(
                            f"layer '{q.name}': residual is '{m.tensor.get(other, 'float')}' "
                            f"in the graph but '{q.residual}' in the quantized network")
                    info["residual"] = other
                    chain.append(nxt)
                    cur = nxt
                cur = _activation(q, cur, chain, single_user, value_of)
                m.skip.update(chain[:-1])
                m.anchor[cur] = (q, info)
                m.tensor[cur] = q.output
                used_layers.add(q.name)
                last_layer = q.name
                continue
            if not int_args:
                continue
            if any(m.tensor[a] == qnet.boundary for a in int_args) and \
                    not self._integer_consumer(name, value, m):
                continue  # host head op fed by the boundary tensor
            q, info = self._standalone(name, value, m, used_layers, last_layer)
            chain = [var]
            out = _activation(q, var, chain, single_user, value_of) if q.kind == "add" else var
            m.skip.update(chain[:-1])
            m.anchor[out] = (q, info)
            m.tensor[out] = q.output
            used_layers.add(q.name)
            last_layer = q.name
        missing = [layer.name for layer in qnet.layers if layer.name not in used_layers]
        if missing:
            raise BadInputError(
                f"quantized network layers not found in the graph: {', '.join(missing[:5])}")
        return m

    def _integer_consumer(self, name, value, m) -> bool:
        """Does an integer layer of the net consume this op's inputs (not the host head)?"""
        if not isinstance(value, relax.Call):
            return False
        ins = [m.tensor[a] for a in value.args if isinstance(a, relax.Var) and a in m.tensor]
        for layer in self.qnet.layers:
            if layer.kind != "conv" and sorted(layer.inputs) == sorted(ins) and \
                    _kind_of(name) == layer.kind:
                return True
        return False

    def _standalone(self, name, value, m, used, after):
        kind = _kind_of(name)
        ins = [m.tensor.get(a) for a in value.args if isinstance(a, relax.Var)]
        if kind is None or None in ins:
            raise UnsupportedOpError(
                f"op '{name or type(value).__name__}' after layer '{after}' is not part of "
                f"the integer network (bctvm runs conv/max-pool/ReLU/add on int8 before the "
                f"host head)")
        args = [a for a in value.args if isinstance(a, relax.Var)]
        for layer in self.qnet.layers:
            if layer.kind != kind or layer.name in used:
                continue
            if kind == "add" and sorted(layer.inputs) == sorted(ins):
                return layer, {"args": args, "swap": layer.inputs[0] != ins[0]}
            if kind != "add" and layer.inputs[0] == ins[0]:
                return layer, {"args": args}
        raise UnsupportedOpError(
            f"op '{name}' on '{', '.join(ins)}' (after layer '{after}') has no matching layer "
            f"in the quantized network")

    # ---- rewriting ---------------------------------------------------------------------------
    def transform_module(self, mod: tvm.IRModule, ctx=None) -> tvm.IRModule:
        func = mod["main"]
        m = self.match(func)
        qnet = self.qnet
        x = func.params[0]
        ints: dict = {}  # old var -> new int8 expr
        deq: dict = {}

        def int_of(bb, v):
            if v not in ints and v.same_as(x):
                ints[v] = bb.emit(ops.quantize(x, exponent=qnet.input_exponent),
                                  name_hint="x_int8")
            return ints[v]

        def dequantized(bb, v):
            if v not in deq:
                e = qnet.exponents[m.tensor[v]]
                deq[v] = bb.emit(ops.dequantize(ints[v], exponent=e), name_hint="boundary")
            return deq[v]

        def handle(bb, var, value, env):
            if var in m.skip:
                return SKIP
            if var in m.anchor:
                q, info = m.anchor[var]
                new = bb.emit(self._int_op(q, info, lambda v: int_of(bb, v)),
                              name_hint=q.name.replace(".", "_"))
                ints[var] = new
                return new
            fixed = {a: dequantized(bb, a) for a in relax.analysis.free_vars(value)
                     if a in ints}
            if fixed:
                return bb.emit(substitute(value, {**env, **fixed}), name_hint=var.name)
            return None

        def finish(bb, out, env):
            fixed = {a: dequantized(bb, a) for a in relax.analysis.free_vars(out) if a in ints}
            return substitute(out, fixed) if fixed else out

        new = rebuild(func, handle, finish=finish, skip=SKIP)
        return replace_main(mod, new)

    def _int_op(self, q, info, int_of):
        if q.kind == "conv":
            call = info["call"]
            a = ops.attrs_dict(call)
            self._check_conv(q, a)
            o = q.weight.shape[0]
            sign = q.sign.astype(np.int32) if q.sign is not None else np.ones(o, np.int32)
            residual = int_of(info["residual"]) if q.residual is not None else None
            return ops.qblock_conv2d(
                int_of(info["data"]), ops.const(q.weight.astype(np.int8)),
                ops.const(q.bias.astype(np.int32)), ops.const(sign), residual,
                block=a["block"], padding=a["padding"], padding_mode=a["padding_mode"],
                kernel=a["kernel"], dilation=a["dilation"], strides=a.get("strides", (1, 1)),
                groups=a["groups"], pool=a["pool"], has_sign=q.sign is not None,
                shift=q.shift, relu=q.relu,
                residual_shift=q.residual_shift if q.residual is not None else 0, layer=q.name,
                clip=_clip(q))
        if q.kind == "maxpool":
            if q.ceil_mode:
                raise UnsupportedOpError(f"layer '{q.name}': max-pool with ceil_mode")
            ph, pw = q.padding
            return ops.qmax_pool2d(int_of(info["args"][0]), pool_size=q.kernel, strides=q.stride,
                                   padding=(ph, pw, ph, pw), dilation=q.dilation, layer=q.name)
        if q.kind == "relu":
            return ops.qrelu(int_of(info["args"][0]), layer=q.name)
        if q.kind == "avgpool":
            ph, pw = q.padding
            return ops.qavg_pool2d(int_of(info["args"][0]), pool_size=q.kernel,
                                   strides=q.stride, padding=(ph, pw, ph, pw),
                                   divisor=q.divisor, layer=q.name)
        if q.kind == "add":
            a, b = info["args"]
            if info.get("swap"):
                a, b = b, a
            return ops.qadd(int_of(a), int_of(b), shift_a=q.e_a - q.e_x, shift_b=q.e_a - q.e_r,
                            shift=q.shift, relu=q.relu, layer=q.name, clip=_clip(q))
        raise UnsupportedOpError(f"layer '{q.name}': kind '{q.kind}'")

    def _check_conv(self, q, a) -> None:
        ph, pw = q.padding
        want = dict(block=tuple(q.block), padding=(ph, pw, ph, pw), pool=bool(q.pool),
                    groups=int(q.groups), padding_mode=q.padding_mode)
        have = dict(block=a["block"], padding=a["padding"], pool=a["pool"], groups=a["groups"],
                    padding_mode=a["padding_mode"])
        for key, val in want.items():
            if have[key] != val:
                raise BadInputError(
                    f"layer '{q.name}': {key} is {have[key]} in the graph but {val} in the "
                    f"quantized network (calibrated on another model or input size?)")


def _kind_of(op: str | None) -> str | None:
    return {"relax.nn.max_pool2d": "maxpool", "relax.nn.relu": "relu",
            "relax.nn.avg_pool2d": "avgpool", "relax.add": "add"}.get(op or "")


def _clip(q):
    """(lo, hi) int8 bounds of a fused clamp / ReLU6, or None."""
    return None if q.clip_lo is None else (int(q.clip_lo), int(q.clip_hi))


def _activation(q, cur, chain, single_user, value_of):
    """Extend a layer's chain by its fused ReLU (q.relu) or clamp (q.clip_lo); returns the
    chain's last var."""
    want = "relax.nn.relu" if q.relu else "relax.clip" if q.clip_lo is not None else None
    if want is None:
        return cur
    nxt = single_user(cur)
    if ops.op_name(value_of.get(nxt)) != want:
        raise UnsupportedOpError(
            f"layer '{q.name}': expected {want.split('.')[-1]} after the layer's chain")
    chain.append(nxt)
    return nxt
