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


def _overlap(a, b) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def _conflict(i: Emitted, j: Emitted) -> bool:
    for w in i.writes:
        if any(_overlap(w, r) for r in j.reads) or any(_overlap(w, x) for x in j.writes):
            return True
    return any(_overlap(r, w) for r in i.reads for w in j.writes)


def insert_tokens(prog: list[Emitted]) -> list:
    """Instructions of `prog` with dependency flags set (see the module docstring)."""
    flags = [dict() for _ in prog]
    by_module: dict[str, list[int]] = {LOAD: [], COMPUTE: [], STORE: []}
    synced: dict[tuple, int] = {k: -1 for k in _FLAGS}
    for j, e in enumerate(prog):
        is_finish = isinstance(e.insn, isa.Finish)
        for src in (LOAD, COMPUTE, STORE):
            key = (src, e.module)
            if key not in _FLAGS:
                continue
            hist = by_module[src]
            need = -1
            if is_finish:
                need = hist[-1] if hist else -1
            else:
                lo = synced[key]
                for i in reversed(hist):
                    if i <= lo:
                        break
                    if _conflict(prog[i], e):
                        need = i
                        break
            if need > synced[key]:
                push, pop = _FLAGS[key]
                if flags[need].get(push):
                    raise LoweringError(f"token scheme: instruction {need} pushes twice ({push})")
                flags[need][push] = True
                flags[j][pop] = True
                synced[key] = need
        by_module[e.module].append(j)
    return [e.insn.replace(**f) if f else e.insn for e, f in zip(prog, flags)]
