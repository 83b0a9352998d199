"""ALU: acc[dst] = op(acc[dst], imm or acc[src]) over the whole micro-op loop, then narrowing.

Ops on int32 lanes with two's-complement wrap: MIN, MAX, ADD, MUL (low 32 bits of the
product), SHR (arithmetic shift right by the operand; a negative operand shifts left; shift
amounts of 32 or more give the sign fill (right) or 0 (left)). The immediate is the signed
imm field, sign-extended. After each micro-op out[dst] = low 8 bits of acc[dst].

Sequential semantics are kept exactly: the loop runs in order (i, j, k) and a micro-op sees
every earlier write. The index space is cut into the longest runs in which no micro-op
reads (dst or src) an element written earlier in the same run; each run is one vectorised
step (gather all, compute, scatter). Ordinary epilogues (bias add, ReLU, shift, clip,
residual add) are a single run.
"""

from __future__ import annotations

import numpy as np

from bctvm.isa import AluOp
from bctvm.sim.sram import Scratchpads
from bctvm.sim.uop_loop import DstIndex, check_max, grid, uop_range

_SHIFT_CAP = 63  # tile-operand shifts are done on int64; 63 saturates like any larger amount
_INT32_BITS = 32


class AluPlan:
    """Index arrays and hazard-free runs of one ALU loop shape (valid until LOAD UOP)."""

    __slots__ = ("n", "dst", "src", "runs", "src_is_dst")

    def __init__(self, row, index: int, sp: Scratchpads):
        where = f"instruction {index} (ALU {AluOp(row.alu_opcode).name})"
        bgn, end = uop_range(row, sp, where)
        iters = (row.iter_out, row.iter_in)
        self.n = iters[0] * iters[1] * (end - bgn)
        self.src = None
        self.src_is_dst = False
        if self.n == 0:
            return
        dfac = (row.dst_factor_out, row.dst_factor_in)
        dk = sp.uop_dst[bgn:end]
        check_max(sp, "acc", dk, iters, dfac, where, "dst")
        dst = grid(dk, iters, dfac).reshape(-1)
        if not row.use_imm:
            sfac = (row.src_factor_out, row.src_factor_in)
            sk = sp.uop_src[bgn:end]
            check_max(sp, "acc", sk, iters, sfac, where, "src")
            self.src = grid(sk, iters, sfac).reshape(-1)
            self.src_is_dst = bool(np.array_equal(self.src, dst))
        self.runs = hazard_free_runs(dst, self.src, sp.depth["acc"])
        self.dst = DstIndex(dst) if len(self.runs) == 1 else dst


def run_alu(row, index: int, sp: Scratchpads) -> int:
    """Execute one ALU instruction; returns the number of micro-ops run (plans are cached
    per instruction row until the next LOAD UOP)."""
    plan = sp.plans.get(row)
    if plan is None:
        plan = sp.remember(row, AluPlan(row, index, sp))
    if plan.n == 0:
        return 0
    op = row.alu_opcode
    if len(plan.runs) == 1:  # one vectorised step: read every operand, then write
        dst = plan.dst
        d = dst.part(0, plan.n)
        a = sp.acc[d]  # a view when dst is a contiguous run, else a copy
        if plan.src is None:
            operand = np.int32(row.imm)
        elif plan.src_is_dst:
            operand = a
        else:
            operand = sp.acc[plan.src]  # fancy indexing copies: read before any write
        if dst.start is not None:
            apply_inplace(op, a, operand)
            np.copyto(sp.out[d], a, casting="unsafe")
        else:
            a = apply(op, a, operand)
            sp.acc[d] = a
            sp.out[d] = a
        return plan.n
    imm = np.int32(row.imm)
    for a_, b_ in plan.runs:
        d = plan.dst[a_:b_]
        operand = imm if plan.src is None else sp.acc[plan.src[a_:b_]]
        new = apply(op, sp.acc[d], operand)
        sp.acc[d] = new
        sp.out[d] = new
    return plan.n


def apply_inplace(op: AluOp, a: np.ndarray, b) -> None:
    """a = op(a, b) in place (a an int32 view; b an int32 scalar or array)."""
    if op == AluOp.MIN:
        np.minimum(a, b, out=a)
    elif op == AluOp.MAX:
        np.maximum(a, b, out=a)
    elif op == AluOp.ADD:
        np.add(a, b, out=a)
    elif op == AluOp.MUL:
        np.multiply(a, b, out=a)
    elif np.ndim(b) == 0:  # SHR by an immediate
        sh = int(b)
        if sh >= 0:
            np.right_shift(a, min(sh, _INT32_BITS - 1), out=a)
        elif -sh < _INT32_BITS:
            np.left_shift(a, -sh, out=a)
        else:
            a[...] = 0
    else:
        a[...] = apply(op, a, b)


def apply(op: AluOp, a: np.ndarray, b) -> np.ndarray:
    """op(a, b) on int32 arrays (b an int32 array or scalar), wrapping like the hardware."""
    if op == AluOp.MIN:
        return np.minimum(a, b)
    if op == AluOp.MAX:
        return np.maximum(a, b)
    if op == AluOp.ADD:
        return a + b  # int32 + int32 wraps
    if op == AluOp.MUL:
        return a * b
    if op == AluOp.SHR:
        a64 = a.astype(np.int64)
        s = np.asarray(b, dtype=np.int64)
        right = a64 >> np.clip(s, 0, _SHIFT_CAP)
        left = a64 << np.clip(-s, 0, _SHIFT_CAP)
        return np.where(s >= 0, right, left).astype(np.int32)
    raise AssertionError(op)  # AluOp is closed; decoding rejects anything else


def hazard_free_runs(dst: np.ndarray, src, depth: int) -> list:
    """[(start, end)] runs of the sequential index space, each safe to vectorise.

    A position n conflicts with an earlier position m of its run if dst[m] == dst[n]
    (repeated write) or dst[m] == src[n] (read after write)."""
    n = dst.size
    counts = np.bincount(dst, minlength=depth)
    repeated = counts.max() > 1
    raw = False
    if src is not None and not np.array_equal(src, dst):
        raw = bool((counts[src] > 0).any())
    if not repeated and not raw:
        return [(0, n)]
    pos = np.arange(n, dtype=np.int64)
    order = np.argsort(dst, kind="stable")  # by dst value, then position
    sorted_dst = dst[order]
    conflict = np.full(n, -1, dtype=np.int64)
    same = sorted_dst[1:] == sorted_dst[:-1]
    conflict[order[1:][same]] = order[:-1][same]  # previous write of the same dst
    if src is not None:
        keys = sorted_dst * n + order
        k = np.searchsorted(keys, src * n + pos, side="left") - 1
        cand = order[np.clip(k, 0, None)]
        hit = (k >= 0) & (dst[cand] == src) & (cand < pos)
        conflict = np.maximum(conflict, np.where(hit, cand, -1))
    runs, start = [], 0
    for i, c in enumerate(conflict.tolist()):
        if c >= start:
            runs.append((start, i))
            start = i
    runs.append((start, n))
    return runs
