"""bctvm InsertTokens: VTA dependency tokens from exact on-chip address ranges.

Every emitted instruction records the on-chip ranges it reads and writes ((buffer, lo, hi) with
buffer "inp", "wgt" or "acc"; the output buffer shares the accumulator's indices) and its module
(load: LOAD INP/WGT/OUT_INP; compute: LOAD UOP/ACC/ACC_8BIT, GEMM, ALU, FINISH; store: STORE).
The program order is a valid serial execution. For an instruction j and an adjacent module M
(load<->compute, compute<->store), j must wait for the latest earlier instruction i of M whose
ranges conflict with j's (read-after-write, write-after-read, write-after-write). Walking j in
program order and keeping, per direction, the last instruction already waited for, a new wait
sets `push` on i and `pop` on j; pushes and pops then pair up in order on each token queue, and
every wait points backwards in the serial order, so the program cannot deadlock. Different
blocks use different buffer copies (virtual threads), so their loads, compute and stores overlap.
FINISH waits for the last store and the last load.
"""

from __future__ import annotations

from dataclasses import dataclass

from bctvm import isa
from bctvm.isa import MemType

from .exprs import LoweringError

LOAD, COMPUTE, STORE = "load", "compute", "store"


@dataclass
class Emitted:
    """An instruction under construction with what it touches on chip."""

    insn: object
    module: str
    reads: tuple = ()  # ((buffer, lo, hi), ...)
    writes: tuple = ()
    layer: str = ""
    what: str = ""


def module_of(insn) -> str:
    if isinstance(insn, isa.Load):
        return LOAD if insn.memory_type in (MemType.INP, MemType.WGT, MemType.OUT_INP) else COMPUTE
    if isinstance(insn, isa.Store):
        return STORE
    return COMPUTE


# (from module, to module) -> (flag on the earlier instruction, flag on the waiting one)
_FLAGS = {
    (LOAD, COMPUTE): ("push_next", "pop_prev"),
    (COMPUTE, LOAD): ("push_prev", "pop_next"),
    (COMPUTE, STORE): ("push_next", "pop_prev"),
    (STORE, COMPUTE): ("push_prev", "pop_next"),
}


def insert_tokens(prog: list[Emitted]) -> list:
    """Instructions of `prog` with dependency flags set (see the module docstring)."""
    flags = [dict() for _ in prog]
    last_of: dict[str, int] = {LOAD: -1, COMPUTE: -1, STORE: -1}
    # per module and buffer: [(index, lo, hi, writes)] in program order
    hist: dict[str, dict[str, list]] = {LOAD: {}, COMPUTE: {}, STORE: {}}
    synced: dict[tuple, int] = {k: -1 for k in _FLAGS}
    for j, e in enumerate(prog):
        is_finish = isinstance(e.insn, isa.Finish)
        touched = [(b, lo, hi, False) for b, lo, hi in e.reads] + \
                  [(b, lo, hi, True) for b, lo, hi in e.writes]
        for src in (LOAD, COMPUTE, STORE):
            key = (src, e.module)
            if key not in _FLAGS:
                continue
            floor = synced[key]
            need = last_of[src] if is_finish else -1
            if not is_finish:
                for b, lo, hi, w in touched:
                    for i, ilo, ihi, iw in reversed(hist[src].get(b, ())):
                        if i <= max(floor, need):
                            break
                        if (w or iw) and ilo < hi and lo < ihi:
                            need = i
                            break
            if need > floor:
                push, pop = _FLAGS[key]
                if flags[need].get(push):
                    raise LoweringError(f"token scheme: instruction {need} pushes twice ({push})")
                flags[need][push] = True
                flags[j][pop] = True
                synced[key] = need
        for b, lo, hi, w in touched:
            hist[e.module].setdefault(b, []).append((j, lo, hi, w))
        last_of[e.module] = j
    return [e.insn.replace(**f) if f else e.insn for e, f in zip(prog, flags)]
