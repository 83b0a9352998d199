"""Input loaded per GEMM pass (`LayerKnobs.inp_per_pass`): a one-layer group whose padded input
(all input tiles of a row sub-tile) does not fit the input buffer loads, inside each
input-channel pass, only that pass's ci_chunk tiles. Bit-exact on the simulator (zero padding
by the LOAD pad fields, replicate/reflect from the source block); the input is read once per
output-channel chunk, as estimated; the resolver takes it only when nothing else fits; the
footprint model agrees with the SRAM allocator."""

from __future__ import annotations

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm.errors import BadInputError
from bctvm.lower import lower_to_kernels
from bctvm.lower.group import compile_group, run_group
from bctvm.lower.sram import SramPlanner
from schedules import (BufferFitError, LayerKnobs, LayerSpec, ScheduleKnobs, check_fit,
                       layer_compute, layer_footprint, resolve_knobs, scheduled_module)
from schedules.knobs import estimate_dram_bytes

PYNQ = load_board("pynq")


def _wide(mode="constant", out_channels=16):
    # 32 input tiles x 3 rows x 34 padded columns = 3264 > pynq's 2048 input elements
    return LayerSpec("wide", 512, out_channels, 32, 32, (32, 32), padding_mode=mode, shift=12,
                     relu=True)


def _run(cfg, spec, knobs=None, seed=1):
    cg = compile_group(cfg, [spec], knobs=knobs, name=spec.name)
    x, w, b, s, r = random_layer_data(spec, seed=seed)
    run = run_group(cg, cg.image(x, [dict(weight=w, bias=b, sign=s, residual=r)]))
    ref = ref_spec(x, w, b, spec, s, r)
    assert np.array_equal(run.output, ref), f"{(run.output != ref).sum()} elements differ"
    assert len(np.unique(ref)) > 20
    return cg, run


def _estimate(cfg, spec, k: ScheduleKnobs) -> int:
    lk = k.layers[0]
    return estimate_dram_bytes(cfg, spec, lk.oc_chunk, lk.sub_rows, lk.rows_outer,
                               k.weights_resident, bias_resident=k.bias_resident,
                               inp_per_pass=lk.inp_per_pass)


@pytest.mark.parametrize("mode", ["constant", "replicate", "reflect"])
def test_wide_layer_fits_pynq_with_the_input_per_pass(mode):
    spec = _wide(mode)
    # all 32 input tiles of even one output row (3 x 34 x 32 = 3264) exceed the buffer
    with pytest.raises(BufferFitError, match="wide: inp buffer"):
        resolve_knobs(PYNQ, [spec], ScheduleKnobs((LayerKnobs(inp_per_pass=False),)))
    cg, run = _run(PYNQ, spec)
    k = cg.knobs[0]
    lk = k.layers[0]
    assert lk.inp_per_pass and lk.ci_chunk < spec.ci_tiles(PYNQ)
    check_fit(PYNQ, [spec], k)
    assert run.dram_bytes["feature_maps"] == 0
    moved = run.dram_bytes["input"] + run.dram_bytes["weights"]
    if mode == "constant":  # exact for zero padding (edge padding reads a few more rows)
        assert moved == _estimate(PYNQ, spec, k)
    else:
        assert moved >= _estimate(PYNQ, spec, k)


def test_input_is_read_again_per_output_channel_chunk():
    """Two output-channel chunks, row sub-tiles, passes of 2 tiles: the input crosses DRAM
    twice (as estimated), and the output equals the all-tiles-at-once schedule's."""
    spec = LayerSpec("pp", 128, 32, 16, 16, (8, 8), shift=11)
    per_pass = ScheduleKnobs((LayerKnobs(1, 4, True, 2, inp_per_pass=True),), 2, False)
    whole = ScheduleKnobs((LayerKnobs(1, 4, True, 2, inp_per_pass=False),), 2, False)
    cg, run = _run(PYNQ, spec, per_pass)
    cg1, run1 = _run(PYNQ, spec, whole)
    assert cg.knobs[0].layers[0].inp_per_pass and not cg1.knobs[0].layers[0].inp_per_pass
    assert np.array_equal(run.output, run1.output)
    assert run.dram_bytes["input"] == 2 * run1.dram_bytes["input"]
    assert run.dram_bytes["weights"] == run1.dram_bytes["weights"]
    for c, r in ((cg, run), (cg1, run1)):
        assert r.dram_bytes["input"] + r.dram_bytes["weights"] == _estimate(PYNQ, spec,
                                                                             c.knobs[0])


@pytest.mark.parametrize("ci", [1, 2, 4])
def test_fit_check_agrees_with_the_allocator(ci):
    spec = LayerSpec("fit", 128, 32, 16, 16, (8, 8), shift=11)
    knobs = ScheduleKnobs((LayerKnobs(1, 4, True, ci, inp_per_pass=True),), 2, False, False,
                          bias_resident=False)
    check_fit(PYNQ, [spec], knobs)
    mod, resolved = scheduled_module(layer_compute(PYNQ, spec), knobs)
    body = lower_to_kernels(mod)["main"].body
    sites = SramPlanner(PYNQ, resolved.vthreads, {"l0": "fit"}).plan(body)
    fp = layer_footprint(PYNQ, spec, 1, 4, 2, False, ci_chunk=ci, bias_resident=False,
                         inp_per_pass=True)
    inp = [s for s in sites.values() if s.kind == "inp"]
    assert len(inp) == 1 and inp[0].elems == ci * (8 // 2 + 2) * 10 and inp[0].slots == 2
    assert inp[0].elems * inp[0].slots == fp["inp"]
    wgt = sum(s.elems * s.slots for s in sites.values() if s.kind == "wgt")
    assert wgt == fp["wgt"]


def test_resolver_loads_the_input_once_when_it_fits():
    """A layer that fits with all input tiles on chip keeps them (no re-read)."""
    spec = LayerSpec("fits", 128, 32, 16, 16, (8, 8), shift=11)
    assert not resolve_knobs(PYNQ, [spec]).layers[0].inp_per_pass
    k = resolve_knobs(PYNQ, [_wide(out_channels=64)])
    assert k.layers[0].inp_per_pass
    # the input is re-read per output-channel chunk: the resolver takes chunks larger than one
    spec, lk = _wide(out_channels=64), k.layers[0]
    assert lk.oc_chunk > 1
    assert _estimate(PYNQ, spec, k) < estimate_dram_bytes(
        PYNQ, spec, 1, lk.sub_rows, True, k.weights_resident, bias_resident=k.bias_resident,
        inp_per_pass=True)


def test_refused_where_the_input_arrives_on_chip_or_is_grouped():
    a = LayerSpec("a", 64, 64, 16, 16, (8, 8), shift=10)
    b = LayerSpec("b", 64, 64, 16, 16, (8, 8), shift=10)
    with pytest.raises(BadInputError, match="b.*inp_per_pass.*one-layer group"):
        resolve_knobs(PYNQ, [a, b], ScheduleKnobs((LayerKnobs(), LayerKnobs(inp_per_pass=True))))
    dw = LayerSpec("dw", 512, 512, 32, 32, (32, 32), groups=512, shift=8)
    with pytest.raises(BadInputError, match="dw.*inp_per_pass"):
        resolve_knobs(PYNQ, [dw], ScheduleKnobs((LayerKnobs(inp_per_pass=True),)))
    # a depthwise layer has one input tile per group: nothing to split, the same error as before
    with pytest.raises(BufferFitError, match="dw: inp buffer"):
        resolve_knobs(PYNQ, [dw])
