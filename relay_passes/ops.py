"""The bctvm Relax operators: registration, type inference, legalization, constructors.

Each operator is a Relax `Op` registered from Python with `FInferType` (output type from the
argument types and the call's DictAttrs), `FPurity` (all pure) and `FLegalize` (a TE compute
from `te_compute.py`, so every module builds for `llvm` and runs on the Relax VM).

| op                    | args                                   | result                      |
|-----------------------|----------------------------------------|-----------------------------|
| bctvm.block_conv2d    | data f32 NCHW, weight OIHW, bias [O]   | f32 NCHW                    |
| bctvm.qblock_conv2d   | data i8, weight i8, bias i32, sign i32 | i8 (layout attr)            |
|                       | [, residual i8]                        |                             |
| bctvm.qmax_pool2d     | data i8                                | i8                          |
| bctvm.qadd            | a i8, b i8                             | i8                          |
| bctvm.qrelu           | data i8                                | i8                          |
| bctvm.quantize        | data f32                               | i8                          |
| bctvm.dequantize      | data i8                                | f32                         |
| bctvm.pack            | data NCHW                              | (N/b, C/c, H, W, b, c)      |
| bctvm.unpack          | data packed                            | NCHW                        |

Attributes (all ops carrying a `layer` name use it in every error message):
- block (bh, bw) in map pixels; padding (top, left, bottom, right); padding_mode
  constant | replicate | reflect; kernel (kh, kw); dilation (dh, dw); strides (sh, sw),
  (1, 1) except for a plain strided conv over one whole-map block; groups; pool (2x2/2
  max-pool after the conv); layer (module path).
- qblock_conv2d adds: layout ("NCHW" or "NCHW{b}n{c}c"), packed_groups (packed only),
  channels / in_channels (unpadded counts), has_sign, residual_shift, shift, relu.
- every packed op carries channels and batch_size: the logical (unpadded) N and C of its
  output, so its value can be unpacked.
- sign is an int32 [+1/-1] per (padded) output channel, applied after the pool.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from bctvm.errors import BlockShapeError, UnsupportedOpError

from . import te_compute as tc

BLOCK_CONV2D = "bctvm.block_conv2d"
QBLOCK_CONV2D = "bctvm.qblock_conv2d"
QMAX_POOL2D = "bctvm.qmax_pool2d"
QADD = "bctvm.qadd"
QRELU = "bctvm.qrelu"
QAVG_POOL2D = "bctvm.qavg_pool2d"
QUANTIZE = "bctvm.quantize"
DEQUANTIZE = "bctvm.dequantize"
PACK = "bctvm.pack"
UNPACK = "bctvm.unpack"

#: integer operators that can run on VTA (the rest run on the host)
VTA_OPS = (QBLOCK_CONV2D, QMAX_POOL2D, QADD, QRELU)

PLAIN = "NCHW"


# ---- attribute helpers --------------------------------------------------------------------


def make_attrs(**kw) -> tvm.ir.DictAttrs:
    """DictAttrs from Python values (tuples become arrays)."""
    return tvm.ir.make_node("ir.DictAttrs", **{k: (list(v) if isinstance(v, tuple) else v)
                                                for k, v in kw.items()})


def attrs_dict(call: relax.Call) -> dict:
    """The call's attributes as plain Python values (arrays -> tuples of int)."""
    out = {}
    for k in call.attrs.keys():
        v = call.attrs[k]
        if isinstance(v, (str, bool, int, float)):
            out[k] = v
        else:
            out[k] = tuple(int(x) for x in v)
    return out


def op_name(expr) -> str | None:
    """Name of the operator a Relax Call invokes ('' for non-op callees, None if no call)."""
    if not isinstance(expr, relax.Call):
        return None
    return expr.op.name if isinstance(expr.op, tvm.ir.Op) else ""


def _typed(expr):
    """`expr` with its type inferred if it has none yet (an un-emitted nested call)."""
    if not isinstance(expr.ty, (relax.TensorType, relax.TupleType)):
        expr = relax.BlockBuilder().normalize(expr)
    return expr


def static_shape(expr) -> tuple[int, ...]:
    """Static shape of a Relax tensor expression (raises if it is symbolic)."""
    shape = _typed(expr).ty.shape
    try:
        return tuple(int(s) for s in shape.values)
    except (TypeError, AttributeError):
        raise UnsupportedOpError(f"tensor {expr} has no static shape ({shape})") from None


def dtype_of(expr) -> str:
    return str(_typed(expr).ty.dtype)


def packed_layout(batch: int, block: int) -> str:
    """Layout string of a packed activation, e.g. NCHW1n16c."""
    return f"NCHW{batch}n{block}c"


def is_packed(layout: str) -> bool:
    return layout != PLAIN


# ---- shape rules --------------------------------------------------------------------------


def conv_out_hw(h: int, w: int, a: dict) -> tuple[int, int]:
    """Output map size of a (q)block_conv2d with attributes `a`, after the optional pool."""
    nh, nw, oh, ow = tc.block_geometry(h, w, a["block"], a["padding"], a["kernel"],
                                       a["dilation"], a.get("strides", (1, 1)))
    hh, ww = nh * oh, nw * ow
    return (hh // 2, ww // 2) if a["pool"] else (hh, ww)


def pool_out_hw(h: int, w: int, a: dict) -> tuple[int, int]:
    kh, kw = a["pool_size"]
    sh, sw = a["strides"]
    pt, pl, pb, pr = a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    return ((h + pt + pb - dh * (kh - 1) - 1) // sh + 1,
            (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)


def check_block_conv(layer: str, data_shape, weight_shape, a: dict) -> None:
    """Validate a block conv's geometry; raise BlockShapeError/UnsupportedOpError naming it."""
    h, w = data_shape[2], data_shape[3]
    bh, bw = a["block"]
    if bh <= 0 or bw <= 0 or h % bh or w % bw:
        raise BlockShapeError(
            f"layer '{layer}': block {bh}x{bw} does not divide the {h}x{w} feature map")
    if a["padding_mode"] not in tc.PAD_MODES:
        raise UnsupportedOpError(
            f"layer '{layer}': padding mode '{a['padding_mode']}' (supported: "
            f"{', '.join(tc.PAD_MODES)})")
    pt, pl, pb, pr = a["padding"]
    if a["padding_mode"] == "reflect" and max(pt, pb) >= bh or \
            a["padding_mode"] == "reflect" and max(pl, pr) >= bw:
        raise BlockShapeError(
            f"layer '{layer}': reflect padding {a['padding']} needs blocks larger than the "
            f"padding (block {bh}x{bw})")
    strides = a.get("strides", (1, 1))
    if strides != (1, 1) and (bh, bw) != (h, w):
        raise UnsupportedOpError(
            f"layer '{layer}': stride {strides} with {bh}x{bw} blocks of a {h}x{w} map (a "
            f"block conv has stride 1; stride 2 is its 2x2 max-pool)")
    _, _, oh, ow = tc.block_geometry(h, w, a["block"], a["padding"], a["kernel"],
                                     a["dilation"], strides)
    if oh <= 0 or ow <= 0:
        raise BlockShapeError(
            f"layer '{layer}': kernel {a['kernel']} (dilation {a['dilation']}) is larger than "
            f"the padded {bh}x{bw} block")
    if len(weight_shape) == 4:
        o, cg = weight_shape[0], weight_shape[1]
        if data_shape[1] != cg * a["groups"] or o % a["groups"]:
            raise UnsupportedOpError(
                f"layer '{layer}': weight {tuple(weight_shape)} does not match "
                f"{data_shape[1]} input channels with groups={a['groups']}")


# ---- FInferType ---------------------------------------------------------------------------


def _tensor(shape, dtype) -> relax.TensorType:
    return relax.TensorType([int(s) for s in shape], dtype)


def _infer_block_conv(call, _ctx):
    a = attrs_dict(call)
    n, _, h, w = static_shape(call.args[0])
    o = static_shape(call.args[1])[0]
    hh, ww = conv_out_hw(h, w, a)
    return _tensor((n, o, hh, ww), dtype_of(call.args[0]))


def _infer_qblock_conv(call, _ctx):
    a = attrs_dict(call)
    ds, ws = static_shape(call.args[0]), static_shape(call.args[1])
    h, w = ds[2], ds[3]
    hh, ww = conv_out_hw(h, w, a)
    if is_packed(a["layout"]):
        return _tensor((ds[0], ws[0], hh, ww, ds[4], ws[4]), "int8")
    return _tensor((ds[0], ws[0], hh, ww), "int8")


def _infer_qmax_pool(call, _ctx):
    a = attrs_dict(call)
    s = list(static_shape(call.args[0]))
    s[2], s[3] = pool_out_hw(s[2], s[3], a)
    return _tensor(s, dtype_of(call.args[0]))


def _infer_same(call, _ctx):
    return _tensor(static_shape(call.args[0]), dtype_of(call.args[0]))


def _infer_quantize(call, _ctx):
    return _tensor(static_shape(call.args[0]), "int8")


def _infer_dequantize(call, _ctx):
    return _tensor(static_shape(call.args[0]), "float32")


def _infer_pack(call, _ctx):
    a = attrs_dict(call)
    n, c, h, w = static_shape(call.args[0])
    b, k = a["batch"], a["block"]
    return _tensor((-(-n // b), -(-c // k), h, w, b, k), dtype_of(call.args[0]))


def _infer_unpack(call, _ctx):
    a = attrs_dict(call)
    s = static_shape(call.args[0])
    return _tensor((a["batch_size"], a["channels"], s[2], s[3]), dtype_of(call.args[0]))


# ---- FLegalize ----------------------------------------------------------------------------


def _legal_block_conv(bb, call):
    a = attrs_dict(call)

    def f(d, w, b):
        return tc.float_block_conv2d(d, w, b, block=a["block"], padding=a["padding"],
                                     padding_mode=a["padding_mode"], dilation=a["dilation"],
                                     groups=a["groups"], pool=a["pool"],
                                     strides=a.get("strides", (1, 1)))

    return bb.call_te(f, *call.args, primfunc_name_hint="block_conv2d")


def _legal_qblock_conv(bb, call):
    a = attrs_dict(call)
    has_res = len(call.args) == 5

    def f(d, w, b, s, *res):
        return tc.qblock_conv2d(
            d, w, b, s, res[0] if has_res else None, layout=a["layout"], block=a["block"],
            padding=a["padding"], padding_mode=a["padding_mode"], dilation=a["dilation"],
            groups=a["groups"], packed_groups=a.get("packed_groups", 1), pool=a["pool"],
            has_sign=a["has_sign"], residual_shift=a.get("residual_shift", 0),
            shift=a["shift"], relu=a["relu"], strides=a.get("strides", (1, 1)),
            clip=a.get("clip"))

    return bb.call_te(f, *call.args, primfunc_name_hint="qblock_conv2d")


def _legal_qmax_pool(bb, call):
    a = attrs_dict(call)
    return bb.call_te(lambda d: tc.qmax_pool2d(d, pool_size=a["pool_size"], strides=a["strides"],
                                               padding=a["padding"],
                                               dilation=a.get("dilation", (1, 1))),
                      call.args[0], primfunc_name_hint="qmax_pool2d")


def _legal_qadd(bb, call):
    a = attrs_dict(call)
    return bb.call_te(lambda x, y: tc.qadd(x, y, shift_a=a["shift_a"], shift_b=a["shift_b"],
                                           shift=a["shift"], relu=a["relu"],
                                           clip=a.get("clip")),
                      *call.args, primfunc_name_hint="qadd")


def _legal_qavg_pool(bb, call):
    a = attrs_dict(call)
    return bb.call_te(lambda d: tc.qavg_pool2d(d, pool_size=a["pool_size"], strides=a["strides"],
                                               padding=a["padding"], divisor=a["divisor"]),
                      call.args[0], primfunc_name_hint="qavg_pool2d")


def _legal_qrelu(bb, call):
    return bb.call_te(tc.qrelu, call.args[0], primfunc_name_hint="qrelu")


def _legal_quantize(bb, call):
    e = attrs_dict(call)["exponent"]
    return bb.call_te(lambda x: tc.quantize(x, exponent=e), call.args[0],
                      primfunc_name_hint="quantize")


def _legal_dequantize(bb, call):
    e = attrs_dict(call)["exponent"]
    return bb.call_te(lambda x: tc.dequantize(x, exponent=e), call.args[0],
                      primfunc_name_hint="dequantize")


def _legal_pack(bb, call):
    a = attrs_dict(call)
    return bb.call_te(lambda x: tc.pack(x, batch=a["batch"], block=a["block"]), call.args[0],
                      primfunc_name_hint="pack")


def _legal_unpack(bb, call):
    a = attrs_dict(call)
    return bb.call_te(lambda x: tc.unpack(x, channels=a["channels"],
                                          batch_size=a["batch_size"]),
                      call.args[0], primfunc_name_hint="unpack")


_REGISTRY = {
    BLOCK_CONV2D: (_infer_block_conv, _legal_block_conv),
    QBLOCK_CONV2D: (_infer_qblock_conv, _legal_qblock_conv),
    QMAX_POOL2D: (_infer_qmax_pool, _legal_qmax_pool),
    QADD: (_infer_same, _legal_qadd),
    QRELU: (_infer_same, _legal_qrelu),
    QAVG_POOL2D: (_infer_qmax_pool, _legal_qavg_pool),
    QUANTIZE: (_infer_quantize, _legal_quantize),
    DEQUANTIZE: (_infer_dequantize, _legal_dequantize),
    PACK: (_infer_pack, _legal_pack),
    UNPACK: (_infer_unpack, _legal_unpack),
}


def _register() -> None:
    from tvm.relax.transform.legalize_ops.common import register_legalize

    for name, (infer, legal) in _REGISTRY.items():
        op = tvm.ir.Op.get(name) if _registered(name) else None
        if op is not None and op.get_attr("FInferType") is not None:
            continue  # already registered in this process
        tvm.ir.register_op_attr(name, "FInferType", infer)
        tvm.ir.register_op_attr(name, "FPurity", True)
        register_legalize(name, legal)


def _registered(name: str) -> bool:
    try:
        tvm.ir.Op.get(name)
        return True
    except Exception:  # noqa: BLE001 - TVM raises a generic error for unknown ops
        return False


_register()


# ---- constructors -------------------------------------------------------------------------


def with_attrs(call: relax.Call, **kw) -> relax.Call:
    """The same call with attributes added or replaced."""
    return relax.Call(call.op, list(call.args), make_attrs(**{**attrs_dict(call), **kw}))


def _call(name: str, args, **attrs) -> relax.Call:
    return relax.Call(tvm.ir.Op.get(name), list(args), make_attrs(**attrs))


def block_conv2d(data, weight, bias, *, block, padding, padding_mode="constant",
                 dilation=(1, 1), groups=1, pool=False, strides=(1, 1),
                 layer="") -> relax.Call:
    """Float block conv (+bias, +2x2 max-pool). Validates the geometry (errors name `layer`)."""
    ws = static_shape(weight)
    a = dict(block=tuple(block), padding=tuple(padding), padding_mode=padding_mode,
             kernel=(ws[2], ws[3]), dilation=tuple(dilation), strides=tuple(strides),
             groups=int(groups), pool=bool(pool), layer=layer)
    check_block_conv(layer, static_shape(data), ws, a)
    return _call(BLOCK_CONV2D, [data, weight, bias], **a)


def qblock_conv2d(data, weight, bias, sign, residual=None, *, block, padding, padding_mode,
                  kernel, dilation, groups, pool, has_sign, shift, relu, residual_shift=0,
                  strides=(1, 1), layout=PLAIN, packed_groups=1, channels=None,
                  in_channels=None, layer="", clip=None) -> relax.Call:
    """Integer block conv with epilogue; see the module docstring for the attributes."""
    args = [data, weight, bias, sign] + ([residual] if residual is not None else [])
    ds, ws = static_shape(data), static_shape(weight)
    a = dict(block=tuple(block), padding=tuple(padding), padding_mode=padding_mode,
             kernel=tuple(kernel), dilation=tuple(dilation), strides=tuple(strides),
             groups=int(groups), pool=bool(pool), layer=layer)
    if layout == PLAIN:
        check_block_conv(layer, ds, ws, a)
    return _call(QBLOCK_CONV2D, args, **a, layout=layout, packed_groups=int(packed_groups),
                 channels=int(channels if channels is not None else ws[0]),
                 in_channels=int(in_channels if in_channels is not None else ds[1]),
                 has_sign=bool(has_sign), residual_shift=int(residual_shift), shift=int(shift),
                 relu=bool(relu), **_clip_attr(clip))


def _clip_attr(clip) -> dict:
    """{"clip": (lo, hi)} for a fused clamp / ReLU6 (int8 bounds), {} without one."""
    return {} if clip is None else {"clip": (int(clip[0]), int(clip[1]))}


def qmax_pool2d(data, *, pool_size, strides, padding=(0, 0, 0, 0), dilation=(1, 1),
                layout=PLAIN, layer="") -> relax.Call:
    return _call(QMAX_POOL2D, [data], pool_size=tuple(pool_size), strides=tuple(strides),
                 padding=tuple(padding), dilation=tuple(dilation), layout=layout, layer=layer)


def qadd(a, b, *, shift_a, shift_b, shift, relu, layout=PLAIN, layer="",
         clip=None) -> relax.Call:
    return _call(QADD, [a, b], shift_a=int(shift_a), shift_b=int(shift_b), shift=int(shift),
                 relu=bool(relu), layout=layout, layer=layer, **_clip_attr(clip))


def qavg_pool2d(data, *, pool_size, strides, padding, divisor, layer="") -> relax.Call:
    """Integer average pool on the host (NCHW int8; see te_compute.qavg_pool2d)."""
    return _call(QAVG_POOL2D, [data], pool_size=tuple(pool_size), strides=tuple(strides),
                 padding=tuple(padding), divisor=int(divisor), layout=PLAIN, layer=layer)


def qrelu(data, *, layout=PLAIN, layer="") -> relax.Call:
    return _call(QRELU, [data], layout=layout, layer=layer)


def quantize(data, *, exponent: int) -> relax.Call:
    return _call(QUANTIZE, [data], exponent=int(exponent))


def dequantize(data, *, exponent: int) -> relax.Call:
    return _call(DEQUANTIZE, [data], exponent=int(exponent))


def pack(data, *, batch: int, block: int) -> relax.Call:
    return _call(PACK, [data], batch=int(batch), block=int(block))


def unpack(data, *, channels: int, batch_size: int) -> relax.Call:
    return _call(UNPACK, [data], channels=int(channels), batch_size=int(batch_size))


def const(array: np.ndarray, dtype: str | None = None) -> relax.Expr:
    """A Relax constant from a NumPy array (dtype kept unless given)."""
    arr = np.ascontiguousarray(array if dtype is None else array.astype(dtype))
    return relax.const(arr, str(arr.dtype))
