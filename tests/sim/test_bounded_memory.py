"""Bounded simulator memory: GEMM/ALU loops at their maximum extents run under a fixed peak
(tracemalloc: numpy reports its buffers to it), with exact results; loops cut into sub-loops
compute exactly what the whole loop computes."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boards import load_board
from bctvm.isa import Alu, AluOp, Gemm, Uop
from bctvm.sim import Simulator, uop_loop

from .helpers import loops_program, undump_acc, wrap32
from .test_insn import ref_loop
from .test_sim_properties import SETTINGS, loop_insn

PYNQ = load_board("pynq")
E = (1 << PYNQ.loop_iter_bits) - 1  # the largest iter_out / iter_in a GEMM/ALU can hold
PEAK_BYTES = 512 << 20  # what one max-extent loop may allocate (the documented 2 GiB bound
#                         also covers the DRAM image, the plan cache and Python itself)


def run_loops(cfg, uops, insns, inp, wgt, acc, n_dump):
    """Load inp/wgt/acc and the micro-ops, run `insns`, return acc[0:n_dump] (int64) and the
    tracemalloc peak (bytes) of the simulation."""
    prog, d = loops_program(cfg, uops, insns, inp, wgt, acc, n_dump)
    image = d.image()
    tracemalloc.start()
    try:
        res = Simulator(cfg).run(prog, image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    planes = d.read(res.dram, "out", np.int8, (4, n_dump, cfg.batch, cfg.block_out))
    return undump_acc(planes), peak, res


def _data(cfg, n_inp, n_wgt, n_acc, seed=0):
    rng = np.random.default_rng(seed)
    inp = rng.integers(-128, 128, (n_inp, cfg.batch, cfg.block_in), dtype=np.int8)
    wgt = rng.integers(-128, 128, (n_wgt, cfg.block_out, cfg.block_in), dtype=np.int8)
    acc = rng.integers(-2**31, 2**31, (n_acc, cfg.batch, cfg.block_out), dtype=np.int64)
    return inp, wgt, acc.astype(np.int32)


def _product(inp, wgt, s, w):
    return inp[s].astype(np.int64) @ wgt[w].astype(np.int64).T


def test_max_extent_gemm_runs_under_the_bound():
    """iter_out = iter_in = 16383 with nothing moving: 2**28 micro-ops, whose index grid alone
    would take 6 GiB, accumulate E*E times the same product."""
    inp, wgt, acc = _data(PYNQ, 2, 2, 2)
    g = Gemm(uop_bgn=0, uop_end=1, iter_out=E, iter_in=E)
    got, peak, res = run_loops(PYNQ, [Uop(dst=1, src=1, wgt=1)], [g], inp, wgt, acc, 2)
    assert peak < PEAK_BYTES, peak
    assert res.counters["gemm_uops"] == E * E
    np.testing.assert_array_equal(got[1], wrap32(acc[1] + E * E * _product(inp, wgt, 1, 1)))
    np.testing.assert_array_equal(got[0], acc[0])


@pytest.mark.parametrize("op,imm", [(AluOp.ADD, 3), (AluOp.ADD, -7), (AluOp.MUL, 3),
                                    (AluOp.MUL, -1), (AluOp.SHR, 1), (AluOp.SHR, -1),
                                    (AluOp.MIN, 5), (AluOp.MAX, -5)])
def test_max_extent_alu_immediate_runs_under_the_bound(op, imm):
    """The same 2**28-position loop on the ALU: f(a) = op(a, imm) applied E*E times."""
    inp, wgt, acc = _data(PYNQ, 1, 1, 2, seed=int(op) + 10)
    a = Alu(alu_opcode=op, use_imm=True, imm=imm, uop_bgn=0, uop_end=1, iter_out=E, iter_in=E)
    got, peak, _ = run_loops(PYNQ, [Uop(dst=1)], [a], inp, wgt, acc, 2)
    assert peak < PEAK_BYTES, peak
    x = acc[1].astype(object)
    c = E * E
    if op == AluOp.ADD:
        ref = x + c * imm
    elif op == AluOp.MUL:
        ref = x * pow(imm, c, 1 << 32)
    elif op == AluOp.SHR:
        ref = x >> min(c, 63) if imm > 0 else x * 0  # left shifts past 31 bits leave 0
    else:
        ref = np.minimum(x, imm) if op == AluOp.MIN else np.maximum(x, imm)
    np.testing.assert_array_equal(got[1], wrap32(ref))


def test_large_moving_loops_run_in_sub_loops_under_the_bound():
    """Loops whose dst/src/wgt move cannot be collapsed: 8M-position GEMM and ALU loops run
    as sub-loops of PLAN_POSITIONS, exactly."""
    n_out, n_in, k = 1020, 1020, 8  # dst u + i + j stays inside the 2048-deep accumulator
    assert n_out * n_in * k > uop_loop.PLAN_POSITIONS
    inp, wgt, acc = _data(PYNQ, PYNQ.inp_depth, PYNQ.wgt_depth, PYNQ.acc_depth, seed=5)
    uops = [Uop(dst=u, src=u, wgt=u) for u in range(k)]
    g = Gemm(uop_bgn=0, uop_end=k, iter_out=n_out, iter_in=n_in, dst_factor_out=1,
             src_factor_in=1, wgt_factor_in=0)
    a = Alu(alu_opcode=AluOp.ADD, use_imm=True, imm=-3, uop_bgn=0, uop_end=k, iter_out=n_out,
            iter_in=n_in, dst_factor_out=1, dst_factor_in=1)
    got, peak, _ = run_loops(PYNQ, uops, [g, a], inp, wgt, acc, PYNQ.acc_depth)
    assert peak < PEAK_BYTES, peak
    ref = acc.astype(np.int64)
    # GEMM: dst = u + i, sum over j of inp[u + j] @ wgt[u].T
    for u in range(k):
        s = inp[u:u + n_in].astype(np.int64).sum(axis=0) @ wgt[u].astype(np.int64).T
        ref[u:u + n_out] += s
    # ALU: every (i, j, u) writes dst u + i + j once
    counts = np.zeros(PYNQ.acc_depth, dtype=np.int64)
    for u in range(k):
        counts += np.bincount((u + np.arange(n_out)[:, None] + np.arange(n_in)).ravel(),
                              minlength=PYNQ.acc_depth)
    ref += (counts * -3)[:, None, None]
    np.testing.assert_array_equal(got, wrap32(ref))


@st.composite
def loop_programs(draw):
    """A few random GEMM/ALU loops over random state (the property tests' loop shapes)."""
    n = 16
    uops = [Uop(dst=draw(st.integers(0, 63)), src=draw(st.integers(0, 63)),
                wgt=draw(st.integers(0, 15))) for _ in range(n)]
    insns = [draw(loop_insn(draw(st.sampled_from([Gemm, Alu]))))
             for _ in range(draw(st.integers(1, 4)))]
    return uops, insns, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loop_programs())
def test_loops_with_collapsed_axes_match_the_sequential_reference(case):
    uops, insns, seed = case
    inp, wgt, acc = _data(PYNQ, 128, 32, 128, seed=seed)
    whole, _, _ = run_loops(PYNQ, uops, insns, inp, wgt, acc, 128)
    ref = acc.astype(np.int64)
    for insn in insns:
        ref = ref_loop(insn, uops, ref, inp, wgt)  # Python integers, position by position
    np.testing.assert_array_equal(whole, ref)


@SETTINGS
@given(loop_programs(), st.integers(1, 9))
def test_loops_cut_into_sub_loops_compute_the_same(case, limit):
    """The same loops cut into sub-loops of `limit` positions match the whole ones."""
    uops, insns, seed = case
    inp, wgt, acc = _data(PYNQ, 128, 32, 128, seed=seed)
    whole, _, res_whole = run_loops(PYNQ, uops, insns, inp, wgt, acc, 128)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(uop_loop, "PLAN_POSITIONS", limit)
        parts, _, res_parts = run_loops(PYNQ, uops, insns, inp, wgt, acc, 128)
    np.testing.assert_array_equal(parts, whole)
    assert res_parts.cycles == res_whole.cycles
    assert res_parts.counters == res_whole.counters
