"""2-D DMA planning and micro-op loop folding, against element-level expansions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bctvm.isa import AluOp
from bctvm.lower.alu import SpineOp, alu_steps
from bctvm.lower.dma import XferLimits, expand, plan_transfers
from bctvm.lower.exprs import LoweringError
from bctvm.lower.fold import fold

LIM = XferLimits(1 << 16, 15)


def _block_sources(mode, bh, bw, pads, width, base):
    t, l, b, r = pads
    out = []
    for y in range(-t, bh + b):
        for x in range(-l, bw + r):
            if mode == "constant":
                out.append(base + y * width + x if 0 <= y < bh and 0 <= x < bw else -1)
            elif mode == "replicate":
                out.append(base + min(max(y, 0), bh - 1) * width + min(max(x, 0), bw - 1))
            else:
                rf = lambda i, n: (n - 1) - abs((n - 1) - abs(i))  # noqa: E731
                out.append(base + rf(y, bh) * width + rf(x, bw))
    return np.array(out)


def _covers(xfers, dst, src):
    d = np.concatenate([expand(x)[0] for x in xfers])
    s = np.concatenate([expand(x)[1] for x in xfers])
    o, o2 = np.argsort(dst), np.argsort(d)
    return np.array_equal(np.asarray(dst)[o], d[o2]) and np.array_equal(np.asarray(src)[o], s[o2])


def test_zero_padded_block_is_one_load():
    src = _block_sources("constant", 4, 5, (1, 2, 1, 0), 16, 100)
    xs = plan_transfers(np.arange(src.size) + 7, src, 5 + 2, LIM)
    assert len(xs) == 1
    x = xs[0]
    assert (x.y_size, x.x_size, x.x_stride) == (4, 5, 16)
    assert (x.y_pad_0, x.y_pad_1, x.x_pad_0, x.x_pad_1) == (1, 1, 2, 0)
    assert x.sram_base == 7 and x.src_base == 100
    assert _covers(xs, np.arange(src.size) + 7, src)


@pytest.mark.parametrize("mode", ["replicate", "reflect"])
@pytest.mark.parametrize("block, pad", [((4, 4), 1), ((28, 28), 1), ((8, 6), 2)])
def test_edge_padding_is_covered_exactly(mode, block, pad):
    bh, bw = block
    src = _block_sources(mode, bh, bw, (pad,) * 4, 64, 3)
    dst = np.arange(src.size)
    xs = plan_transfers(dst, src, bw + 2 * pad, LIM)
    assert _covers(xs, dst, src)
    assert len(xs) <= (2 * pad + 1) * (bh + 2 * pad)  # per padded row: the run + its pads


def test_store_is_strided_rows_without_pads():
    sram = np.arange(24) + 5
    dram = (np.arange(4)[:, None] * 32 + np.arange(6)[None, :] + 40).reshape(-1)
    xs = plan_transfers(sram, dram, 6, LIM, pads=False)
    assert len(xs) == 1 and (xs[0].y_size, xs[0].x_size, xs[0].x_stride) == (4, 6, 32)


def test_padding_beyond_the_pad_fields_is_an_error():
    src = np.array([-1] * 20 + [5, 6, 7])
    with pytest.raises(LoweringError, match="padding"):
        plan_transfers(np.arange(23), src, 23, LIM)


def _max_zero_run(src) -> int:
    best = cur = 0
    for v in src:
        cur = cur + 1 if v < 0 else 0
        best = max(best, cur)
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-1, 40), min_size=1, max_size=60), st.integers(1, 9))
def test_any_copy_is_covered_or_refused(src, row):
    src = np.array(src)
    assume((src >= 0).any())
    dst = np.arange(src.size) + 3
    try:
        xs = plan_transfers(dst, src, row, LIM)
    except LoweringError:
        # only padding the 4-bit pad fields cannot express is refused
        assert _max_zero_run(src) > 15 or src[-1] < 0 or src[0] < 0
        return
    assert _covers(xs, dst, src)


def test_fold_affine_conv_kernel():
    y, x, ky, kx = np.meshgrid(*map(np.arange, (4, 5, 3, 3)), indexing="ij")
    T = np.stack([y * 5 + x, (y + ky) * 7 + x + kx, ky * 3 + kx], -1)
    (f,) = fold(T, 100, 1 << 14, 1 << 11)
    assert (f.iter_out, f.iter_in, f.f_out, f.f_in) == (4, 5, (5, 7, 0), (1, 1, 0))
    assert f.uops.shape == (9, 3)
    assert f.touched(0) == (0, 20) and f.touched(2) == (0, 9)


def _replay(pieces, F):
    out = []
    for f in pieces:
        for i in range(f.iter_out):
            for j in range(f.iter_in):
                for u in f.uops:
                    out.append(tuple(u + i * np.array(f.f_out) + j * np.array(f.f_in)))
    return out


def test_fold_non_affine_and_uop_limit_still_cover_everything():
    y, x, k = np.meshgrid(*map(np.arange, (4, 3, 5)), indexing="ij")
    T = np.stack([y * 3 + x, np.minimum(y + k, 4) * 3 + x], -1)  # clamped: not affine in y
    pieces = fold(T, 2, 1 << 14, 1 << 11)
    assert all(len(f.uops) <= 2 for f in pieces)
    assert sorted(_replay(pieces, 2)) == sorted(map(tuple, T.reshape(-1, 2)))


def test_alu_steps_fit_wide_rounding_constants():
    ops = [SpineOp(AluOp.ADD, imm=1 << 17), SpineOp(AluOp.SHR, imm=18), SpineOp(AluOp.MIN, imm=127)]
    steps = alu_steps(ops, 16)
    assert [s.op for s in steps] == [AluOp.SHR, AluOp.ADD, AluOp.SHR, AluOp.MIN]
    assert all(-(1 << 15) <= s.imm < (1 << 15) for s in steps)
    for v in [-(1 << 30), -123457, -1, 0, 1, 131071, 131072, 987654321]:
        want = (v + (1 << 17)) >> 18
        got = ((v >> steps[0].imm) + steps[1].imm) >> steps[2].imm
        assert got == want
    with pytest.raises(LoweringError, match="does not fit"):
        alu_steps([SpineOp(AluOp.ADD, imm=1 << 20)], 16)


def test_padded_block_per_channel_tile_is_one_load_each():
    """Wide blocks: the zero run between two channel tiles' planes exceeds the pad fields, so
    the planner splits at planes (rows x cols) instead of failing."""
    planes = [_block_sources("constant", 3, 28, (1, 1, 1, 1), 56, base) for base in (0, 5000)]
    src = np.concatenate(planes)
    dst = np.arange(src.size)
    xs = plan_transfers(dst, src, 30, LIM, plane=5 * 30)
    assert len(xs) == 2 and _covers(xs, dst, src)
    with pytest.raises(LoweringError, match="padding"):
        plan_transfers(dst, src, 30, LIM)  # without the plane hint
