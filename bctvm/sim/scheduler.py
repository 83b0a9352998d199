"""Modules, dependency-token queues and the discrete-event order of execution.

Fetch dispatches LOAD INP/WGT/OUT_INP to the load module; LOAD UOP/ACC/ACC_8BIT, GEMM, ALU
and FINISH to compute; STORE to store. Four FIFO token queues connect them:
load->compute, compute->load, compute->store, store->compute ("prev"/"next" relative to the
order load -> compute -> store). Each module runs its own instructions in program order; an
instruction starts at the earliest cycle at which its module is free, it has been fetched,
and every token it pops has been pushed (a token is pushed when its instruction ends).
Among the instructions that can start, the earliest start runs next (ties: lower program
index), so functional effects follow simulated time and respect every token.

`check_program` rejects, before anything runs, what no timing could make legal: token
flags a module does not have, memory types the board cannot use, empty or out-of-buffer
micro-op ranges, a stream without FINISH or with instructions after it.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from boards import BoardConfig
from bctvm import isa
from bctvm.errors import (
    DeadlockError,
    IllegalInstructionError,
    MissingFinishError,
    UopOutOfRangeError,
)
from bctvm.isa import MemType, Opcode
from bctvm.sim.errors import CycleLimitError

LOAD_MOD, COMPUTE_MOD, STORE_MOD = 0, 1, 2
MODULE_NAMES = ("load", "compute", "store")
L2C, C2L, C2S, S2C = 0, 1, 2, 3
QUEUE_NAMES = ("load->compute", "compute->load", "compute->store", "store->compute")
_LOAD_MODULE_TYPES = (MemType.INP, MemType.WGT, MemType.OUT_INP)

# (module, flag) -> queue popped / pushed; a flag missing here is illegal on that module
_POPS = {
    (LOAD_MOD, "pop_next"): C2L,
    (COMPUTE_MOD, "pop_prev"): L2C,
    (COMPUTE_MOD, "pop_next"): S2C,
    (STORE_MOD, "pop_prev"): C2S,
}
_PUSHES = {
    (LOAD_MOD, "push_next"): L2C,
    (COMPUTE_MOD, "push_prev"): C2L,
    (COMPUTE_MOD, "push_next"): C2S,
    (STORE_MOD, "push_prev"): S2C,
}


def describe(row) -> str:
    """'GEMM', 'LOAD INP', 'ALU MAX', ... for messages."""
    op = Opcode(row.opcode)
    if op in (Opcode.LOAD, Opcode.STORE):
        return f"{op.name} {MemType(row.memory_type).name}"
    if op == Opcode.ALU:
        return f"ALU {isa.AluOp(row.alu_opcode).name}"
    return op.name


def module_of(row) -> int:
    op = row.opcode
    if op == Opcode.STORE:
        return STORE_MOD
    if op == Opcode.LOAD and row.memory_type in _LOAD_MODULE_TYPES:
        return LOAD_MOD
    return COMPUTE_MOD


class _Legality:
    """check_memtype's verdict per (opcode, memory type, padded), computed once each."""

    def __init__(self, cfg: BoardConfig):
        self.cfg = cfg
        self.cache = {}

    def check(self, row, index: int) -> None:
        padded = bool(row.y_pad_0 or row.y_pad_1 or row.x_pad_0 or row.x_pad_1)
        key = (row.opcode, row.memory_type, padded)
        if key not in self.cache:
            cls = isa.Store if row.opcode == Opcode.STORE else isa.Load
            probe = cls(memory_type=MemType(row.memory_type), y_pad_0=int(padded))
            try:
                isa.check_memtype(probe, self.cfg)
                self.cache[key] = None
            except IllegalInstructionError as err:
                self.cache[key] = str(err)
        msg = self.cache[key]
        if msg is not None:
            raise IllegalInstructionError(f"instruction {index}: {msg}")


_FLAG_NAMES = ("pop_prev", "pop_next", "push_prev", "push_next")
# per module: bit mask (bit k = _FLAG_NAMES[k]) of the token flags it may set
_ALLOWED_FLAGS = {
    mod: sum(1 << k for k, f in enumerate(_FLAG_NAMES) if (mod, f) in _POPS or (mod, f) in _PUSHES)
    for mod in (LOAD_MOD, COMPUTE_MOD, STORE_MOD)
}


def check_program(rows: list, cfg: BoardConfig) -> list:
    """Static legality of a whole stream (see module docstring); raises on the first fault.

    Returns the module of each instruction."""
    legality = _Legality(cfg)
    uop_depth = cfg.uop_depth
    finish_at = None
    modules = []
    for index, row in enumerate(rows):
        op = row.opcode
        if finish_at is not None:
            raise IllegalInstructionError(
                f"instruction {index} ({describe(row)}) follows the FINISH at instruction "
                f"{finish_at}; FINISH must be last"
            )
        mod = module_of(row)
        modules.append(mod)
        flags = row.pop_prev | row.pop_next << 1 | row.push_prev << 2 | row.push_next << 3
        if flags & ~_ALLOWED_FLAGS[mod]:
            flag = next(f for k, f in enumerate(_FLAG_NAMES)
                        if flags >> k & 1 and not _ALLOWED_FLAGS[mod] >> k & 1)
            raise IllegalInstructionError(
                f"instruction {index} ({describe(row)}): {flag} set, but the "
                f"{MODULE_NAMES[mod]} module has no such token queue"
            )
        if op == Opcode.GEMM or op == Opcode.ALU:
            if not 0 <= row.uop_bgn < row.uop_end <= uop_depth:
                raise UopOutOfRangeError(
                    f"instruction {index} ({describe(row)}): micro-op range "
                    f"[{row.uop_bgn}, {row.uop_end}) is empty or outside the micro-op buffer "
                    f"(depth {uop_depth})"
                )
        elif op == Opcode.FINISH:
            finish_at = index
        else:
            legality.check(row, index)
    if finish_at is None:
        raise MissingFinishError(
            f"the instruction stream ({len(rows)} instructions) has no FINISH"
            if rows else "the instruction stream is empty (no FINISH)"
        )
    return modules


def _token_tables() -> dict:
    """{(module, pop_prev, pop_next, push_prev, push_next): (queues popped, queues pushed)}."""
    table = {}
    for mod in (LOAD_MOD, COMPUTE_MOD, STORE_MOD):
        for bits in range(16):
            flags = dict(zip(("pop_prev", "pop_next", "push_prev", "push_next"),
                             ((bits >> k) & 1 for k in range(4))))
            pops = tuple(q for (m, f), q in _POPS.items() if m == mod and flags[f])
            pushes = tuple(q for (m, f), q in _PUSHES.items() if m == mod and flags[f])
            table[(mod, *flags.values())] = (pops, pushes)
    return table


_TOKEN_TABLE = _token_tables()
_CONSUMER = {q: m for (m, _f), q in _POPS.items()}  # the one module popping each queue


def run_schedule(rows: list, modules: list, fetch_cycles: int,
                 execute: Callable[[int, object, int, int], int],
                 max_cycles: int | None = None, progress=None) -> int:
    """Run every instruction in discrete-event order; returns the last end cycle.

    modules[i] is the module of instruction i (from check_program).
    execute(index, row, module, start) performs the instruction and returns its end cycle.
    progress, if given, is called with the number of instructions done since the last call.
    Raises DeadlockError naming the waiting instruction(s) if tokens can never arrive, and
    CycleLimitError if an instruction would start after max_cycles.
    """
    queues_of = [[], [], []]
    pops, pushes = [], []
    for index, row in enumerate(rows):
        mod = modules[index]
        queues_of[mod].append(index)
        popped, pushed = _TOKEN_TABLE[(mod, row.pop_prev, row.pop_next, row.push_prev, row.push_next)]
        pops.append(popped)
        pushes.append(pushed)
    tokens = [deque(), deque(), deque(), deque()]
    consumer = [_CONSUMER[q] for q in range(4)]
    head = [0, 0, 0]
    free = [0, 0, 0]
    # per module: None = recompute; False = blocked on a token; else (start, index)
    cand = [None, None, None]
    last_end = 0
    done_since = 0
    for _ in range(len(rows)):
        best = None
        for mod in (LOAD_MOD, COMPUTE_MOD, STORE_MOD):
            c = cand[mod]
            if c is None:
                h = head[mod]
                if h == len(queues_of[mod]):
                    cand[mod] = c = False
                else:
                    index = queues_of[mod][h]
                    start = free[mod]
                    fetched = (index + 1) * fetch_cycles
                    if fetched > start:
                        start = fetched
                    c = (start, index)
                    for q in pops[index]:
                        tq = tokens[q]
                        if not tq:
                            c = False
                            break
                        if tq[0] > start:
                            start = tq[0]
                            c = (start, index)
                    cand[mod] = c
            if c and (best is None or c < best):
                best = c
                best_mod = mod
        if best is None:
            raise DeadlockError(_deadlock_message(rows, queues_of, head, pops, tokens))
        start, index = best
        mod = best_mod
        if max_cycles is not None and start > max_cycles:
            raise CycleLimitError(
                f"instruction {index} ({describe(rows[index])}) would start at cycle {start}, "
                f"past the limit of {max_cycles} cycles"
            )
        for q in pops[index]:
            tokens[q].popleft()
        end = execute(index, rows[index], mod, start)
        for q in pushes[index]:
            tokens[q].append(end)
            if cand[consumer[q]] is False:
                cand[consumer[q]] = None
        free[mod] = end
        head[mod] += 1
        cand[mod] = None
        if end > last_end:
            last_end = end
        if progress is not None:
            done_since += 1
            if done_since == 4096:
                progress(done_since)
                done_since = 0
    if progress is not None and done_since:
        progress(done_since)
    return last_end


def _deadlock_message(rows, queues_of, head, pops, tokens) -> str:
    waiting = []
    for mod in (LOAD_MOD, COMPUTE_MOD, STORE_MOD):
        if head[mod] == len(queues_of[mod]):
            continue
        index = queues_of[mod][head[mod]]
        q = next(q for q in pops[index] if not tokens[q])
        flag = next(f for (m, f), qq in _POPS.items() if m == mod and qq == q)
        waiting.append((index, f"instruction {index} ({describe(rows[index])}) on the "
                               f"{MODULE_NAMES[mod]} module waits for a {QUEUE_NAMES[q]} "
                               f"token ({flag}) that is never pushed"))
    waiting.sort()
    first = waiting[0][1]
    rest = "; also blocked: " + "; ".join(w for _, w in waiting[1:]) if len(waiting) > 1 else ""
    return f"deadlock: {first}{rest}"
