"""GEMM: acc[dst] += inp[src] @ wgt[wgt].T over the whole micro-op loop at once.

Per micro-op: inp[src] is BATCH x BLOCK_IN int8, wgt[wgt] is BLOCK_OUT x BLOCK_IN int8, and
the BATCH x BLOCK_OUT int32 product is added to acc[dst] (int32, two's-complement wrap);
then out[dst] = low 8 bits of acc[dst]. With reset_reg, acc[dst] = out[dst] = 0 instead.

Vectorisation: the loop's axes (iter_out, iter_in, uop) split into *kept* axes, along which
dst changes, and *reduced* axes, along which dst is constant (the K reduction of a conv:
kernel taps and input-channel blocks writing one output tile). Products are summed over the
reduced axes in int32/int64, which is exact, and sums wrap to int32 once (wrapping commutes
with addition, so the order of accumulation never matters). When the weight tile sequence
along the reduced axes is the same for every kept position (a conv's weights do not depend
on the output pixel), the whole instruction is one integer matrix product
X[M*BATCH, Q*BLOCK_IN] @ W[Q*BLOCK_IN, BLOCK_OUT]; otherwise per-micro-op products are formed
with einsum and summed. Repeated dst indices among the kept positions are summed with
np.add.at, never overwritten.
"""

from __future__ import annotations

import numpy as np

from bctvm.sim.sram import Scratchpads
from bctvm.sim.uop_loop import check_max, grid, uop_range

_CHUNK_BYTES = 32 << 20  # working-set bound per vectorised step
_INT8_PRODUCT_MAX = 128 * 128  # |a*b| for int8 a, b
_INT32_MAX = (1 << 31) - 1


def run_gemm(row, index: int, sp: Scratchpads) -> int:
    """Execute one GEMM; returns the number of micro-ops run (iter_out x iter_in x uops)."""
    where = f"instruction {index} (GEMM)"
    bgn, end = uop_range(row, sp, where)
    iters = (row.iter_out, row.iter_in)
    n = iters[0] * iters[1] * (end - bgn)
    if n == 0:
        return 0
    dfac = (row.dst_factor_out, row.dst_factor_in)
    dk = sp.uop_dst[bgn:end]
    check_max(sp, "acc", dk, iters, dfac, where, "dst")
    dst = grid(dk, iters, dfac)
    if row.reset_reg:
        flat = dst.reshape(-1)
        sp.acc[flat] = 0
        sp.out[flat] = 0
        return n
    sfac = (row.src_factor_out, row.src_factor_in)
    wfac = (row.wgt_factor_out, row.wgt_factor_in)
    sk, wk = sp.uop_src[bgn:end], sp.uop_wgt[bgn:end]
    check_max(sp, "inp", sk, iters, sfac, where, "src")
    check_max(sp, "wgt", wk, iters, wfac, where, "wgt")
    src, wgt = grid(sk, iters, sfac), grid(wk, iters, wfac)

    # which loop axes change dst (kept) and which only accumulate (reduced)
    dst_const = (iters[0] == 1 or dfac[0] == 0, iters[1] == 1 or dfac[1] == 0,
                 dk.size == 1 or dk.min() == dk.max())
    wgt_const = (wfac[0] == 0, wfac[1] == 0, wk.size == 1 or wk.min() == wk.max())
    kept = [a for a in range(3) if not dst_const[a]]
    red = [a for a in range(3) if dst_const[a]]
    perm = kept + red
    m = int(np.prod([dst.shape[a] for a in kept], dtype=np.int64))
    q = n // m
    dst_m = dst.transpose(perm).reshape(m, q)[:, 0]
    src_mq = src.transpose(perm).reshape(m, q)
    wgt_mq = wgt.transpose(perm).reshape(m, q)
    if all(wgt_const[a] for a in kept):
        _shared_weights(sp, dst_m, src_mq, wgt_mq[0])
    else:
        _per_uop(sp, dst_m, src_mq, wgt_mq)
    return n


def _shared_weights(sp: Scratchpads, dst_m, src_mq, wgt_q) -> None:
    """One integer matmul: every kept position uses the same weight tiles wgt_q."""
    m, q = src_mq.shape
    _, b, bi = sp.inp.shape
    bo = sp.wgt.shape[1]
    dt = np.int32 if q * bi * _INT8_PRODUCT_MAX <= _INT32_MAX else np.int64
    w = sp.wgt[wgt_q].transpose(0, 2, 1).reshape(q * bi, bo).astype(dt)
    step = max(1, _CHUNK_BYTES // (q * b * bi * np.dtype(dt).itemsize))
    for c in range(0, m, step):
        rows = src_mq[c:c + step]
        x = sp.inp[rows].transpose(0, 2, 1, 3).reshape(rows.shape[0] * b, q * bi).astype(dt)
        _add(sp, dst_m[c:c + step], (x @ w).reshape(rows.shape[0], b, bo))


def _per_uop(sp: Scratchpads, dst_m, src_mq, wgt_mq) -> None:
    """Per-micro-op products (einsum), summed over the reduced axis."""
    m, q = src_mq.shape
    _, b, bi = sp.inp.shape
    bo = sp.wgt.shape[1]
    step = max(1, _CHUNK_BYTES // (q * 4 * (b * bi + bo * bi + b * bo)))
    for c in range(0, m, step):
        s = src_mq[c:c + step].reshape(-1)
        g = wgt_mq[c:c + step].reshape(-1)
        x = sp.inp[s].astype(np.int32)
        w = sp.wgt[g].astype(np.int32)
        p = np.einsum("nbi,noi->nbo", x, w)  # |p| <= BLOCK_IN * 2**14: exact in int32
        rows = s.shape[0] // q
        _add(sp, dst_m[c:c + step], p.reshape(rows, q, b, bo).sum(axis=1, dtype=np.int64))


def _add(sp: Scratchpads, dst, sums) -> None:
    """acc[dst] += sums (int32 wrap), out[dst] = low bits; repeated dst entries are summed."""
    if dst.size > 1 and np.bincount(dst).max() > 1:
        uniq, inv = np.unique(dst, return_inverse=True)
        total = np.zeros((uniq.size,) + sums.shape[1:], dtype=np.int64)
        np.add.at(total, inv, sums)
        dst, sums = uniq, total
    new = (sp.acc[dst] + sums.astype(np.int64)).astype(np.int32)
    sp.acc[dst] = new
    sp.out[dst] = new.astype(sp.out.dtype)
