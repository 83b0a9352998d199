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

Bounded memory (uop_loop.py): with an immediate every micro-op applies the same function
f(a) = op(a, imm), so the result of any loop is f applied c times to each element, c the
number of positions writing it; a loop larger than PLAN_POSITIONS is evaluated that way
(`_repeat`: closed forms of f^c; the counts come from the loop in sub-loops, axes with a zero
dst factor multiplying them). A register loop that large runs as consecutive sub-loops,
each with its own hazard-free runs, in sequential order.
"""

from __future__ import annotations

import numpy as np

from bctvm.isa import AluOp
from bctvm.sim.sram import Scratchpads
from bctvm.sim import uop_loop
from bctvm.sim.uop_loop import DstIndex, check_max, grid, uop_range

_SHIFT_CAP = 63  # tile-operand shifts are done on int64; 63 saturates like any larger amount
_INT32_BITS = 32


class AluPlan:
    """Index arrays and hazard-free runs of one ALU loop shape (valid until LOAD UOP)."""

    __slots__ = ("n", "dst", "src", "runs", "src_is_dst", "chunked", "nbytes")

    def __init__(self, row, index: int, sp: Scratchpads, part=None):
        """The plan of the whole loop or (part = (i0, ni, j0, nj)) of one sub-loop; a whole
        loop above PLAN_POSITIONS only has its bounds checked (chunked)."""
        where = f"instruction {index} (ALU {AluOp(row.alu_opcode).name})"
        bgn, end = uop_range(row, sp, where)
        iters = (row.iter_out, row.iter_in)
        self.n = iters[0] * iters[1] * (end - bgn)
        self.src = None
        self.src_is_dst = self.chunked = False
        self.nbytes = 0
        if self.n == 0:
            return
        dfac = (row.dst_factor_out, row.dst_factor_in)
        sfac = (row.src_factor_out, row.src_factor_in)
        dk, sk = sp.uop_dst[bgn:end], sp.uop_src[bgn:end]
        if part is None:
            check_max(sp, "acc", dk, iters, dfac, where, "dst")
            if not row.use_imm:
                check_max(sp, "acc", sk, iters, sfac, where, "src")
            if self.n > uop_loop.PLAN_POSITIONS:
                self.chunked = True
                return
        else:
            i0, ni, j0, nj = part
            dk, sk = uop_loop.shifted(dk, dfac, i0, j0), uop_loop.shifted(sk, sfac, i0, j0)
            iters = (ni, nj)
        dst = grid(dk, iters, dfac).reshape(-1)
        if not row.use_imm:
            self.src = grid(sk, iters, sfac).reshape(-1)
            self.src_is_dst = bool(np.array_equal(self.src, dst))
        self.runs = hazard_free_runs(dst, self.src, sp.depth["acc"])
        self.dst = DstIndex(dst) if len(self.runs) == 1 else dst
        self.nbytes = dst.nbytes * (1 if self.src is None else 2)


def run_alu(row, index: int, sp: Scratchpads) -> int:
    """Execute one ALU instruction; returns the number of micro-ops run (plans are cached
    per instruction row until the next LOAD UOP)."""
    plan = sp.plans.get(row)
    if plan is None:
        plan = sp.remember(row, AluPlan(row, index, sp))
    if plan.n == 0:
        return 0
    if not plan.chunked:
        _execute(row, sp, plan)
    elif row.use_imm:
        _repeat(row, sp)
    else:
        for part in uop_loop.sub_loops((row.iter_out, row.iter_in), row.uop_end - row.uop_bgn):
            _execute(row, sp, AluPlan(row, index, sp, part))
    return plan.n


def _execute(row, sp: Scratchpads, plan: AluPlan) -> None:
    op = row.alu_opcode
    if len(plan.runs) == 1:  # one vectorised step: read every operand, then write
        dst = plan.dst
        d = dst.part(0, dst.size)
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
        return
    imm = np.int32(row.imm)
    for a_, b_ in plan.runs:
        d = plan.dst[a_:b_]
        operand = imm if plan.src is None else sp.acc[plan.src[a_:b_]]
        new = apply(op, sp.acc[d], operand)
        sp.acc[d] = new
        sp.out[d] = new


def _repeat(row, sp: Scratchpads) -> None:
    """acc[d] = f^c[d](acc[d]) for f(a) = op(a, imm), c the write counts (module docstring)."""
    counts = loop_counts(row, sp)
    d = np.flatnonzero(counts)
    c = counts[d]
    a = sp.acc[d].astype(np.int64)  # (n, BATCH, BLOCK_OUT)
    new = repeat_op(AluOp(row.alu_opcode), a, int(row.imm), c.reshape((-1,) + (1,) * (a.ndim - 1)))
    sp.acc[d] = new
    sp.out[d] = new


def loop_counts(row, sp: Scratchpads) -> np.ndarray:
    """int64 [acc depth]: positions of the loop writing each accumulator index."""
    depth = sp.depth["acc"]
    bgn, end = row.uop_bgn, row.uop_end
    dfac = (row.dst_factor_out, row.dst_factor_in)
    iters, repeat = uop_loop.collapse((row.iter_out, row.iter_in), [f != 0 for f in dfac])
    counts = np.zeros(depth, dtype=np.int64)
    dk = sp.uop_dst[bgn:end]
    for i0, ni, j0, nj in uop_loop.sub_loops(iters, end - bgn):
        idx = grid(uop_loop.shifted(dk, dfac, i0, j0), (ni, nj), dfac).reshape(-1)
        counts += np.bincount(idx, minlength=depth)
    return counts * repeat


def repeat_op(op: AluOp, a: np.ndarray, imm: int, c: np.ndarray) -> np.ndarray:
    """f^c(a) for f(a) = op(a, imm) on int32 values held in int64 (c >= 1, broadcast)."""
    if op in (AluOp.MIN, AluOp.MAX):  # idempotent
        return apply(op, a.astype(np.int32), np.int32(imm))
    if op == AluOp.ADD:  # a + c*imm modulo 2**32
        return (a + (c * imm) % (1 << 32)).astype(np.int32)
    if op == AluOp.MUL:  # a * imm**c modulo 2**32
        cu, inv = np.unique(c, return_inverse=True)
        powers = np.array([pow(imm % (1 << 32), int(k), 1 << 32) for k in cu], dtype=np.uint64)
        factor = powers[inv].reshape(c.shape)
        return (a.astype(np.uint64) * factor).astype(np.int32)
    if imm >= 0:  # SHR: right shifts add up and saturate at the sign fill
        return (a >> np.minimum(c * imm, _SHIFT_CAP)).astype(np.int32)
    total = np.minimum(c * -imm, _SHIFT_CAP)  # left shifts add up; 32 or more give 0
    return np.where(total >= _INT32_BITS, 0, a << total).astype(np.int32)


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
