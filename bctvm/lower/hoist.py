"""bctvm HoistLoads: issue DRAM loads into the input/weight buffers as early as their data allow.

The load module runs its instructions in program order, and that order mixes DRAM loads
(LOAD INP/WGT) with on-chip copies (LOAD OUT_INP) that must wait for the compute module's
epilogue. In a fused group, the next output-channel chunk's (or GEMM pass's) weight load comes
after the current chunk's OUT_INP hand-over, so it cannot start before the current chunk's
GEMM and ALU finish: loads and compute serialise at every chunk boundary.

This pass moves each DRAM load up in the (serial) program order past every instruction it
does not conflict with: compute instructions and OUT_INP loads whose on-chip ranges do not
overlap the ones it writes. It stops at a conflict (the last reader/writer of its
destination range, e.g. the GEMM using the same weight copy), at another DRAM load (their
order is kept), at a STORE (loads never pass stores: no DRAM aliasing to reason about) and at
FINISH. The result is another valid serial order (only independent instructions swapped), so
InsertTokens (bctvm.lower.tokens) derives a correct, deadlock-free token set from it.
"""

from __future__ import annotations

from bctvm import isa
from bctvm.isa import MemType

from .tokens import Emitted

_DRAM_LOADS = (MemType.INP, MemType.WGT)


def is_dram_load(e: Emitted) -> bool:
    """A LOAD from DRAM into the input or weight buffer (a load-module instruction)."""
    return isinstance(e.insn, isa.Load) and e.insn.memory_type in _DRAM_LOADS


def _barrier(e: Emitted) -> bool:
    return is_dram_load(e) or isinstance(e.insn, (isa.Store, isa.Finish))


def _conflicts(load: Emitted, other: Emitted) -> bool:
    """`other` reads or writes a range `load` writes (a DRAM load reads nothing on chip)."""
    for b, lo, hi in load.writes:
        for ob, olo, ohi in (*other.reads, *other.writes):
            if ob == b and olo < hi and lo < ohi:
                return True
    return False


def hoist_loads(prog: list[Emitted]) -> list[Emitted]:
    """`prog` with every DRAM load moved as early as allowed (see the module docstring)."""
    out: list[Emitted] = []
    for e in prog:
        pos = len(out)
        if is_dram_load(e):
            while pos > 0 and not _barrier(out[pos - 1]) and not _conflicts(e, out[pos - 1]):
                pos -= 1
        out.insert(pos, e)
    return out
