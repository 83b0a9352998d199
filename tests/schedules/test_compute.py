"""The TE compute of schedules.block_conv2d, built for the host CPU, equals the NumPy integer
reference (the project's arithmetic contract) bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

from boards import load_board
from bctvm.errors import BadInputError, BlockShapeError, UnsupportedOpError
from schedules import LayerSpec, group_compute, layer_compute
from schedules.block_conv2d import build_llvm
from schedules.layout import (pack_activation, pack_bias, pack_channel_vector, pack_weight,
                              unpack_activation)

from blockconv_int_ref import random_layer_data, ref_spec

PYNQ = load_board("pynq")


def _run_llvm(group, arrays):
    lib = build_llvm(group)
    out = np.zeros([int(v) for v in group.output.shape], "int8")
    args = [tvm.runtime.tensor(a) for a in arrays] + [tvm.runtime.tensor(out)]
    lib["main"](*args)
    return args[-1].numpy()


def _layer_arrays(cfg, spec, x, w, b, s, r):
    arrays = [pack_activation(x, cfg), pack_weight(w, cfg), pack_bias(b, spec, cfg)]
    if spec.sign:
        arrays.append(pack_channel_vector(s, cfg, 1))
    if spec.residual_shift is not None:
        arrays.append(pack_activation(r, cfg, cfg.block_out))
    return arrays


CASES = [
    LayerSpec("conv3x3", 20, 24, 8, 8, (4, 4), shift=9, relu=True),
    LayerSpec("pool_sign_res", 16, 16, 8, 8, (4, 4), pool=True, shift=10, sign=True,
              residual_shift=3),
    LayerSpec("reflect", 16, 16, 8, 8, (4, 4), padding_mode="reflect", shift=9,
              residual_shift=-2),
    LayerSpec("replicate_1x1", 16, 40, 8, 8, (4, 4), kernel=(1, 1), padding=(0, 0),
              padding_mode="replicate", shift=7),
]


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.name)
def test_layer_compute_matches_reference(spec):
    x, w, b, s, r = random_layer_data(spec)
    got = unpack_activation(_run_llvm(layer_compute(PYNQ, spec),
                                      _layer_arrays(PYNQ, spec, x, w, b, s, r)),
                            spec.out_channels)
    ref = ref_spec(x, w, b, spec, s, r)
    assert got.shape == ref.shape
    assert np.array_equal(got, ref)
    assert len(np.unique(ref)) > 10  # not a saturated, trivially equal output


def test_chain_compute_with_residual_from_input():
    cfg = load_board("zcu102")
    a = LayerSpec("a", 32, 32, 8, 8, (4, 4), shift=11, relu=True, padding_mode="replicate")
    b = LayerSpec("b", 32, 32, 8, 8, (4, 4), shift=11, residual_shift=1,
                  padding_mode="replicate")
    g = group_compute(cfg, [a, b], residual_source="input")
    x, wa, ba, _, _ = random_layer_data(a, seed=1)
    _, wb, bb, _, _ = random_layer_data(b, seed=2)
    arrays = [pack_activation(x, cfg), pack_weight(wa, cfg), pack_bias(ba, a, cfg),
              pack_weight(wb, cfg), pack_bias(bb, b, cfg)]
    got = unpack_activation(_run_llvm(g, arrays), 32)
    ref = ref_spec(ref_spec(x, wa, ba, a), wb, bb, b, residual=x)
    assert np.array_equal(got, ref)


def test_spec_geometry():
    s = LayerSpec("g", 3, 20, 16, 12, (8, 4), kernel=(3, 3), padding=(1, 0, 1, 2), pool=True)
    assert s.padded_block == (10, 6)
    assert s.conv_block == (8, 4)
    assert s.out_block == (4, 2)
    assert s.out_size == (8, 6)
    assert s.ci_tiles(PYNQ) == 1 and s.co_tiles(PYNQ) == 2


@pytest.mark.parametrize("spec, err, words", [
    (LayerSpec("bad_block", 16, 16, 10, 10, (4, 4)), BlockShapeError, "does not divide"),
    (LayerSpec("wide_reflect", 16, 16, 8, 8, (2, 2), kernel=(5, 5), padding=(2, 2),
               padding_mode="reflect"), BlockShapeError, "reflect"),
    (LayerSpec("odd_pool", 16, 16, 9, 9, (3, 3), pool=True), UnsupportedOpError, "max-pool"),
    (LayerSpec("mode", 16, 16, 8, 8, (4, 4), padding_mode="circular"), BadInputError, "padding"),
])
def test_spec_validation_names_the_layer(spec, err, words):
    with pytest.raises(err, match=words) as info:
        spec.validate(PYNQ)
    assert spec.name in str(info.value)


def test_chain_must_continue_the_block_grid():
    a = LayerSpec("a", 16, 16, 8, 8, (4, 4), pool=True)
    b = LayerSpec("b", 16, 16, 8, 8, (4, 4))
    with pytest.raises(BlockShapeError, match="'b'"):
        group_compute(load_board("zcu102"), [a, b])


@pytest.mark.parametrize("o, c, groups", [(64, 64, 64), (128, 64, 4), (40, 40, 2), (32, 48, 1),
                                          (96, 48, 3)])
def test_packed_graph_weights_are_the_programs(o, c, groups):
    """PackLayout's weight constants are schedules.layout.pack_weight's, tile by tile: every
    output tile holds the block-diagonal weights of the input tiles of its packed group."""
    from schedules.layout import packed_groups

    for cfg in (PYNQ, load_board("zcu102")):
        w = np.random.default_rng(0).integers(-128, 128, (o, c // groups, 3, 3)).astype(np.int8)
        wp, gp = pack_weight(w, cfg, groups), packed_groups(o, c, groups, cfg)
        to, tig = wp.shape[:2]
        assert to * gp * tig * cfg.block_in >= c and to * cfg.block_out >= o
        og, cg = o // groups, c // groups
        for oc in range(o):
            t, lane = divmod(oc, cfg.block_out)
            first = (t // (to // gp)) * tig * cfg.block_in  # first input channel of the tile
            for ic in range(c):
                k = ic - first
                inside = 0 <= k < tig * cfg.block_in
                want = w[oc, ic - (oc // og) * cg] if ic // cg == oc // og else 0
                if inside:
                    got = wp[t, k // cfg.block_in, :, :, lane, k % cfg.block_in]
                    assert np.array_equal(got, np.broadcast_to(want, (3, 3)))
                else:
                    assert not np.any(want)


def test_depthwise_dilated_compute_matches_reference():
    spec = LayerSpec("dwd", 32, 32, 8, 8, (8, 8), groups=32, dilation=(2, 2), padding=(2, 2),
                     shift=6)
    x, w, b, s, r = random_layer_data(spec)
    arrays = [pack_activation(x, PYNQ), pack_weight(w, PYNQ, spec.groups),
              pack_bias(b, spec, PYNQ)]
    got = unpack_activation(_run_llvm(layer_compute(PYNQ, spec), arrays), 32)
    assert np.array_equal(got, ref_spec(x, w, b, spec))


def test_rounding_folds_into_the_bias_only_without_pool_and_sign():
    base = dict(in_channels=16, out_channels=16, height=8, width=8, block=(4, 4))
    assert LayerSpec("r", **base, shift=9, residual_shift=1).bias_offset == 1 << 8
    for kw in (dict(shift=9, pool=True), dict(shift=9, sign=True), dict(shift=0),
               dict(shift=-2)):
        s = LayerSpec("n", **base, **kw)
        assert not s.rounding_in_bias and s.bias_offset == 0
    spec = LayerSpec("r", **base, shift=9)
    packed = pack_bias(np.array([2**31 - 1, -5] + [0] * 14, np.int32), spec, PYNQ)
    assert packed.dtype == np.int32 and packed[0, 0, 0] == -(2**31) + 255  # int32 wrap
    assert packed[0, 0, 1] == 251


def test_folded_rounding_wraps_like_the_contract():
    """Biases at the int32 edge: b + 2^(sh-1) wraps in the packed bias, conv + b wraps in
    the reference; both are the same sum mod 2^32, so the outputs agree bit for bit."""
    spec = LayerSpec("edge", 16, 16, 8, 8, (4, 4), shift=12, residual_shift=0)
    x, w, b, s, r = random_layer_data(spec, seed=4, w_max=3)
    b[:8] = 2**31 - (1 << 11) + np.arange(-4, 4) * 1000  # around the wrap of b + 2^11
    got = unpack_activation(_run_llvm(layer_compute(PYNQ, spec),
                                      _layer_arrays(PYNQ, spec, x, w, b, s, r)), 16)
    ref = ref_spec(x, w, b, spec, s, r)
    assert np.array_equal(got, ref)
    assert (ref[:, :8] == 127).any() and (ref[:, :8] == -128).any()


def test_identity_gemm_residuals_compute_matches_reference():
    """Residuals as pad x I (identity_residuals): the group input from layer 0's padded input,
    layer 1's output from layer 2's (uneven padding); edge-padded first layer."""
    from schedules.layout import identity_weight

    cfg = load_board("zcu102")
    specs = [LayerSpec("a", 32, 32, 8, 8, (4, 4), shift=9, relu=True, padding_mode="replicate"),
             LayerSpec("b", 32, 32, 8, 8, (4, 4), shift=9, residual_shift=2, relu=True),
             LayerSpec("c", 32, 32, 8, 8, (4, 4), shift=8, relu=True, padding=(2, 1, 0, 1)),
             LayerSpec("d", 32, 32, 8, 8, (4, 4), shift=9, residual_shift=-1)]
    g = group_compute(cfg, specs, [None, "input", None, 1], identity_residuals=True)
    assert g.identity_pairs() == ((0, 1), (2, 3))
    assert [p.name for p in g.params[:2]] == ["data", "identity"]
    x = random_layer_data(specs[0], seed=1)[0]
    data = [random_layer_data(s, seed=5 + i) for i, s in enumerate(specs)]
    arrays = [pack_activation(x, cfg), identity_weight(cfg)]
    for s, d in zip(specs, data):
        arrays += [pack_weight(d[1], cfg), pack_bias(d[2], s, cfg)]
    y1 = ref_spec(x, data[0][1], data[0][2], specs[0])
    y2 = ref_spec(y1, data[1][1], data[1][2], specs[1], residual=x)
    y3 = ref_spec(y2, data[2][1], data[2][2], specs[2])
    y4 = ref_spec(y3, data[3][1], data[3][2], specs[3], residual=y2)
    assert np.array_equal(unpack_activation(_run_llvm(g, arrays), 32), y4)
    with pytest.raises(BadInputError, match="identity GEMM"):
        group_compute(cfg, specs, [None, "input", None, 1], input_on_chip=True,
                      identity_residuals=True)
