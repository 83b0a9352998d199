"""Token-ordered multi-stage programs, the cycle model, counters and region attribution."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from boards import Timing, load_board
from bctvm import isa
from bctvm.errors import BadInputError
from bctvm.isa import Alu, AluOp, Finish, Gemm, MemType, Store, Uop
from bctvm.sim import Simulator

from .helpers import DramBuilder, load

PYNQ = load_board("pynq")


def with_timing(cfg, **changes):
    return dataclasses.replace(cfg, timing=dataclasses.replace(cfg.timing, **changes))


# ---- a double-buffered load -> compute -> store pipeline ------------------------------------


def pipeline(cfg, tiles=6, n=8, seed=0):
    """Per tile: LOAD INP (buffer half t%2) -> GEMM reset + GEMM -> ALU ReLU -> STORE.

    Tokens: load waits for compute to release its half (t >= 2); compute waits for the load
    and for the store of tile t-2 (same acc/out half); store waits for compute."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (tiles, n, cfg.batch, cfg.block_in), dtype=np.int8)
    w = rng.integers(-128, 128, (1, cfg.block_out, cfg.block_in), dtype=np.int8)
    d = DramBuilder(cfg)
    u = d.uops("uops", [Uop(dst=0, src=0, wgt=0), Uop(dst=n, src=n, wgt=0)])
    w_ = d.put("weights", w, "wgt")
    x_ = d.put("input", x, "inp")
    o_ = d.reserve("output", tiles * n, "out")
    prog = [load(MemType.UOP, 0, u, x=2), load(MemType.WGT, 0, w_)]
    for t in range(tiles):
        half = t % 2
        prog.append(load(MemType.INP, half * n, x_ + t * n, x=n, pop_next=t >= 2, push_next=True))
        loop = dict(uop_bgn=half, uop_end=half + 1, iter_out=n, dst_factor_out=1, src_factor_out=1)
        prog += [Gemm(reset_reg=True, pop_prev=True, pop_next=t >= 2, **loop),
                 Gemm(push_prev=t + 2 < tiles, **loop),
                 Alu(alu_opcode=AluOp.MAX, use_imm=True, imm=0, push_next=True, **loop),
                 Store(sram_base=half * n, dram_base=o_ + t * n, y_size=1, x_size=n, x_stride=n,
                       pop_prev=True, push_prev=t + 2 < tiles or t == tiles - 1)]
    prog.append(Finish(pop_next=True))
    acc = np.einsum("tnbi,oi->tnbo", x.astype(np.int64), w[0].astype(np.int64))
    expected = (np.maximum(acc, 0) & 0xFF).astype(np.uint8).view(np.int8)
    return prog, d, expected


def token_pairs(prog, trace):
    """(push end, pop start) for every token, pairing the k-th push and pop of each queue."""
    from bctvm.sim.program_table import rows_from_records
    from bctvm.sim.scheduler import _TOKEN_TABLE, module_of

    rows = rows_from_records(prog, PYNQ)
    span = {i: (s, e) for i, _m, s, e in trace}
    pushes, pops = {}, {}
    for i, row in enumerate(rows):
        popped, pushed = _TOKEN_TABLE[(module_of(row), row.pop_prev, row.pop_next,
                                       row.push_prev, row.push_next)]
        for q in pushed:
            pushes.setdefault(q, []).append(span[i][1])
        for q in popped:
            pops.setdefault(q, []).append(span[i][0])
    return [(pe, ps) for q in pops for pe, ps in zip(pushes[q], pops[q])]


TIMINGS = {
    "default": {},
    "slow_dram": {"dram_request_cycles": 900, "dram_row_cycles": 50},
    "slow_gemm": {"gemm_uop_cycles": 40, "pipeline_fill_cycles": 100},
    "slow_alu": {"alu_uop_cycles": 300},
}


def test_pipeline_results_independent_of_module_timing():
    prog, d, expected = pipeline(PYNQ)
    outs, cycles, orders = [], [], []
    for name, change in TIMINGS.items():
        res = Simulator(with_timing(PYNQ, **change)).run(prog, d.image(), trace=True)
        got = d.read(res.dram, "output", np.int8, expected.shape)
        np.testing.assert_array_equal(got, expected, err_msg=name)
        outs.append(got)
        cycles.append(res.cycles)
        orders.append([i for i, *_ in sorted(res.trace, key=lambda e: (e[2], e[0]))])
        # every token was consumed no earlier than it was produced
        assert all(push_end <= pop_start for push_end, pop_start in token_pairs(prog, res.trace))
    assert len(set(cycles)) == len(cycles)  # the timings really differ ...
    assert len({tuple(o) for o in orders}) > 1  # ... and so does the interleaving


def test_pipeline_overlaps_modules():
    prog, d, _ = pipeline(PYNQ, tiles=8, n=64)
    res = Simulator(PYNQ).run(prog, d.image())
    busy = res.module_busy_cycles
    assert res.cycles < busy["load"] + busy["compute"] + busy["store"]
    assert res.cycles >= max(busy.values())


def test_trace_respects_module_program_order():
    prog, d, _ = pipeline(PYNQ)
    res = Simulator(PYNQ).run(prog, d.image(), trace=True)
    for module in ("load", "compute", "store"):
        spans = [(i, s, e) for i, m, s, e in res.trace if m == module]
        spans.sort()
        assert all(e0 <= s1 for (_, _, e0), (_, s1, _) in zip(spans, spans[1:]))


# ---- cycle model ---------------------------------------------------------------------------


def single_load_cycles(cfg, x):
    d = DramBuilder(cfg)
    base = d.reserve("input", x, "inp")
    prog = [load(MemType.INP, 0, base, x=x), Finish()]
    return Simulator(cfg).run(prog, d.image())


def test_transfer_cost_follows_the_documented_formula():
    cfg, x = PYNQ, 64
    t = cfg.timing
    fetch = t.insn_issue_cycles + math.ceil(cfg.insn_bytes / cfg.bus_bytes)
    beats = t.dram_row_cycles + math.ceil(x * cfg.inp_elem_bytes / cfg.bus_bytes)
    res = single_load_cycles(cfg, x)
    assert res.cycles == fetch + beats + t.dram_request_cycles
    assert res.dram_port_busy_cycles == beats
    assert res.latency_ms == pytest.approx(res.cycles / (cfg.clock_mhz * 1e3))


def test_bigger_transfers_cost_more():
    cycles = [single_load_cycles(PYNQ, x).cycles for x in (1, 8, 64, 512)]
    assert cycles == sorted(cycles) and len(set(cycles)) == 4


def test_wider_bus_is_faster():
    wide = dataclasses.replace(PYNQ, log_bus_width=PYNQ.log_bus_width + 1)
    assert single_load_cycles(wide, 256).cycles < single_load_cycles(PYNQ, 256).cycles


def test_row_overhead_makes_strided_loads_slower():
    d = DramBuilder(PYNQ)
    base = d.reserve("input", 64, "inp")
    one_row = [load(MemType.INP, 0, base, y=1, x=64), Finish()]
    rows = [load(MemType.INP, 0, base, y=8, x=8), Finish()]
    sim = Simulator(PYNQ)
    diff = sim.run(rows, d.image()).cycles - sim.run(one_row, d.image()).cycles
    assert diff == 7 * PYNQ.timing.dram_row_cycles


def test_padding_fill_costs_cycles():
    d = DramBuilder(PYNQ)
    base = d.reserve("input", 16, "inp")
    sim = Simulator(PYNQ)
    plain = sim.run([load(MemType.INP, 0, base, y=4, x=4), Finish()], d.image())
    padded = sim.run([load(MemType.INP, 0, base, y=4, x=4, y_pad_0=1, y_pad_1=1, x_pad_0=1,
                           x_pad_1=1), Finish()], d.image())
    pad_bytes = (36 - 16) * PYNQ.inp_elem_bytes
    assert padded.cycles - plain.cycles == math.ceil(pad_bytes / PYNQ.timing.sram_fill_bytes_per_cycle)


def compute_busy(cfg, insn, k=4):
    d = DramBuilder(cfg)
    u = d.uops("uops", [Uop(dst=i, src=i + k, wgt=0) for i in range(k)])
    prog = [load(MemType.UOP, 0, u, x=k), insn, Finish()]
    res = Simulator(cfg).run(prog, d.image(), trace=True)
    return next(e - s for i, m, s, e in res.trace if i == 1)


def test_gemm_costs_one_uop_per_cycle_plus_fill():
    t = PYNQ.timing
    g = Gemm(uop_bgn=0, uop_end=4, iter_out=3, iter_in=5)
    assert compute_busy(PYNQ, g) == t.pipeline_fill_cycles + 60 * t.gemm_uop_cycles


def test_alu_tile_operand_costs_more_than_immediate():
    t = PYNQ.timing
    imm = compute_busy(PYNQ, Alu(use_imm=True, imm=1, uop_bgn=0, uop_end=4, iter_out=2))
    tile = compute_busy(PYNQ, Alu(use_imm=False, uop_bgn=0, uop_end=4, iter_out=2))
    assert imm == t.pipeline_fill_cycles + 8 * t.alu_uop_cycles
    assert tile == t.pipeline_fill_cycles + 8 * t.alu_reg_uop_cycles
    assert tile > imm


def test_dram_port_is_shared_between_modules():
    """A load-module LOAD INP and a compute-module LOAD ACC at once serialise on the port."""
    cfg = PYNQ
    d = DramBuilder(cfg)
    i_ = d.reserve("input", 256, "inp")
    a_ = d.reserve("acc", 64, "acc")
    prog = [load(MemType.INP, 0, i_, x=256), load(MemType.ACC, 0, a_, x=64), Finish()]
    res = Simulator(cfg).run(prog, d.image(), trace=True)
    (_, _, s0, e0), (_, _, s1, e1) = res.trace[:2]
    t = cfg.timing
    beats_inp = t.dram_row_cycles + 256 * cfg.inp_elem_bytes // cfg.bus_bytes
    beats_acc = t.dram_row_cycles + 64 * cfg.acc_elem_bytes // cfg.bus_bytes
    assert res.dram_port_busy_cycles == beats_inp + beats_acc
    assert s1 < e0  # the two modules overlap in time ...
    assert e1 - s0 >= beats_inp + beats_acc  # ... but their transfers take turns


# ---- counters, regions, report ---------------------------------------------------------------


def test_counters_and_region_attribution():
    prog, d, _ = pipeline(PYNQ, tiles=4, n=8)
    res = Simulator(PYNQ).run(prog, d.image(), regions=d.regions)
    c = res.counters
    e = PYNQ.memtype_elem_bytes()
    assert c["dram_read_bytes"] == {"uop": 2 * e["uop"], "wgt": e["wgt"], "inp": 32 * e["inp"],
                                    "acc": 0, "acc8": 0}
    assert c["dram_write_bytes"] == 32 * e["out"]
    assert c["region_read_bytes"] == {"uops": 2 * e["uop"], "weights": e["wgt"],
                                      "input": 32 * e["inp"], "output": 0}
    assert c["region_write_bytes"] == {"uops": 0, "weights": 0, "input": 0, "output": 32 * e["out"]}
    assert c["instructions"] == {"LOAD": 6, "STORE": 4, "GEMM": 8, "ALU": 4, "FINISH": 1}
    assert c["insn_bytes"] == len(prog) * PYNQ.insn_bytes
    assert c["gemm_uops"] == 8 * 8 and c["alu_uops"] == 4 * 8
    assert c["macs"] == 4 * 8 * PYNQ.gemm_macs_per_cycle


def test_region_attribution_splits_straddling_transfers():
    cfg = PYNQ
    e = cfg.inp_elem_bytes
    dram = np.zeros(64 * e, dtype=np.uint8)
    regions = {"a": (0, 10 * e), "b": (10 * e, 40 * e)}  # elements 40.. are in no region
    # 4 rows of 3 elements, 12 apart, from element 2: rows at 2, 14, 26, 38 (last: 38, 39, 40)
    prog = [load(MemType.INP, 0, 2, y=4, x=3, stride=12), Finish()]
    res = Simulator(cfg).run(prog, dram, regions=regions)
    assert res.counters["region_read_bytes"] == {"a": 3 * e, "b": 8 * e, "other": 1 * e}
    assert res.counters["dram_read_bytes"]["inp"] == 12 * e


def test_overlapping_regions_are_rejected():
    with pytest.raises(BadInputError, match="overlap"):
        Simulator(PYNQ).run([Finish()], np.zeros(64, np.uint8), regions={"a": (0, 32), "b": (16, 48)})


def test_encoded_stream_gives_identical_results():
    prog, d, _ = pipeline(PYNQ)
    sim = Simulator(PYNQ)
    a = sim.run(prog, d.image(), regions=d.regions)
    b = sim.run(isa.encode_program(prog, PYNQ), d.image(), regions=d.regions)
    np.testing.assert_array_equal(a.dram, b.dram)
    assert (a.cycles, a.counters, a.module_busy_cycles) == (b.cycles, b.counters, b.module_busy_cycles)


def test_input_image_is_not_modified_and_report_is_json():
    prog, d, _ = pipeline(PYNQ)
    image = d.image()
    before = image.copy()
    res = Simulator(PYNQ).run(prog, image)
    np.testing.assert_array_equal(image, before)
    assert not np.array_equal(res.dram, before)
    rep = json.loads(json.dumps(res.to_report()))
    assert rep["board"] == "pynq" and rep["cycles"] == res.cycles
    assert rep["clock_mhz"] == PYNQ.clock_mhz and rep["onchip_reuse"] is False
    assert set(rep["module_busy_cycles"]) == {"fetch", "load", "compute", "store"}
    assert rep["counters"]["macs"] == res.counters["macs"]


def test_timing_variants_are_valid_boards():
    """with_timing keeps a validated BoardConfig (guards the helper the tests rely on)."""
    cfg = with_timing(PYNQ, gemm_uop_cycles=3)
    assert isinstance(cfg.timing, Timing) and cfg.timing.gemm_uop_cycles == 3
