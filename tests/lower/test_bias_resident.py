"""Bias/sign tiles resident in the accumulator while the weights are streamed
(`ScheduleKnobs.bias_resident`): loaded once per run instead of per chunk and block (their
LOAD ACC is a compute-module instruction that waits for the DRAM port). Bit-exact on the
simulator; the resolver's fit rule; the traffic estimate and the footprint model agree with
the measured bytes and the SRAM allocator. Also: all micro-ops of a program loaded at once."""

from __future__ import annotations

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm import isa
from bctvm.isa import MemType
from bctvm.lower import lower_to_kernels
from bctvm.lower.group import compile_group, run_group
from bctvm.lower.sram import SramPlanner
from schedules import (BufferFitError, LayerKnobs, LayerSpec, ScheduleKnobs, check_fit,
                       layer_compute, layer_footprint, resolve_knobs, scheduled_module)
from schedules.knobs import estimate_dram_bytes

PYNQ = load_board("pynq")
ZCU = load_board("zcu102")


def _loads(cg, memtype) -> int:
    return sum(1 for p in cg.programs for i in p.instructions
               if isinstance(i, isa.Load) and i.memory_type == memtype)


@pytest.mark.parametrize("bias_resident", [True, False])
def test_one_layer_streamed_weights_resident_bias_and_sign(bias_resident):
    """4 blocks x 4 output tiles, weights per chunk: bias/sign tiles once (resident) or per
    chunk; bit-exact either way; input + weight bytes = the estimate; the allocator's
    accumulator range = the footprint model's."""
    spec = LayerSpec("sb", 32, 64, 16, 16, (8, 8), sign=True, shift=10, relu=True)
    knobs = ScheduleKnobs((LayerKnobs(oc_chunk=1, sub_rows=8),), 2, False,
                          bias_resident=bias_resident, blocks_inside=False)  # per block
    cg = compile_group(PYNQ, [spec], knobs=knobs, name="sb")
    k = cg.knobs[0]
    assert not k.weights_resident and k.bias_resident is bias_resident and k.vthreads == 2
    x, w, b, s, _ = random_layer_data(spec, seed=5)
    run = run_group(cg, cg.image(x, [dict(weight=w, bias=b, sign=s)]))
    ref = ref_spec(x, w, b, spec, s)
    assert np.array_equal(run.output, ref) and len(np.unique(ref)) > 4
    blocks, cot = 4, spec.co_tiles(PYNQ)
    assert _loads(cg, MemType.ACC) == (2 if bias_resident else 2 * blocks * cot)
    assert _loads(cg, MemType.WGT) >= blocks * cot  # weights still streamed per chunk
    est = estimate_dram_bytes(PYNQ, spec, 1, 8, True, False, bias_resident=bias_resident)
    assert run.dram_bytes["input"] + run.dram_bytes["weights"] == est
    # the accumulator range the allocator gives = the footprint model's
    mod, resolved = scheduled_module(layer_compute(PYNQ, spec), knobs)
    sites = SramPlanner(PYNQ, resolved.vthreads, {"l0": "sb"}).plan(
        lower_to_kernels(mod)["main"].body)
    acc = sum(st.elems * st.slots for st in sites.values() if st.kind == "acc")
    fp = layer_footprint(PYNQ, spec, 1, 8, 2, False, bias_resident=bias_resident)
    assert acc == fp["acc"]


def test_fused_group_streamed_weights_resident_bias_and_sign():
    """Two layers with sign, weights streamed: the resolver keeps bias/sign resident (one
    LOAD ACC per vector for the whole run, none per block), bit-exact, bytes = the estimate,
    and the same output as streaming them."""
    a = LayerSpec("fa", 64, 64, 16, 16, (8, 8), sign=True, shift=10, relu=True)
    b = LayerSpec("fb", 64, 64, 16, 16, (8, 8), sign=True, shift=9)
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (1, 64, 16, 16)).astype(np.int8)
    layers = []
    for i, s in enumerate((a, b)):
        _, w, bias, sign, _ = random_layer_data(s, seed=30 + i)
        layers.append(dict(weight=w, bias=bias, sign=sign))
    ref = ref_spec(ref_spec(x, layers[0]["weight"], layers[0]["bias"], a, layers[0]["sign"]),
                   layers[1]["weight"], layers[1]["bias"], b, layers[1]["sign"])
    outs = {}
    for br in (None, False):
        cg = compile_group(ZCU, [a, b], mode="fused",
                           knobs=ScheduleKnobs(weights_resident=False, bias_resident=br,
                                                 blocks_inside=False))
        k = cg.knobs[0]
        assert not k.weights_resident and k.bias_resident is (br is None)
        run = run_group(cg, cg.image(x, layers))
        assert np.array_equal(run.output, ref) and len(np.unique(ref)) > 20
        n_acc = _loads(cg, MemType.ACC)
        assert n_acc == 4 if br is None else n_acc == 2 * 4 * (a.co_tiles(ZCU) // k.layers[0].oc_chunk
                                                                + b.co_tiles(ZCU) // k.layers[1].oc_chunk)
        est = sum(estimate_dram_bytes(ZCU, s, lk.oc_chunk, lk.sub_rows, lk.rows_outer, False,
                                      first=i == 0, bias_resident=k.bias_resident)
                  for i, (s, lk) in enumerate(zip((a, b), k.layers)))
        assert run.dram_bytes["input"] + run.dram_bytes["weights"] == est
        outs[br] = run.output
    assert np.array_equal(outs[None], outs[False])


def test_fit_rule():
    """Resident bias/sign when they fit (streamed or resident weights); streamed when keeping
    them would cost the second virtual thread; an explicit choice is honoured."""
    l4 = LayerSpec("l4", 512, 512, 7, 7, (7, 7), shift=14)  # weights streamed on zcu102
    k = resolve_knobs(ZCU, [l4])
    assert not k.weights_resident and k.bias_resident and k.vthreads == 2
    small = LayerSpec("small", 32, 32, 8, 8, (8, 8), sign=True, shift=8)
    k = resolve_knobs(ZCU, [small])
    assert k.weights_resident and k.bias_resident
    k = resolve_knobs(ZCU, [small], ScheduleKnobs(bias_resident=False))
    assert k.weights_resident and not k.bias_resident
    # 1x1, 32 output tiles with sign: a 1000-element conv tile per chunk; two copies fit the
    # 2048-element accumulator with per-chunk vectors (2 x 1002), not with 64 resident ones
    wide = LayerSpec("wide", 32, 1024, 25, 40, (25, 40), kernel=(1, 1), padding=(0, 0, 0, 0),
                     sign=True, shift=8)
    fixed = ScheduleKnobs((LayerKnobs(oc_chunk=1, sub_rows=25),), weights_resident=False)
    k = resolve_knobs(ZCU, [wide], fixed)
    assert not k.bias_resident and k.vthreads == 2
    with pytest.raises(BufferFitError, match="wide: acc buffer needs 2064"):
        check_fit(ZCU, [wide], ScheduleKnobs(k.layers, 2, False, bias_resident=True))
    k1 = resolve_knobs(ZCU, [wide], ScheduleKnobs(fixed.layers, 1, False))
    assert k1.bias_resident and k1.vthreads == 1


def test_uops_loaded_once_when_they_fit():
    """All micro-ops of a program in one LOAD UOP (they fit the buffer); the same output as
    loading each kernel's on first use."""
    from bctvm.lower.emit import emit_program

    spec = LayerSpec("u", 32, 32, 16, 16, (8, 8), pool=True, shift=9, relu=True)
    cg = compile_group(PYNQ, [spec], name="u")
    assert _loads(cg, MemType.UOP) == 1
    x, w, b, _, _ = random_layer_data(spec, seed=2)
    run = run_group(cg, cg.image(x, [dict(weight=w, bias=b)]))
    assert np.array_equal(run.output, ref_spec(x, w, b, spec))
    mod, _ = scheduled_module(layer_compute(PYNQ, spec), cg.knobs[0])
    func = lower_to_kernels(mod)["main"]
    lazy = emit_program(PYNQ, func, preload_uops=False)
    assert sum(1 for i in lazy.instructions
               if isinstance(i, isa.Load) and i.memory_type == MemType.UOP) > 1
    assert np.array_equal(lazy.uops, cg.programs[0].uops)
