"""Input-channel GEMM passes (`LayerKnobs.ci_chunk`): a layer's reduction over input tiles
split into passes that accumulate into one accumulator tile, each pass loading only its
weights. Bit-exact on the simulator; the same DRAM bytes; the resolver uses it to double-buffer
weight-bound layers; the fit check agrees with the SRAM allocator."""

from __future__ import annotations

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm import isa
from bctvm.errors import BadInputError
from bctvm.isa import MemType
from bctvm.lower import lower_to_kernels
from bctvm.lower.group import compile_group, run_group
from bctvm.lower.sram import SramPlanner
from schedules import (BufferFitError, LayerKnobs, LayerSpec, ScheduleKnobs, check_fit,
                       layer_compute, layer_footprint, resolve_knobs, scheduled_module)

PYNQ = load_board("pynq")
ZCU = load_board("zcu102")


def _run(cfg, spec, knobs, seed=0, **ranges):
    cg = compile_group(cfg, [spec], knobs=knobs, name=spec.name)
    x, w, b, s, r = random_layer_data(spec, seed=seed, **ranges)
    run = run_group(cg, cg.image(x, [dict(weight=w, bias=b, sign=s, residual=r)]))
    ref = ref_spec(x, w, b, spec, s, r)
    assert np.array_equal(run.output, ref), f"{(run.output != ref).sum()} elements differ"
    assert len(np.unique(ref)) > 4
    return cg, run


def _weight_loads(cg) -> int:
    return sum(1 for i in cg.programs[0].instructions
               if isinstance(i, isa.Load) and i.memory_type == MemType.WGT)


def _resets(cg) -> int:
    return sum(1 for i in cg.programs[0].instructions if isinstance(i, isa.Gemm) and i.reset_reg)


@pytest.mark.parametrize("board, spec, chunks", [
    # plain 3x3 conv, 4 input tiles (zcu102) in passes of 1 and 2, two blocks per side
    ("zcu102", LayerSpec("plain", 128, 64, 16, 16, (8, 8), shift=12, relu=True), (1, 2)),
    # grouped: 2 packed groups of 2 input tiles each (pynq 16-lane tiles)
    ("pynq", LayerSpec("grp", 64, 64, 8, 8, (8, 8), groups=2, shift=10), (1,)),
])
def test_passes_are_bit_exact_and_move_the_same_bytes(board, spec, chunks):
    cfg = load_board(board)
    tig = spec.ci_tiles_per_group(cfg)
    assert tig > max(chunks)
    one = ScheduleKnobs((LayerKnobs(oc_chunk=1, ci_chunk=tig),), 2, False, blocks_inside=False)
    cg1, run1 = _run(cfg, spec, one)
    for ci in chunks:
        knobs = ScheduleKnobs((LayerKnobs(oc_chunk=1, ci_chunk=ci),), 2, False,
                              blocks_inside=False)
        cg, run = _run(cfg, spec, knobs)
        assert cg.knobs[0].layers[0].ci_chunk == ci
        assert np.array_equal(run.output, run1.output)
        # the weights of a chunk arrive in tig // ci loads, one reset per chunk either way
        assert _weight_loads(cg) == (tig // ci) * _weight_loads(cg1)
        assert _resets(cg) == _resets(cg1)
        for kind in ("input", "weights", "output"):
            assert run.dram_bytes[kind] == run1.dram_bytes[kind], kind


def test_depthwise_has_one_input_tile_per_group():
    """Depthwise (and any conv with one input tile per packed group): ci_chunk is 1 = all."""
    spec = LayerSpec("dw", 64, 64, 16, 16, (8, 8), groups=64, shift=8, relu=True)
    assert spec.ci_tiles_per_group(PYNQ) == 1
    assert resolve_knobs(PYNQ, [spec]).layers[0].ci_chunk == 1
    with pytest.raises(BadInputError, match="dw.*ci_chunk 2 must divide the 1"):
        resolve_knobs(PYNQ, [spec], ScheduleKnobs((LayerKnobs(ci_chunk=2),)))


def test_pool_sign_residual_with_row_subtiles():
    """Stride-2 layer with sign and residual, row sub-tiles, passes of one input tile; the
    input + weight bytes equal the traffic estimate (passes change neither)."""
    from schedules.knobs import estimate_dram_bytes

    spec = LayerSpec("s2", 64, 32, 16, 16, (8, 8), pool=True, sign=True, residual_shift=3,
                     shift=11)
    knobs = ScheduleKnobs((LayerKnobs(oc_chunk=1, sub_rows=2, rows_outer=True, ci_chunk=1),),
                          2, False)
    cg, run = _run(PYNQ, spec, knobs, seed=3)
    assert _weight_loads(cg) > 4 * spec.co_tiles(PYNQ)
    est = estimate_dram_bytes(PYNQ, spec, 1, 2, True, False,
                              bias_resident=cg.knobs[0].bias_resident)
    reg = cg.layout.regions
    assert run.dram_bytes["input"] - reg["l0_residual"].nbytes + run.dram_bytes["weights"] == est


def test_passes_need_rows_outside_chunks():
    spec = LayerSpec("ro", 64, 32, 16, 16, (8, 8), shift=11)
    with pytest.raises(BadInputError, match="ro.*ci_chunk 2.*rows_outer"):
        resolve_knobs(PYNQ, [spec], ScheduleKnobs((LayerKnobs(1, 2, False, 2),), 1, False))


def test_fused_group_with_chunked_inner_layer():
    """An inner layer computed in passes hands each finished chunk to the next layer; the last
    layer adds the group input (identity GEMM or kept on chip) and runs in passes too."""
    a = LayerSpec("a", 128, 64, 16, 16, (8, 8), shift=12, relu=True)
    b = LayerSpec("b", 64, 128, 16, 16, (8, 8), shift=11, residual_shift=0)
    knobs = ScheduleKnobs((LayerKnobs(1, ci_chunk=1), LayerKnobs(2, ci_chunk=1)), 2, False)
    cg = compile_group(ZCU, [a, b], mode="fused", residual_source="input", knobs=knobs)
    assert [lk.ci_chunk for lk in cg.knobs[0].layers] == [1, 1]
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (1, 128, 16, 16)).astype(np.int8)
    layers = []
    for i, s in enumerate((a, b)):
        _, w, bias, _, _ = random_layer_data(s, seed=20 + i)
        layers.append(dict(weight=w, bias=bias))
    ref = ref_spec(ref_spec(x, layers[0]["weight"], layers[0]["bias"], a),
                   layers[1]["weight"], layers[1]["bias"], b, residual=x)
    run = run_group(cg, cg.image(x, layers))
    assert np.array_equal(run.output, ref) and len(np.unique(ref)) > 20
    assert run.dram_bytes["feature_maps"] == 0


def test_weight_bound_layer_gets_two_vthreads_with_passes():
    """ResNet-18 layer4 shape on zcu102: one output tile's weights (16 x 9 elements) twice do
    not fit the 256-element weight buffer, passes of 8 input tiles do; the weight loads then
    overlap the GEMMs (fewer cycles, same bytes, bit-exact)."""
    spec = LayerSpec("l4", 512, 512, 7, 7, (7, 7), shift=14)
    k = resolve_knobs(ZCU, [spec])
    lk = k.layers[0]
    assert not k.weights_resident and k.vthreads == 2
    assert lk.ci_chunk == 8 and lk.oc_chunk == 1
    with pytest.raises(BufferFitError, match="l4: wgt buffer"):
        check_fit(ZCU, [spec], ScheduleKnobs((LayerKnobs(1, 7, True, 16),), 2, False))
    cg, run = _run(ZCU, spec, None, w_max=3, b_max=1 << 10)
    serial = ScheduleKnobs((LayerKnobs(1, 7, True, 16),), 1, False)
    cg1, run1 = _run(ZCU, spec, serial, w_max=3, b_max=1 << 10)
    assert run.dram_bytes["weights"] == run1.dram_bytes["weights"]
    assert run.cycles < 0.75 * run1.cycles


@pytest.mark.parametrize("ci", [1, 2, 4, 8])
def test_fit_check_agrees_with_the_allocator(ci):
    """The weight range the SRAM allocator gives a layer in passes is the footprint model's."""
    spec = LayerSpec("fit", 256, 64, 28, 28, (14, 14), shift=12)  # four blocks
    knobs = ScheduleKnobs((LayerKnobs(1, 14, True, ci),), 2, False)
    check_fit(ZCU, [spec], knobs)
    mod, resolved = scheduled_module(layer_compute(ZCU, spec), knobs)
    sites = SramPlanner(ZCU, resolved.vthreads, {"l0": "fit"}).plan(lower_to_kernels(mod)["main"].body)
    wgt = [s for s in sites.values() if s.kind == "wgt"]
    assert len(wgt) == 1 and wgt[0].elems == ci * 9 and wgt[0].slots == 2
    fp = layer_footprint(ZCU, spec, 1, 14, 2, False, ci_chunk=ci)
    assert wgt[0].elems * wgt[0].slots == fp["wgt"]
    inp = sum(s.elems * s.slots for s in sites.values() if s.kind == "inp")
    assert inp == fp["inp"]
