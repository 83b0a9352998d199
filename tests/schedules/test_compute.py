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
from schedules.layout import (pack_activation, pack_channel_vector, pack_weight,
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
    arrays = [pack_activation(x, cfg), pack_weight(w, cfg), pack_channel_vector(b, cfg)]
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
    arrays = [pack_activation(x, cfg), pack_weight(wa, cfg), pack_channel_vector(ba, cfg),
              pack_weight(wb, cfg), pack_channel_vector(bb, cfg)]
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
def test_grouped_packing_agrees_with_the_graph_passes(o, c, groups):
    """schedules.layout packs grouped weights exactly as relay_passes.pack_layout does."""
    from relay_passes.pack_layout import pack_weight as graph_pack_weight
    from relay_passes.pack_layout import packed_groups_for

    from schedules.layout import packed_groups

    for cfg in (PYNQ, load_board("zcu102")):
        w = np.random.default_rng(0).integers(-128, 128, (o, c // groups, 3, 3)).astype(np.int8)
        ref, gp = graph_pack_weight(w, groups, cfg.block_out, cfg.block_in)
        assert packed_groups(o, c, groups, cfg) == gp == packed_groups_for(
            o, c, groups, cfg.block_out, cfg.block_in)
        assert np.array_equal(pack_weight(w, cfg, groups), ref)


def test_depthwise_dilated_compute_matches_reference():
    spec = LayerSpec("dwd", 32, 32, 8, 8, (8, 8), groups=32, dilation=(2, 2), padding=(2, 2),
                     shift=6)
    x, w, b, s, r = random_layer_data(spec)
    arrays = [pack_activation(x, PYNQ), pack_weight(w, PYNQ, spec.groups),
              pack_channel_vector(b, PYNQ)]
    got = unpack_activation(_run_llvm(layer_compute(PYNQ, spec), arrays), 32)
    assert np.array_equal(got, ref_spec(x, w, b, spec))
