"""Property tests: random valid programs never raise; one injected fault raises exactly the
documented error type."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boards import load_board
from bctvm import isa
from bctvm.errors import (
    DeadlockError,
    DramOutOfRangeError,
    IllegalInstructionError,
    MissingFinishError,
    SramOutOfRangeError,
    UnknownOpcodeError,
    UopOutOfRangeError,
)
from bctvm.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store, Uop
from bctvm.sim import Simulator

BOARDS = {name: load_board(name) for name in ("pynq", "zcu102")}
N_UOPS = 16
DATA_BYTES = 32 * 1024
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LOAD_MOD, COMPUTE_MOD, STORE_MOD = "load", "compute", "store"
# token queue used to hand control from one module to the next: (push flag, pop flag)
HANDOFF = {
    (LOAD_MOD, COMPUTE_MOD): ("push_next", "pop_prev"),
    (COMPUTE_MOD, LOAD_MOD): ("push_prev", "pop_next"),
    (COMPUTE_MOD, STORE_MOD): ("push_next", "pop_prev"),
    (STORE_MOD, COMPUTE_MOD): ("push_prev", "pop_next"),
}


@dataclasses.dataclass
class Case:
    cfg: object
    prog: list
    dram: np.ndarray
    modules: list  # module of each instruction


def _elem(cfg, mt):
    e = cfg.memtype_elem_bytes()
    return {MemType.UOP: e["uop"], MemType.WGT: e["wgt"], MemType.INP: e["inp"],
            MemType.ACC: e["acc"], MemType.ACC_8BIT: e["acc8"], MemType.OUT: e["out"]}[mt]


@st.composite
def mem_insn(draw, cfg, cls, mt, sram_depth, data_base):
    """A LOAD/STORE whose SRAM block and DRAM rows are in range (DRAM: the data region)."""
    y = draw(st.integers(1, 3))
    x = draw(st.integers(1, 4))
    stride = x + draw(st.integers(0, 3))
    pads = [0, 0, 0, 0] if cls is Store else [draw(st.integers(0, 2)) for _ in range(4)]
    total = (pads[0] + y + pads[1]) * (pads[2] + x + pads[3])
    sram = draw(st.integers(0, min(sram_depth - total, 300)))
    if mt == MemType.OUT_INP:  # source: output-buffer rows
        src = draw(st.integers(0, 200))
        return cls(memory_type=mt, sram_base=sram, dram_base=src, y_size=y, x_size=x,
                   x_stride=stride, y_pad_0=pads[0], y_pad_1=pads[1], x_pad_0=pads[2], x_pad_1=pads[3])
    e = _elem(cfg, mt)
    first = -(-data_base // e)
    last = (data_base + DATA_BYTES) // e - ((y - 1) * stride + x)
    return cls(memory_type=mt, sram_base=sram, dram_base=draw(st.integers(first, last)),
               y_size=y, x_size=x, x_stride=stride,
               y_pad_0=pads[0], y_pad_1=pads[1], x_pad_0=pads[2], x_pad_1=pads[3])


@st.composite
def loop_insn(draw, cls):
    bgn = draw(st.integers(0, N_UOPS - 1))
    end = draw(st.integers(bgn + 1, N_UOPS))
    kw = dict(uop_bgn=bgn, uop_end=end, iter_out=draw(st.integers(1, 4)),
              iter_in=draw(st.integers(1, 4)),
              **{f: draw(st.integers(0, 8)) for f in ("dst_factor_out", "dst_factor_in",
                                                     "src_factor_out", "src_factor_in")})
    if cls is Gemm:
        return Gemm(reset_reg=draw(st.booleans()), wgt_factor_out=draw(st.integers(0, 2)),
                    wgt_factor_in=draw(st.integers(0, 2)), **kw)
    return Alu(alu_opcode=draw(st.sampled_from(list(AluOp))), use_imm=draw(st.booleans()),
               imm=draw(st.integers(-40, 40)), **kw)


@st.composite
def valid_programs(draw):
    """A program handing control between modules with paired tokens, ending in FINISH."""
    cfg = BOARDS[draw(st.sampled_from(sorted(BOARDS)))]
    uop_bytes = N_UOPS * cfg.uop_elem_bytes
    data_base = -(-uop_bytes // 256) * 256
    uops = [Uop(dst=draw(st.integers(0, 63)), src=draw(st.integers(0, 63)),
                wgt=draw(st.integers(0, 15))) for _ in range(N_UOPS)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dram = rng.integers(0, 256, data_base + DATA_BYTES, dtype=np.uint8)
    dram[:uop_bytes] = isa.encode_uops(uops, cfg).view(np.uint8)

    prog = [Load(memory_type=MemType.UOP, sram_base=0, dram_base=0, y_size=1, x_size=N_UOPS,
                 x_stride=N_UOPS)]
    modules = [COMPUTE_MOD]
    cur = COMPUTE_MOD
    load_types = [MemType.INP, MemType.WGT] + ([MemType.OUT_INP] if cfg.onchip_reuse else [])
    depth = {MemType.INP: cfg.inp_depth, MemType.WGT: cfg.wgt_depth, MemType.OUT_INP: cfg.inp_depth,
             MemType.ACC: cfg.acc_depth, MemType.ACC_8BIT: cfg.acc_depth, MemType.OUT: cfg.out_depth}
    pending_pop = None
    for _ in range(draw(st.integers(1, 14))):
        nxt = draw(st.sampled_from([m for (a, m) in HANDOFF if a == cur] + [cur, cur]))
        if nxt != cur:
            push, pop = HANDOFF[(cur, nxt)]
            prog[-1] = prog[-1].replace(**{push: True})
            pending_pop, cur = pop, nxt
        if cur == LOAD_MOD:
            mt = draw(st.sampled_from(load_types))
            insn = draw(mem_insn(cfg, Load, mt, depth[mt], data_base))
        elif cur == STORE_MOD:
            insn = draw(mem_insn(cfg, Store, MemType.OUT, depth[MemType.OUT], data_base))
        else:
            kind = draw(st.sampled_from(["gemm", "alu", "acc", "acc8"]))
            if kind in ("gemm", "alu"):
                insn = draw(loop_insn(Gemm if kind == "gemm" else Alu))
            else:
                mt = MemType.ACC if kind == "acc" else MemType.ACC_8BIT
                insn = draw(mem_insn(cfg, Load, mt, depth[mt], data_base))
        if pending_pop:
            insn = insn.replace(**{pending_pop: True})
            pending_pop = None
        prog.append(insn)
        modules.append(cur)
    finish = Finish()
    if cur != COMPUTE_MOD:
        push, pop = HANDOFF[(cur, COMPUTE_MOD)]
        prog[-1] = prog[-1].replace(**{push: True})
        finish = Finish(**{pop: True})
    prog.append(finish)
    modules.append(COMPUTE_MOD)
    return Case(cfg, prog, dram, modules)


@SETTINGS
@given(valid_programs())
def test_valid_programs_never_raise(case):
    res = Simulator(case.cfg).run(case.prog, case.dram)
    assert res.counters["instructions"]["FINISH"] == 1
    assert res.cycles > 0 and res.dram.shape == case.dram.shape
    # the same stream, encoded, behaves identically
    again = Simulator(case.cfg).run(isa.encode_program(case.prog, case.cfg), case.dram)
    np.testing.assert_array_equal(res.dram, again.dram)
    assert res.cycles == again.cycles


# ---- one fault per program -------------------------------------------------------------------

POPS_OF = {LOAD_MOD: ["pop_next"], COMPUTE_MOD: ["pop_prev", "pop_next"], STORE_MOD: ["pop_prev"]}


def inject(case: Case, fault: str, pick: int):
    """(program or encoded bytes, expected exception type) with one fault injected."""
    prog, cfg = list(case.prog), case.cfg
    mems = [i for i, p in enumerate(prog) if isinstance(p, (Load, Store))
            and p.memory_type != MemType.OUT_INP]
    loops = [i for i, p in enumerate(prog) if isinstance(p, (Gemm, Alu))]
    if fault == "missing_finish":
        return prog[:-1], MissingFinishError
    if fault == "unmatched_pop":
        slots = [(i, f) for i, p in enumerate(prog) for f in POPS_OF[case.modules[i]]
                 if not getattr(p, f)]
        i, f = slots[pick % len(slots)]
        prog[i] = prog[i].replace(**{f: True})
        return prog, DeadlockError
    if fault == "sram_range":
        i = mems[pick % len(mems)]
        p = prog[i]
        buf_depth = {MemType.UOP: cfg.uop_depth, MemType.INP: cfg.inp_depth,
                     MemType.WGT: cfg.wgt_depth, MemType.ACC: cfg.acc_depth,
                     MemType.ACC_8BIT: cfg.acc_depth, MemType.OUT: cfg.out_depth}[p.memory_type]
        prog[i] = p.replace(sram_base=buf_depth - 1, x_size=max(p.x_size, 2),
                            x_stride=max(p.x_stride, 2), dram_base=0)
        return prog, SramOutOfRangeError
    if fault == "dram_range":
        i = mems[pick % len(mems)]
        p = prog[i]
        elems = case.dram.size // _elem(cfg, p.memory_type)
        prog[i] = p.replace(dram_base=elems - p.x_size + 1)
        return prog, DramOutOfRangeError
    if fault == "loop_index" and loops:
        i = loops[pick % len(loops)]
        prog[i] = prog[i].replace(iter_out=3, dst_factor_out=cfg.acc_depth - 1)
        return prog, SramOutOfRangeError
    if fault == "uop_not_loaded" and loops:
        i = loops[pick % len(loops)]
        prog[i] = prog[i].replace(uop_bgn=N_UOPS - 1, uop_end=N_UOPS + 1)
        return prog, UopOutOfRangeError
    if fault == "load_into_out":
        i = mems[pick % len(mems)]
        if isinstance(prog[i], Store):
            prog[i] = prog[i].replace(memory_type=MemType.INP)
        else:
            prog[i] = prog[i].replace(memory_type=MemType.OUT)
        return prog, IllegalInstructionError
    # "bad_memtype": an undefined memory-type code in the encoded stream
    i = mems[pick % len(mems)]
    raw = bytearray(isa.encode_program(prog, cfg))
    raw[16 * i] |= 0x80  # memory_type occupies bits 7..9 of word 0
    raw[16 * i + 1] |= 0x03
    return bytes(raw), UnknownOpcodeError


FAULTS = ["missing_finish", "unmatched_pop", "sram_range", "dram_range", "loop_index",
          "uop_not_loaded", "load_into_out", "bad_memtype"]


@SETTINGS
@given(valid_programs(), st.sampled_from(FAULTS), st.integers(0, 1000))
def test_one_fault_raises_its_documented_error(case, fault, pick):
    bad, expected = inject(case, fault, pick)
    with pytest.raises(Exception) as info:
        Simulator(case.cfg).run(bad, case.dram)
    assert type(info.value) is expected, f"{fault}: {type(info.value).__name__}: {info.value}"
    assert str(info.value)
