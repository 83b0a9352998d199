"""A chain of layers on one block grid: fused (intermediates on chip via OUT_INP loads) and
layer by layer (stock VTA), both bit-exact; the fused group moves no feature maps through DRAM."""

from __future__ import annotations

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm.errors import BadInputError
from bctvm.isa import MemType
from bctvm.lower.group import compile_group, run_group
from schedules import LayerSpec

ZCU = load_board("zcu102")


def _chain(mode_pad="constant"):
    a = LayerSpec("a", 32, 64, 16, 16, (8, 8), shift=11, relu=True, padding_mode=mode_pad)
    b = LayerSpec("b", 64, 64, 16, 16, (8, 8), shift=11, relu=True, padding_mode=mode_pad)
    c = LayerSpec("c", 64, 32, 16, 16, (8, 8), shift=11, residual_shift=0, padding_mode=mode_pad)
    return [a, b, c]


def _data(specs):
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (1, specs[0].in_channels, 16, 16)).astype(np.int8)
    layers = []
    for i, s in enumerate(specs):
        _, w, b, sg, _ = random_layer_data(s, seed=10 + i)
        layers.append(dict(weight=w, bias=b, sign=sg))
    y = x
    for s, p in zip(specs, layers):
        y = ref_spec(y, p["weight"], p["bias"], s, p["sign"], residual=x)
    return x, layers, y


@pytest.fixture(scope="module")
def runs():
    specs = _chain()
    x, layers, ref = _data(specs)
    out = {}
    for mode in ("fused", "layerwise"):
        cg = compile_group(ZCU, specs, mode=mode, residual_source="input", name=mode)
        out[mode] = (cg, run_group(cg, cg.image(x, layers)))
    return out, ref


@pytest.mark.parametrize("mode", ["fused", "layerwise"])
def test_chain_bit_exact(runs, mode):
    out, ref = runs
    assert np.array_equal(out[mode][1].output, ref)
    assert len(np.unique(ref)) > 20


def test_fused_keeps_intermediates_on_chip(runs):
    out, _ = runs
    cg, run = out["fused"]
    assert len(cg.programs) == 1
    assert run.dram_bytes["feature_maps"] == 0
    assert not any(r.kind == "feature_maps" for r in cg.layout.regions.values())
    c = run.counters[0]
    block_bytes = 16 * 16 * 64  # each intermediate map, int8
    assert c["onchip_reuse_bytes"] >= 2 * block_bytes
    assert any(i.memory_type == MemType.OUT_INP for i in cg.programs[0].instructions
               if hasattr(i, "memory_type"))
    # only the group input (kept on chip for the residual too), weights, output and micro-ops
    reg = cg.layout.regions
    assert cg.knobs[0].input_on_chip
    assert run.dram_bytes["input"] == reg["data"].nbytes
    assert run.dram_bytes["output"] == reg["out"].nbytes


def test_layerwise_spills_every_intermediate(runs):
    out, _ = runs
    cg, run = out["layerwise"]
    assert len(cg.programs) == 3
    fm = cg.layout.regions["fm0"].nbytes + cg.layout.regions["fm1"].nbytes
    assert run.dram_bytes["feature_maps"] == 2 * fm  # written once, read once
    assert all(c["onchip_reuse_bytes"] == 0 for c in run.counters)
    fused = out["fused"][1]
    assert fused.dram_bytes["total"] < run.dram_bytes["total"]
    assert fused.cycles < run.cycles


def test_fused_replicate_padding_on_chip():
    specs = _chain("replicate")[:2]
    x, layers, _ = _data(specs)
    ref = x
    for s, p in zip(specs, layers):
        ref = ref_spec(ref, p["weight"], p["bias"], s)
    cg = compile_group(ZCU, specs, mode="fused")
    run = run_group(cg, cg.image(x, layers))
    assert np.array_equal(run.output, ref)
    assert run.dram_bytes["feature_maps"] == 0


def test_fused_needs_onchip_reuse():
    with pytest.raises(BadInputError, match="onchip_reuse"):
        compile_group(load_board("pynq"), _chain(), mode="fused", residual_source="input")


def _resnet_pair_data(a, b, input_seed: int, weight_seed: int):
    """(x, layers, reference output) of a two-layer ResNet block a -> b (+ x)."""
    x = np.random.default_rng(input_seed).integers(
        -128, 128, (a.batch, a.in_channels, a.height, a.width)).astype(np.int8)
    layers = []
    for i, s in enumerate((a, b)):
        _, w, bias, _, _ = random_layer_data(s, seed=weight_seed + i)
        layers.append(dict(weight=w, bias=bias))
    ref = ref_spec(ref_spec(x, layers[0]["weight"], layers[0]["bias"], a),
                   layers[1]["weight"], layers[1]["bias"], b, residual=x)
    return x, layers, ref


@pytest.mark.parametrize("residual_shift", [0, 2])
def test_group_input_kept_on_chip_is_read_once(residual_shift):
    """Fused ResNet block whose input stays in the accumulator: one ACC_8BIT read of the input
    feeds the first layer (through the output buffer, OUT_INP) and the residual add."""
    a = LayerSpec("a", 64, 64, 16, 16, (8, 8), shift=11, relu=True)
    b = LayerSpec("b", 64, 64, 16, 16, (8, 8), shift=11, residual_shift=residual_shift, relu=True)
    x, layers, ref = _resnet_pair_data(a, b, 3, 20)
    cg = compile_group(ZCU, [a, b], mode="fused", residual_source="input", input_on_chip=True)
    assert cg.knobs[0].input_on_chip
    run = run_group(cg, cg.image(x, layers))
    assert np.array_equal(run.output, ref)
    reg = cg.layout.regions
    assert run.dram_bytes["input"] == reg["data"].nbytes
    lower_bound = reg["data"].nbytes + reg["out"].nbytes + sum(
        r.nbytes for r in reg.values() if r.kind == "weights")
    assert run.dram_bytes["total"] <= 1.05 * lower_bound


@pytest.mark.parametrize("handover", [True, False])
def test_chunked_handover_with_pool_sign_edges_and_inner_residual(handover):
    """Inner stride-2 layer with sign and replicate padding, a reflect-padded layer whose
    output a later layer adds (kept whole on chip), a row-sub-tiled last layer: each finished
    output chunk goes to the next layer's input right away (or the whole block, without
    chunked hand-over); bit-exact both ways."""
    p = LayerSpec("p", 32, 64, 16, 16, (8, 8), shift=11, pool=True, sign=True,
                  padding_mode="replicate")
    q = LayerSpec("q", 64, 64, 8, 8, (4, 4), shift=10, relu=True, padding_mode="reflect")
    r = LayerSpec("r", 64, 64, 8, 8, (4, 4), shift=10, residual_shift=-1)
    from schedules import LayerKnobs, ScheduleKnobs

    knobs = ScheduleKnobs((LayerKnobs(1), LayerKnobs(1), LayerKnobs(1, 2)), 2,
                          chunked_handover=handover)
    cg = compile_group(ZCU, [p, q, r], mode="fused", residual_source=[None, None, 1],
                       knobs=knobs)
    assert cg.knobs[0].kept_outputs == (1,)
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (1, 32, 16, 16)).astype(np.int8)
    layers = []
    for i, s in enumerate((p, q, r)):
        _, w, b, sg, _ = random_layer_data(s, seed=40 + i)
        layers.append(dict(weight=w, bias=b, sign=sg))
    y1 = ref_spec(x, layers[0]["weight"], layers[0]["bias"], p, layers[0]["sign"])
    y2 = ref_spec(y1, layers[1]["weight"], layers[1]["bias"], q)
    y3 = ref_spec(y2, layers[2]["weight"], layers[2]["bias"], r, residual=y2)
    run = run_group(cg, cg.image(x, layers))
    assert np.array_equal(run.output, y3)
    assert run.dram_bytes["feature_maps"] == 0


def test_wide_single_block_resnet_stage_fuses_with_chunked_handover():
    """Two 3x3 128->128 layers on one 28x28 block (ResNet-18 layer2 shape): the inner layer's
    output block (4 x 784 accumulator tiles) would not fit zcu102's accumulator at once; chunk
    by chunk it does."""
    from schedules.knobs import group_footprint

    a = LayerSpec("l2a", 128, 128, 28, 28, (28, 28), shift=12, relu=True)
    b = LayerSpec("l2b", 128, 128, 28, 28, (28, 28), shift=12, residual_shift=1, relu=True)
    cg = compile_group(ZCU, [a, b], mode="fused", residual_source="input")
    k = cg.knobs[0]
    assert k.chunked_handover and group_footprint(ZCU, [a, b], k)["acc"] <= ZCU.acc_depth
    assert a.co_tiles(ZCU) * 28 * 28 > ZCU.acc_depth
    x, layers, ref = _resnet_pair_data(a, b, 2, 60)
    run = run_group(cg, cg.image(x, layers))
    assert np.array_equal(run.output, ref) and run.dram_bytes["feature_maps"] == 0
