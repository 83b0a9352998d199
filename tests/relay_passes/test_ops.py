"""The bctvm Relax operators: TE definitions against an independent NumPy implementation."""

from __future__ import annotations

import numpy as np
import pytest
from tvm import relax

from bctvm.errors import BlockShapeError, UnsupportedOpError
from relay_passes import ops
from schedules.layout import tile_pack_weight, tile_packed_groups
from relay_passes.vm_run import run_module

from .conftest import np_block_conv, np_pool2x2, np_round_shift, wrap32


def _module(inputs, build):
    """A main(inputs...) whose outputs are `build(bb, *vars)` (a list of Relax calls)."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(s, d)) for i, (s, d) in enumerate(inputs)]
    with bb.function("main", params):
        with bb.dataflow():
            outs = [bb.emit(c) for c in build(*params)]
            gv = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(gv)
    return bb.get()


@pytest.mark.parametrize("mode", ["constant", "replicate", "reflect"])
def test_float_block_conv_matches_numpy(mode):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 8, 12)).astype("float32")
    w = rng.standard_normal((6, 2, 3, 3)).astype("float32")
    b = rng.standard_normal(6).astype("float32")
    cases = [  # block, padding (t, l, b, r), dilation, groups, pool
        ((4, 4), (1, 1, 1, 1), (1, 1), 2, False),
        ((4, 6), (2, 1, 2, 1), (2, 1), 2, True),  # non-square blocks, dilation 2 on H
        ((8, 12), (1, 1, 1, 1), (1, 1), 2, True),  # one block: an ordinary padded conv
    ]
    mod = _module([(x.shape, "float32")], lambda d: [
        ops.block_conv2d(d, ops.const(w), ops.const(b), block=blk, padding=pad,
                         padding_mode=mode, dilation=dil, groups=g, pool=pool, layer="t")
        for blk, pad, dil, g, pool in cases])
    outs = run_module(mod, x)
    for out, (blk, pad, dil, g, pool) in zip(outs, cases):
        ref = np_block_conv(x.astype(np.float64), w.astype(np.float64), b, blk, pad, mode, dil, g)
        ref = np_pool2x2(ref) if pool else ref
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_strided_single_block_conv_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 9, 9)).astype("float32")
    w = rng.standard_normal((4, 3, 3, 3)).astype("float32")
    b = np.zeros(4, "float32")
    mod = _module([(x.shape, "float32")], lambda d: [
        ops.block_conv2d(d, ops.const(w), ops.const(b), block=(9, 9), padding=(1, 1, 1, 1),
                         strides=(2, 2), layer="s")])
    out = run_module(mod, x)[0]
    ref = np_block_conv(x.astype(np.float64), w.astype(np.float64), b, (9, 9), (1, 1, 1, 1),
                        "constant", stride=(2, 2))
    assert out.shape == (1, 4, 5, 5)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def _np_qconv(x, w, b, s, r, *, block, pad, mode, groups, pool, shift, rshift, relu):
    acc = wrap32(np_block_conv(x.astype(np.int64), w.astype(np.int64), b.astype(np.int64),
                               block, pad, mode, groups=groups))
    if pool:
        acc = np_pool2x2(acc)
    acc = wrap32(acc * s.reshape(1, -1, 1, 1))
    if r is not None:
        al = wrap32(r.astype(np.int64) << rshift) if rshift >= 0 else \
            np_round_shift(r.astype(np.int64), -rshift)
        acc = wrap32(acc + al)
    acc = np_round_shift(acc, shift)
    return np.clip(acc, 0 if relu else -128, 127).astype(np.int8)


@pytest.mark.parametrize("layout", ["plain", "packed"])
def test_qblock_conv2d_epilogue_matches_numpy(layout):
    """Bias, pool, sign, residual align (both directions), rounding shift (+/-), clip, ReLU;
    the packed op (block-diagonal grouped weights, padded channels) gives the same int8."""
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (1, 6, 8, 8)).astype(np.int8)
    cases = [  # groups, pool, residual shift, shift, relu, mode
        (1, False, 3, 7, True, "constant"),
        (3, True, -2, 9, False, "replicate"),
        (6, False, None, -1, False, "reflect"),  # depthwise, left-shift requantization
    ]
    params = []
    for g, pool, rs, sh, relu, mode in cases:
        o = 6
        w = rng.integers(-128, 128, (o, 6 // g, 3, 3)).astype(np.int8)
        b = rng.integers(-2**14, 2**14, o).astype(np.int32)
        s = rng.choice([-1, 1], o).astype(np.int32)
        rshape = (1, o, 4, 4) if pool else (1, o, 8, 8)
        r = rng.integers(-128, 128, rshape).astype(np.int8) if rs is not None else None
        params.append((w, b, s, r))
    bi = 4  # a 4-lane "board" so the 6 channels pad to 8
    inputs = [(x.shape, "int8")] + [(p[3].shape, "int8") for p in params if p[3] is not None]

    def build(d, *res):
        calls, k = [], 0
        dp = ops.pack(d, batch=1, block=bi) if layout == "packed" else d
        for (g, pool, rs, sh, relu, mode), (w, b, s, r) in zip(cases, params):
            rv = None
            if r is not None:
                rv = res[k]
                k += 1
            common = dict(block=(4, 4), padding=(1, 1, 1, 1), padding_mode=mode,
                          kernel=(3, 3), dilation=(1, 1), groups=g, pool=pool, has_sign=True,
                          shift=sh, relu=relu, residual_shift=rs or 0, layer=f"g{g}")
            if layout == "plain":
                calls.append(ops.qblock_conv2d(d, ops.const(w), ops.const(b), ops.const(s), rv,
                                               **common))
                continue
            wp = tile_pack_weight(w, g, bi, bi)
            gp = tile_packed_groups(w.shape[0], w.shape[1] * g, g, bi, bi)
            rp = ops.pack(rv, batch=1, block=bi) if rv is not None else None
            call = ops.qblock_conv2d(
                dp, ops.const(wp), ops.const(np.pad(b, (0, 2))),
                ops.const(np.pad(s, (0, 2), constant_values=1)), rp,
                layout=ops.packed_layout(1, bi), packed_groups=gp, channels=6, **common)
            calls.append(ops.unpack(call, channels=6, batch_size=1))
        return calls

    ins = [x] + [p[3] for p in params if p[3] is not None]
    outs = run_module(_module(inputs, build), *ins)
    for out, (g, pool, rs, sh, relu, mode), (w, b, s, r) in zip(outs, cases, params):
        ref = _np_qconv(x, w, b, s, r, block=(4, 4), pad=(1, 1, 1, 1), mode=mode, groups=g,
                        pool=pool, shift=sh, rshift=rs or 0, relu=relu)
        assert out.dtype == np.int8
        np.testing.assert_array_equal(out, ref)
        if relu:
            assert out.min() >= 0


def test_standalone_int_ops_and_host_conversions():
    rng = np.random.default_rng(4)
    a = rng.integers(-128, 128, (1, 3, 6, 6)).astype(np.int8)
    b = rng.integers(-128, 128, (1, 3, 6, 6)).astype(np.int8)
    f = np.array([[[[0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.9, 1e6]]]], dtype=np.float32)
    mod = _module([(a.shape, "int8"), (b.shape, "int8"), (f.shape, "float32")], lambda x, y, z: [
        ops.qmax_pool2d(x, pool_size=(3, 3), strides=(2, 2), padding=(1, 1, 1, 1)),
        ops.qadd(x, y, shift_a=2, shift_b=0, shift=1, relu=False),
        ops.qrelu(x),
        ops.quantize(z, exponent=0),
        ops.dequantize(ops.quantize(z, exponent=2), exponent=2),
        ops.unpack(ops.pack(x, batch=2, block=4), channels=3, batch_size=1),
        ops.pack(x, batch=1, block=4),
    ])
    pool, add, relu, q, dq, roundtrip, packed = run_module(mod, a, b, f)
    padded = np.pad(a.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-999)
    want = np.array([[[[padded[0, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(3)]
                       for i in range(3)] for c in range(3)]])
    np.testing.assert_array_equal(pool, want)
    s = (a.astype(np.int64) << 2) + b
    np.testing.assert_array_equal(add, np.clip(np_round_shift(s, 1), -128, 127))
    np.testing.assert_array_equal(relu, np.maximum(a, 0))
    np.testing.assert_array_equal(q.ravel(), [0, 2, 2, 0, -2, -2, 4, 127])  # half to even
    np.testing.assert_array_equal(dq.ravel(), [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 4.0, 31.75])
    np.testing.assert_array_equal(roundtrip, a)
    assert packed.shape == (1, 1, 6, 6, 1, 4)
    np.testing.assert_array_equal(packed[0, 0, :, :, 0, :3], a[0].transpose(1, 2, 0))
    assert not packed[..., 3].any()  # the padded channel is zero


def test_packed_groups_follow_the_group_structure():
    assert tile_packed_groups(64, 64, 64, 16, 16) == 4  # depthwise: one tile per tile
    assert tile_packed_groups(64, 64, 1, 16, 16) == 1  # dense
    assert tile_packed_groups(128, 64, 2, 16, 16) == 2  # two groups of 2 -> 4 tiles
    assert tile_packed_groups(24, 24, 24, 16, 16) == 2  # depthwise 24 -> 2 tiles, 1 each
    assert tile_packed_groups(24, 24, 2, 16, 16) == 1  # group 1 spans channels 12..23
    w = np.arange(4 * 1 * 1 * 1, dtype=np.int8).reshape(4, 1, 1, 1) + 1
    wp, gp = tile_pack_weight(w, 4, 2, 2), tile_packed_groups(4, 4, 4, 2, 2)  # 2-lane board
    assert gp == 2 and wp.shape == (2, 1, 1, 1, 2, 2)
    np.testing.assert_array_equal(wp[0, 0, 0, 0], [[1, 0], [0, 2]])
    np.testing.assert_array_equal(wp[1, 0, 0, 0], [[3, 0], [0, 4]])


def test_constructor_errors_name_the_layer():
    d = relax.Var("d", relax.TensorType((1, 4, 10, 10), "float32"))
    w = ops.const(np.zeros((4, 4, 3, 3), "float32"))
    b = ops.const(np.zeros(4, "float32"))
    with pytest.raises(BlockShapeError, match="layer 'net.conv3'.*4x4.*10x10"):
        ops.block_conv2d(d, w, b, block=(4, 4), padding=(1, 1, 1, 1), layer="net.conv3")
    with pytest.raises(BlockShapeError, match="layer 'r'.*reflect"):
        ops.block_conv2d(d, w, b, block=(2, 2), padding=(2, 2, 2, 2), padding_mode="reflect",
                         layer="r")
    with pytest.raises(UnsupportedOpError, match="layer 's'.*stride"):
        ops.block_conv2d(d, w, b, block=(5, 5), padding=(1, 1, 1, 1), strides=(2, 2), layer="s")
