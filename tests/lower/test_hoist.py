"""HoistLoads: DRAM loads issued as early as their on-chip ranges allow (past compute and
OUT_INP hand-overs, never past a conflict, another DRAM load or a store); fused groups stay
bit-exact and get faster."""

from __future__ import annotations

import numpy as np

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm import isa
from bctvm.isa import MemType
from bctvm.lower import lower_to_kernels
from bctvm.lower.emit import emit_program
from bctvm.lower.group import CompiledGroup, compile_group, run_group
from bctvm.lower.hoist import hoist_loads
from bctvm.lower.tokens import Emitted, module_of
from schedules import LayerSpec, group_compute, scheduled_module

ZCU = load_board("zcu102")


def _e(insn, reads=(), writes=(), what=""):
    return Emitted(insn, module_of(insn), tuple(reads), tuple(writes), "", what)


def _wgt(lo, hi, what):
    return _e(isa.Load(memory_type=MemType.WGT), writes=[("wgt", lo, hi)], what=what)


def test_loads_pass_independent_work_and_stop_at_conflicts_loads_and_stores():
    gemm_a = _e(isa.Gemm(), reads=[("wgt", 0, 9), ("inp", 0, 50)], writes=[("acc", 0, 8)],
                what="gemm a")
    alu = _e(isa.Alu(), reads=[("acc", 0, 8)], writes=[("acc", 0, 8)], what="alu")
    handover = _e(isa.Load(memory_type=MemType.OUT_INP), reads=[("acc", 0, 8)],
                  writes=[("inp", 100, 108)], what="out_inp")
    prog = [_wgt(0, 9, "w a"), gemm_a, alu, handover, _wgt(9, 18, "w b"), _wgt(0, 9, "w c")]
    order = [e.what for e in hoist_loads(prog)]
    # b is free right after a (the previous DRAM load); c reuses a's range: after gemm a
    assert order == ["w a", "w b", "gemm a", "w c", "alu", "out_inp"]
    store = _e(isa.Store(memory_type=MemType.OUT), reads=[("acc", 0, 8)], what="store")
    order = [e.what for e in hoist_loads([_wgt(0, 9, "w a"), gemm_a, store, alu,
                                          _wgt(9, 18, "w b")])]
    assert order == ["w a", "gemm a", "store", "w b", "alu"]
    # an input load into the range a hand-over writes stays behind it
    inp = _e(isa.Load(memory_type=MemType.INP), writes=[("inp", 104, 120)], what="inp")
    order = [e.what for e in hoist_loads([_wgt(0, 9, "w a"), gemm_a, handover, alu, inp])]
    assert order == ["w a", "gemm a", "out_inp", "inp", "alu"]


def test_fused_streamed_weights_overlap_the_handover():
    """Two 256-channel layers on one 7x7 block (weights streamed in GEMM passes): the next
    chunk's weight load no longer waits behind the current chunk's OUT_INP hand-over."""
    a = LayerSpec("a", 256, 256, 7, 7, (7, 7), shift=14, relu=True)
    b = LayerSpec("b", 256, 256, 7, 7, (7, 7), shift=12)
    cg = compile_group(ZCU, [a, b], mode="fused", residual_source=[None, None])
    k = cg.knobs[0]
    assert not k.weights_resident and k.vthreads == 2
    mod, _ = scheduled_module(group_compute(ZCU, [a, b], [None, None]), k)
    serial = emit_program(ZCU, lower_to_kernels(mod)["main"], cg.layout,
                          {"data": "data", "out": "out"}, name="serial", hoist=False)
    cg_serial = CompiledGroup(ZCU, cg.specs, "fused", [None, None], cg.layout, [serial], [k])

    def load_queue(prog):
        return [i.memory_type for i in prog.instructions if isinstance(i, isa.Load)
                and i.memory_type in (MemType.WGT, MemType.INP, MemType.OUT_INP)]

    hoisted, plain = load_queue(cg.programs[0]), load_queue(serial)
    assert sorted(hoisted) == sorted(plain) and hoisted != plain
    assert hoisted.index(MemType.OUT_INP) > plain.index(MemType.OUT_INP)

    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (1, 256, 7, 7)).astype(np.int8)
    layers = [dict(weight=random_layer_data(s, seed=30 + i)[1],
                   bias=random_layer_data(s, seed=30 + i)[2]) for i, s in enumerate((a, b))]
    ref = ref_spec(ref_spec(x, layers[0]["weight"], layers[0]["bias"], a),
                   layers[1]["weight"], layers[1]["bias"], b)
    fast = run_group(cg, cg.image(x, layers))
    slow = run_group(cg_serial, cg_serial.image(x, layers))
    assert np.array_equal(fast.output, ref) and np.array_equal(slow.output, ref)
    assert len(np.unique(ref)) > 20
    assert fast.dram_bytes["weights"] == slow.dram_bytes["weights"]
    assert fast.cycles < slow.cycles
