"""GEMM: acc[dst] += inp[src] @ wgt[wgt].T over the whole micro-op loop at once.

Per micro-op: inp[src] is BATCH x BLOCK_IN int8, wgt[wgt] is BLOCK_OUT x BLOCK_IN int8, and
the BATCH x BLOCK_OUT int32 product is added to acc[dst] (int32, two's-complement wrap);
then out[dst] = low 8 bits of acc[dst]. With reset_reg, acc[dst] = out[dst] = 0 instead.

Vectorisation: the loop's axes (iter_out, iter_in, uop) split into *kept* axes, along
which dst changes, and *reduced* axes, along which dst is constant (the K reduction of a
conv: kernel taps and input-channel blocks writing one output tile). Products are summed
over the reduced axes exactly and wrap to int32 once (wrapping commutes with addition, so
the order of accumulation never matters). When the weight tiles along the reduced axes are
the same for every kept position (a conv's weights do not depend on the output pixel), the
whole instruction is one matrix product X[M*BATCH, Q*BLOCK_IN] @ W[Q*BLOCK_IN, BLOCK_OUT];
otherwise per-micro-op products are formed (one BLAS call per distinct weight tile, or an
int32 einsum when tiles rarely repeat) and summed. Repeated dst indices among the kept
positions are summed with np.add.at, never overwritten.

Float BLAS is exact here: products of int8 are integers of magnitude <= 2**14, and float32
is used only when every partial sum stays <= 2**24 (Q x BLOCK_IN <= 1024), float64 (exact
to 2**53) otherwise.

Everything that depends only on the instruction and the micro-ops (index arrays, bounds
checks, the kept/reduced split) is a `GemmPlan`, cached per instruction row in the
scratchpads until the next LOAD UOP; the weight matrix of a shared-weight plan is cached
until the next LOAD WGT.

Bounded memory (uop_loop.py): a loop axis along which dst, src and wgt all stay put adds the
same products `extent` times, so it is collapsed and the sums multiplied by its extent
(exact modulo 2**32); a loop still larger than PLAN_POSITIONS runs as sub-loops, each with
its own uncached plan; every vectorised step gathers at most ~_CHUNK_BYTES, splitting the
reduced axis too when one output position sums very many terms.
"""

from __future__ import annotations

import numpy as np

from bctvm.sim.sram import Scratchpads
from bctvm.sim import uop_loop
from bctvm.sim.uop_loop import DstIndex, check_max, grid, uop_range

_CHUNK_BYTES = 32 << 20  # working-set bound per vectorised step
_INT8_PRODUCT_MAX = 128 * 128  # |a*b| for int8 a, b
_FLOAT32_EXACT = 1 << 24  # every integer of magnitude <= 2**24 is exact in float32
_UOPS_PER_BLAS_CALL = 16  # below this many micro-ops per weight tile, einsum is cheaper


def _float_dtype(terms: int, block_in: int):
    """A BLAS dtype in which sums of `terms` x `block_in` int8 products are exact."""
    return np.float32 if terms * block_in * _INT8_PRODUCT_MAX <= _FLOAT32_EXACT else np.float64


class GemmPlan:
    """Index arrays of one GEMM loop shape (see module docstring)."""

    __slots__ = ("n", "reset", "dst", "src_mq", "wgt_q", "wgt_mq", "dtype", "shared",
                 "w_version", "w_mat", "single", "x_shape", "out_shape", "batch1", "exact32",
                 "repeat", "chunked", "iters", "n_uops", "nbytes")

    def __init__(self, row, index: int, sp: Scratchpads, part=None):
        """The plan of the whole loop, or (part = (i0, ni, j0, nj) of the collapsed loop) of
        one sub-loop; a whole loop above PLAN_POSITIONS only records its shape (chunked)."""
        where = f"instruction {index} (GEMM)"
        bgn, end = uop_range(row, sp, where)
        iters = (row.iter_out, row.iter_in)
        self.n = iters[0] * iters[1] * (end - bgn)
        self.reset = bool(row.reset_reg)
        self.w_version, self.w_mat = -1, None
        self.shared = self.chunked = False
        self.repeat, self.nbytes = 1, 0
        if self.n == 0:
            return
        dfac = (row.dst_factor_out, row.dst_factor_in)
        sfac = (row.src_factor_out, row.src_factor_in)
        wfac = (row.wgt_factor_out, row.wgt_factor_in)
        dk, sk, wk = sp.uop_dst[bgn:end], sp.uop_src[bgn:end], sp.uop_wgt[bgn:end]
        if part is None:
            check_max(sp, "acc", dk, iters, dfac, where, "dst")
            if not self.reset:
                check_max(sp, "inp", sk, iters, sfac, where, "src")
                check_max(sp, "wgt", wk, iters, wfac, where, "wgt")
        # axes along which nothing moves repeat the same products (reset: the same zeroing)
        moving = [dfac[a] != 0 or (not self.reset and (sfac[a] != 0 or wfac[a] != 0))
                  for a in range(2)]
        iters, self.repeat = uop_loop.collapse(iters, moving)
        self.iters, self.n_uops = iters, end - bgn
        if part is None and iters[0] * iters[1] * (end - bgn) > uop_loop.PLAN_POSITIONS:
            self.chunked = True
            return
        if part is not None:
            i0, ni, j0, nj = part
            dk, sk, wk = (uop_loop.shifted(k, f, i0, j0)
                          for k, f in ((dk, dfac), (sk, sfac), (wk, wfac)))
            iters = (ni, nj)
        dst = grid(dk, iters, dfac)
        self.nbytes = dst.nbytes
        if self.reset:
            self.dst = DstIndex(dst.reshape(-1))
            return
        src, wgt = grid(sk, iters, sfac), grid(wk, iters, wfac)
        # which loop axes change dst (kept) and which only accumulate (reduced)
        dst_const = (iters[0] == 1 or dfac[0] == 0, iters[1] == 1 or dfac[1] == 0,
                     dk.size == 1 or dk.min() == dk.max())
        wgt_const = (wfac[0] == 0, wfac[1] == 0, wk.size == 1 or wk.min() == wk.max())
        kept = [a for a in range(3) if not dst_const[a]]
        perm = kept + [a for a in range(3) if dst_const[a]]
        m = int(np.prod([dst.shape[a] for a in kept], dtype=np.int64))
        q = dst.size // m
        self.dst = DstIndex(dst.transpose(perm).reshape(m, q)[:, 0])
        self.src_mq = np.ascontiguousarray(src.transpose(perm).reshape(m, q))
        wgt_mq = wgt.transpose(perm).reshape(m, q)
        self.shared = all(wgt_const[a] for a in kept)
        self.wgt_q = np.ascontiguousarray(wgt_mq[0])
        self.wgt_mq = None if self.shared else np.ascontiguousarray(wgt_mq)
        self.nbytes = self.src_mq.nbytes * (1 if self.shared else 2) + self.dst.idx.nbytes
        _, b, bi = sp.inp.shape
        self.dtype = _float_dtype(q, bi)
        self.exact32 = self.dtype == np.float32  # float32 sums convert straight to int32
        # one vectorised step unless the working set is large (then _shared_weights chunks)
        self.single = m * q * b * bi * np.dtype(self.dtype).itemsize <= _CHUNK_BYTES
        self.batch1 = b == 1
        self.x_shape = (m * b, q * bi)
        self.out_shape = (m, b, sp.wgt.shape[1])

    def scaled(self, sums: np.ndarray) -> np.ndarray:
        """int32 sums times the collapsed axes' extent, wrapping like the accumulator."""
        if self.repeat == 1:
            return sums
        return (sums.astype(np.int64) * self.repeat).astype(np.int32)

    def weights(self, sp: Scratchpads) -> np.ndarray:
        """W[Q*BLOCK_IN, BLOCK_OUT] of a shared-weight plan, rebuilt after each LOAD WGT."""
        if self.w_version != sp.wgt_version:
            q = self.wgt_q.size
            bo, bi = sp.wgt.shape[1:]
            self.w_mat = sp.wgt[self.wgt_q].transpose(0, 2, 1).reshape(q * bi, bo).astype(self.dtype)
            self.w_version = sp.wgt_version
        return self.w_mat


def run_gemm(row, index: int, sp: Scratchpads) -> int:
    """Execute one GEMM; returns the number of micro-ops run (iter_out x iter_in x uops).

    Plans are cached per instruction row (equal rows have equal loops), so a repeated
    instruction costs a few numpy calls."""
    plan = sp.plans.get(row)
    if plan is None:
        plan = sp.remember(row, GemmPlan(row, index, sp))
    if plan.n == 0:
        return 0
    if not plan.chunked:
        _execute(sp, plan)
        return plan.n
    for part in uop_loop.sub_loops(plan.iters, plan.n_uops):  # bounded memory: module docstring
        _execute(sp, GemmPlan(row, index, sp, part))
    return plan.n


def _execute(sp: Scratchpads, plan: GemmPlan) -> None:
    if plan.reset:
        plan.dst.assign(sp, 0)
    elif plan.shared and plan.single:
        x = sp.inp[plan.src_mq]
        x = x.reshape(plan.x_shape) if plan.batch1 else x.transpose(0, 2, 1, 3).reshape(plan.x_shape)
        s = x.astype(plan.dtype) @ plan.weights(sp)
        s = s.astype(np.int32) if plan.exact32 else s.astype(np.int64).astype(np.int32)
        plan.dst.accumulate(sp, plan.scaled(s.reshape(plan.out_shape)))
    elif plan.shared:
        _shared_weights(sp, plan)
    else:
        _per_uop(sp, plan)


def _steps(m: int, q: int, per_term: int):
    """(rows, q_step): kept rows per step and reduced terms per step, so one step handles
    about _CHUNK_BYTES / per_term terms (the reduced axis is split only when one row is
    already larger)."""
    terms = max(1, _CHUNK_BYTES // per_term)
    if q <= terms:
        return max(1, terms // q), q
    return 1, terms


def _shared_weights(sp: Scratchpads, plan: GemmPlan) -> None:
    """BLAS matmuls over chunks of kept positions (and of reduced terms when one position
    sums very many), all using the same weight tiles."""
    m, q = plan.src_mq.shape
    _, b, bi = sp.inp.shape
    bo = sp.wgt.shape[1]
    w = plan.weights(sp)
    dt = plan.dtype
    step, q_step = _steps(m, q, b * bi * np.dtype(dt).itemsize)
    for c in range(0, m, step):
        rows = min(step, m - c)
        total = None
        for q0 in range(0, q, q_step):
            x = sp.inp[plan.src_mq[c:c + rows, q0:q0 + q_step]]
            qs = x.shape[1]
            x = x.reshape(-1, qs * bi) if b == 1 else x.transpose(0, 2, 1, 3).reshape(-1, qs * bi)
            part = (x.astype(dt) @ w[q0 * bi:(q0 + qs) * bi]).astype(np.int64)
            total = part if total is None else total + part
        plan.dst.accumulate(sp, plan.scaled(total.astype(np.int32).reshape(rows, b, bo)), c, rows)


def _per_uop(sp: Scratchpads, plan: GemmPlan) -> None:
    """Per-micro-op products summed over the reduced axis; weight tiles vary by position.

    Few distinct weight tiles: one BLAS matmul per tile over the micro-ops using it.
    Many: int32 einsum over all micro-ops (exact: |product| <= BLOCK_IN * 2**14)."""
    m, q = plan.src_mq.shape
    _, b, bi = sp.inp.shape
    bo = sp.wgt.shape[1]
    step, q_step = _steps(m, q, 4 * (b * bi + bo * bi + b * bo))
    for c in range(0, m, step):
        rows = min(step, m - c)
        total = None
        for q0 in range(0, q, q_step):
            s = plan.src_mq[c:c + rows, q0:q0 + q_step].reshape(-1)
            g = plan.wgt_mq[c:c + rows, q0:q0 + q_step].reshape(-1)
            part = _products(sp, s, g).reshape(rows, -1, b, bo).astype(np.int64).sum(axis=1)
            total = part if total is None else total + part
        plan.dst.accumulate(sp, plan.scaled(total.astype(np.int32)), c, rows)


def _products(sp: Scratchpads, s: np.ndarray, g: np.ndarray) -> np.ndarray:
    """inp[s[n]] @ wgt[g[n]].T for every n: (n, BATCH, BLOCK_OUT), exact integers."""
    _, b, bi = sp.inp.shape
    bo = sp.wgt.shape[1]
    order = np.argsort(g, kind="stable")
    sg = g[order]
    cuts = np.flatnonzero(sg[1:] != sg[:-1]) + 1
    if (cuts.size + 1) * _UOPS_PER_BLAS_CALL <= g.size:
        p = np.empty((g.size, b, bo), dtype=np.float32)
        x_all = sp.inp[s].astype(np.float32)
        for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, g.size].tolist()):
            idx = order[lo:hi]
            wt = sp.wgt[sg[lo]].T.astype(np.float32)  # BLOCK_IN x BLOCK_OUT
            p[idx] = (x_all[idx].reshape(-1, bi) @ wt).reshape(-1, b, bo)
        return p
    return np.einsum("nbi,noi->nbo", sp.inp[s].astype(np.int32), sp.wgt[g].astype(np.int32))
