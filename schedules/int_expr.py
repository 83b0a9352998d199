"""TE scalar expressions of the integer contract and of block geometry, written once.

Used by the graph operators' definitions (relay_passes.te_compute, run on llvm) and by the VTA
compute of a group (schedules.block_conv2d), so both compute the same thing by construction:
    round_shift(v, sh)   (v + 2^(sh-1)) >> sh for sh > 0, v << -sh for sh < 0 (int32)
    align(v, s)          v << s for s >= 0, round_shift(v, -s) otherwise
    clip(v, relu)        min(max(v, relu ? 0 : -128), 127), still int32
    replicate_index(i, n) / reflect_index(i, n)   the source row (column) of padded
                         coordinate i of a block of n rows (|i| < n; reflect repeats no edge)
    block_geometry(...)  blocks per side and the conv-output block (pixels)
"""

from __future__ import annotations

from tvm import tirx


def i32(v: int):
    """An int32 constant."""
    return tirx.const(int(v), "int32")


def round_shift(v, sh: int):
    """(v + (1 << (sh-1))) >> sh for sh > 0 (arithmetic), v << -sh for sh < 0, v for 0."""
    if sh > 0:
        return tirx.shift_right(v + i32(1 << (sh - 1)), i32(sh))
    if sh < 0:
        return tirx.shift_left(v, i32(-sh))
    return v


def align(v, s: int):
    """v << s for s > 0, v for 0, round_shift(v, -s) for s < 0."""
    return tirx.shift_left(v, i32(s)) if s > 0 else round_shift(v, -s)


def clip(v, relu: bool, bounds=None):
    """int32 v clipped to [-128, 127] ([0, 127] with ReLU), then to a fused clamp's int8
    `bounds` (lo, hi) if given (ReLU6 / clamp: ALU MIN/MAX immediates)."""
    lo, hi = (0 if relu else -128), 127
    if bounds is not None:
        lo, hi = max(lo, int(bounds[0])), min(hi, int(bounds[1]))
    return tirx.max(tirx.min(v, i32(hi)), i32(lo))


def reflect_index(i, n: int):
    """Index reflected into [0, n) (no edge repeat), for |i| < n: (n-1) - |(n-1) - |i||."""
    a = tirx.max(i, 0 - i)
    d = (n - 1) - a
    return (n - 1) - tirx.max(d, 0 - d)


def replicate_index(i, n: int):
    """Index clamped into [0, n)."""
    return tirx.max(tirx.min(i, n - 1), 0)


def block_geometry(h: int, w: int, block, padding, kernel, dilation, strides=(1, 1)):
    """(nh, nw, oh, ow): blocks per side of an h x w map and the conv-output block size
    (before any pool) of one (bh, bw) block padded (top, left, bottom, right) on its own.
    A stride other than 1 is only meaningful with one block (a plain strided conv)."""
    bh, bw = block
    pt, pl, pb, pr = padding
    kh, kw = kernel
    dh, dw = dilation
    sh, sw = strides
    oh = (bh + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (bw + pl + pr - dw * (kw - 1) - 1) // sw + 1
    return h // bh, w // bw, oh, ow
