"""TE definitions of the bctvm operators: what each op computes, element by element.

These are the semantic definitions the Relax VM runs on `llvm` (through the legalizers in
`ops.py`) and that the VTA schedules reproduce. Layouts:
- plain:  data NCHW, weights OIHW.
- packed: data (N/b, C/c, H, W, b, c) ("NCHW{b}n{c}c"), weights (O/o, I/i, kh, kw, o, i)
  ("OIHW{o}o{i}i") with b, c, o, i = BATCH, BLOCK_IN, BLOCK_OUT from the board; channels
  padded with zeros to the block width. A packed grouped conv has `packed_groups` G': output
  tile `ot` reads input tiles [g*Ti/G', (g+1)*Ti/G') with g = ot // (To/G').

Block convolution (design.md): the map is cut into blocks of (bh, bw); every block is padded on
its own ((top, left, bottom, right), constant zeros / replicate / reflect), convolved with
stride 1 and no padding (dilation, groups), the blocks are put back in place; `pool` adds a
2x2 max-pool with stride 2 (floor) on the result.

Integer arithmetic (docs/quantization.md, bctvm.quant): int8 x int8 products summed in int32
with two's-complement wrap; then bias (int32), pool (max), sign (x +-1 per channel),
residual add of align(r, s) (= r << s for s >= 0, round_shift(r, -s) otherwise), requantize
by round_shift(acc, shift) (= (acc + (1 << (shift-1))) >> shift for shift > 0, acc << -shift
for shift < 0), clip to [-128, 127] ([0, 127] with ReLU), cast to int8.
"""

from __future__ import annotations

from tvm import te, tirx

from schedules.int_expr import (align, block_geometry, clip, reflect_index,  # noqa: F401
                                replicate_index, round_shift)

PAD_MODES = ("constant", "replicate", "reflect")


# ---- scalar helpers (schedules.int_expr: the same expressions the VTA compute uses) -------


def clip_to_int8(v, relu: bool, out_dtype: str = "int8", clip_bounds=None):
    """Clip an int32 value to [-128, 127] ([0, 127] with relu), then to a fused clamp's int8
    bounds `clip_bounds` (lo, hi) if given, and narrow to int8."""
    return clip(v, relu, clip_bounds).astype(out_dtype)


def _block_source(p, pad0: int, size: int, mode: str):
    """Row (or column) inside a block of `size` read by padded coordinate `p`.

    Returns (index, valid): `index` is always inside [0, size) (clamped for constant padding,
    where `valid` is False on the zero border)."""
    r = p - pad0
    if mode == "constant":
        return replicate_index(r, size), tirx.all(r >= 0, r < size)
    if mode == "replicate":
        return replicate_index(r, size), None
    return reflect_index(r, size), None  # edge not repeated: -1 -> 1, size -> size - 2


def _block_window(h: int, w: int, block, padding, kernel, dilation, strides, padding_mode):
    """(nh, nw, oh, ow, read) of a block conv over an H x W map: the block grid, the output
    size per block, and read(y, x, ry, rx) -> (row, col, valid), the input pixel that output
    pixel (y, x) reads at kernel tap (ry, rx); `valid` is None unless constant padding puts a
    zero there (False on the border)."""
    bh, bw = block
    pt, pl, _, _ = padding
    dh, dw = dilation
    sh, sw = strides
    nh, nw, oh, ow = block_geometry(h, w, block, padding, kernel, dilation, strides)

    def read(y, x, ry, rx):
        iy, vy = _block_source((y % oh) * sh + ry * dh, pt, bh, padding_mode)
        ix, vx = _block_source((x % ow) * sw + rx * dw, pl, bw, padding_mode)
        return (y // oh) * bh + iy, (x // ow) * bw + ix, None if vy is None else tirx.all(vy, vx)

    return nh, nw, oh, ow, read


def _zero_unless(valid, val, dtype: str):
    """`val`, or 0 where `valid` (an _block_window read's) is False."""
    return val if valid is None else tirx.if_then_else(valid, val, tirx.const(0, dtype))


# ---- block convolution (plain NCHW / OIHW) ------------------------------------------------


def block_conv2d_nchw(data, weight, bias, *, block, padding, padding_mode, dilation, groups,
                      acc_dtype, strides=(1, 1)):
    """Block conv + bias, NCHW x OIHW -> NCHW in `acc_dtype` (no pool)."""
    n, c, h, w = (int(s) for s in data.shape)
    o, cg, kh, kw = (int(s) for s in weight.shape)
    nh, nw, oh, ow, read = _block_window(h, w, block, padding, (kh, kw), dilation, strides,
                                         padding_mode)
    og = o // groups
    rc = te.reduce_axis((0, cg), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def body(nn, oc, y, x):
        iy, ix, valid = read(y, x, ry, rx)
        ch = (oc // og) * cg + rc
        val = _zero_unless(valid, data[nn, ch, iy, ix].astype(acc_dtype), acc_dtype)
        return te.sum(val * weight[oc, rc, ry, rx].astype(acc_dtype), axis=[rc, ry, rx])

    conv = te.compute((n, o, nh * oh, nw * ow), body, name="block_conv")
    return te.compute(conv.shape, lambda nn, oc, y, x: conv[nn, oc, y, x]
                      + bias[oc].astype(acc_dtype), name="bias_add")


def max_pool2x2(t, spatial_axes=(2, 3)):
    """2x2 max-pool with stride 2 (floor) over the two given axes of any layout."""
    ay, ax = spatial_axes
    shape = [int(s) for s in t.shape]
    shape[ay] //= 2
    shape[ax] //= 2

    def body(*idx):
        idx = list(idx)
        vals = []
        for dy in (0, 1):
            for dx in (0, 1):
                j = list(idx)
                j[ay] = idx[ay] * 2 + dy
                j[ax] = idx[ax] * 2 + dx
                vals.append(t[tuple(j)])
        return tirx.max(tirx.max(vals[0], vals[1]), tirx.max(vals[2], vals[3]))

    return te.compute(shape, body, name="pool2x2")


def float_block_conv2d(data, weight, bias, *, block, padding, padding_mode, dilation, groups,
                       pool, strides=(1, 1)):
    """The float `bctvm.block_conv2d`: block conv + bias (+ 2x2 max-pool), float32 NCHW."""
    y = block_conv2d_nchw(data, weight, bias, block=block, padding=padding,
                          padding_mode=padding_mode, dilation=dilation, groups=groups,
                          acc_dtype=data.dtype, strides=strides)
    return max_pool2x2(y) if pool else y


# ---- block convolution (packed NCHW{b}n{c}c / OIHW{o}o{i}i) --------------------------------


def block_conv2d_packed(data, weight, bias, *, block, padding, padding_mode, dilation,
                        packed_groups, acc_dtype="int32", strides=(1, 1)):
    """Block conv + bias on packed layouts -> (N/b, O/o, H', W', b, o) int32 (no pool).

    `bias` is 1-D of length (O/o)*o (padded channels carry 0)."""
    nb, ti, h, w, b, ci = (int(s) for s in data.shape)
    to, tig, kh, kw, co, ci2 = (int(s) for s in weight.shape)
    assert ci == ci2, "packed weight inner width must equal the data block width"
    nh, nw, oh, ow, read = _block_window(h, w, block, padding, (kh, kw), dilation, strides,
                                         padding_mode)
    to_g = to // packed_groups
    rt = te.reduce_axis((0, tig), name="rt")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    ri = te.reduce_axis((0, ci), name="ri")

    def body(n0, ot, y, x, n1, oo):
        iy, ix, valid = read(y, x, ry, rx)
        it = (ot // to_g) * tig + rt
        val = _zero_unless(valid, data[n0, it, iy, ix, n1, ri].astype(acc_dtype), acc_dtype)
        return te.sum(val * weight[ot, rt, ry, rx, oo, ri].astype(acc_dtype),
                      axis=[rt, ry, rx, ri])

    conv = te.compute((nb, to, nh * oh, nw * ow, b, co), body, name="block_conv_packed")
    return te.compute(conv.shape, lambda n0, ot, y, x, n1, oo: conv[n0, ot, y, x, n1, oo]
                      + bias[ot * co + oo], name="bias_add")


# ---- integer epilogue ---------------------------------------------------------------------


def int_epilogue(acc, sign, residual, *, channel_of, has_sign, residual_shift, shift, relu,
                 clip=None):
    """sign -> residual align/add -> requantize -> clip (ReLU) -> int8, elementwise.

    `channel_of(idx)` maps an output index to the flat channel index of `sign`; `residual`
    (int8, same shape as `acc`) may be None."""

    def body(*idx):
        v = acc[idx]
        if has_sign:
            v = v * sign[channel_of(idx)]
        if residual is not None:
            v = v + align(residual[idx].astype("int32"), residual_shift)
        return clip_to_int8(round_shift(v, shift), relu, clip_bounds=clip)

    return te.compute(acc.shape, body, name="requant")


def qblock_conv2d(data, weight, bias, sign, residual, *, layout, block, padding, padding_mode,
                  dilation, groups, packed_groups, pool, has_sign, residual_shift, shift, relu,
                  strides=(1, 1), clip=None):
    """The integer `bctvm.qblock_conv2d` in either layout -> int8."""
    if layout == "NCHW":
        acc = block_conv2d_nchw(data, weight, bias, block=block, padding=padding,
                                padding_mode=padding_mode, dilation=dilation, groups=groups,
                                acc_dtype="int32", strides=strides)
        spatial = (2, 3)
        channel_of = lambda idx: idx[1]  # noqa: E731
    else:
        acc = block_conv2d_packed(data, weight, bias, block=block, padding=padding,
                                  padding_mode=padding_mode, dilation=dilation,
                                  packed_groups=packed_groups, strides=strides)
        spatial = (2, 3)
        co = int(weight.shape[4])
        channel_of = lambda idx: idx[1] * co + idx[5]  # noqa: E731
    if pool:
        acc = max_pool2x2(acc, spatial)
    return int_epilogue(acc, sign, residual, channel_of=channel_of, has_sign=has_sign,
                        residual_shift=residual_shift, shift=shift, relu=relu, clip=clip)


def qmax_pool2d(data, *, pool_size, strides, padding, dilation=(1, 1)):
    """Max-pool over int8 (NCHW or packed: spatial axes 2, 3); padding never wins the max."""
    shape = [int(s) for s in data.shape]
    kh, kw = pool_size
    sh, sw = strides
    pt, pl, pb, pr = padding
    dh, dw = dilation
    h, w = shape[2], shape[3]
    out = list(shape)
    out[2] = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    out[3] = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    lowest = tirx.min_value(data.dtype)

    def body(*idx):
        y = idx[2] * sh + ry * dh - pt
        x = idx[3] * sw + rx * dw - pl
        j = list(idx)
        j[2] = tirx.max(tirx.min(y, h - 1), 0)
        j[3] = tirx.max(tirx.min(x, w - 1), 0)
        inside = tirx.all(y >= 0, y < h, x >= 0, x < w)
        return te.max(tirx.if_then_else(inside, data[tuple(j)], lowest), axis=[ry, rx])

    return te.compute(out, body, name="qmax_pool")


def qadd(a, b, *, shift_a, shift_b, shift, relu, clip=None):
    """Standalone int8 + int8 add: align both in int32, add, requantize, clip -> int8."""

    def body(*idx):
        v = align(a[idx].astype("int32"), shift_a) + align(b[idx].astype("int32"), shift_b)
        return clip_to_int8(round_shift(v, shift), relu, clip_bounds=clip)

    return te.compute(a.shape, body, name="qadd")


def qavg_pool2d(data, *, pool_size, strides, padding, divisor):
    """Integer average pool (NCHW int8): int32 window sums with zero padding, divided by
    `divisor` rounding halves up: floor((2 sum + d) / 2d)."""
    shape = [int(s) for s in data.shape]
    kh, kw = pool_size
    sh, sw = strides
    pt, pl, pb, pr = padding
    h, w = shape[2], shape[3]
    out = list(shape)
    out[2] = (h + pt + pb - kh) // sh + 1
    out[3] = (w + pl + pr - kw) // sw + 1
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def window(*idx):
        y = idx[2] * sh + ry - pt
        x = idx[3] * sw + rx - pl
        j = list(idx)
        j[2] = tirx.max(tirx.min(y, h - 1), 0)
        j[3] = tirx.max(tirx.min(x, w - 1), 0)
        inside = tirx.all(y >= 0, y < h, x >= 0, x < w)
        v = tirx.if_then_else(inside, data[tuple(j)].astype("int32"), tirx.const(0, "int32"))
        return te.sum(v, axis=[ry, rx])

    total = te.compute(out, window, name="qavg_sum")
    d = tirx.const(int(divisor), "int32")
    return te.compute(out, lambda *i: tirx.floordiv(total[i] * 2 + d, d * 2).astype(data.dtype),
                      name="qavg_pool")


def qrelu(x):
    """Standalone ReLU on int8: max(q, 0)."""
    return te.compute(x.shape, lambda *i: tirx.max(x[i], tirx.const(0, x.dtype)), name="qrelu")


# ---- host-side conversions ----------------------------------------------------------------


def quantize(x, *, exponent: int):
    """float32 -> int8: clip(round_half_even(x * 2**exponent), -128, 127)."""
    scale = tirx.const(2.0 ** exponent, x.dtype)

    def body(*i):
        v = te.nearbyint(x[i] * scale)
        v = tirx.max(tirx.min(v, tirx.const(127.0, x.dtype)), tirx.const(-128.0, x.dtype))
        return v.astype("int8")

    return te.compute(x.shape, body, name="quantize")


def dequantize(q, *, exponent: int):
    """int8 -> float32: q * 2**-exponent."""
    scale = tirx.const(2.0 ** -exponent, "float32")
    return te.compute(q.shape, lambda *i: q[i].astype("float32") * scale, name="dequantize")


def pack(x, *, batch: int, block: int):
    """NCHW -> (ceil(N/b), ceil(C/c), H, W, b, c), zero-padding batch and channels."""
    n, c, h, w = (int(s) for s in x.shape)
    nb, ct = -(-n // batch), -(-c // block)

    def body(n0, c0, y, xx, n1, c1):
        nn, cc = n0 * batch + n1, c0 * block + c1
        inside = tirx.all(nn < n, cc < c)
        val = x[tirx.min(nn, n - 1), tirx.min(cc, c - 1), y, xx]
        return tirx.if_then_else(inside, val, tirx.const(0, x.dtype))

    return te.compute((nb, ct, h, w, batch, block), body, name="pack")


def unpack(x, *, channels: int, batch_size: int):
    """(N/b, C/c, H, W, b, c) -> NCHW with the first `batch_size` images and `channels`."""
    _, _, h, w, b, c = (int(s) for s in x.shape)
    return te.compute((batch_size, channels, h, w),
                      lambda nn, cc, y, xx: x[nn // b, cc // c, y, xx, nn % b, cc % c],
                      name="unpack")
