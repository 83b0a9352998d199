"""bctvm FoldUopLoop: fold a GEMM/ALU loop nest into VTA's two-level loop over micro-ops.

Input: the buffer indices every iteration of a kernel nest touches, `T` of shape
(e1, ..., ek, F) (F index fields: dst, src[, wgt]). VTA runs

    for i < iter_out: for j < iter_in: for u in uops:  idx = uop[u] + i * f_out + j * f_in

so the two outer loops become iter_out/iter_in when every index is affine in them with
non-negative constant factors, and the remaining loops are enumerated into the micro-op list.
When that fails (not affine, or too many micro-ops), the outermost loop is peeled into separate
instructions and the rest is folded again. Each folded piece is verified element by element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Folded:
    """One GEMM/ALU instruction's loop: iterations, factors per field, micro-ops (n, F)."""

    iter_out: int
    iter_in: int
    f_out: tuple
    f_in: tuple
    uops: np.ndarray  # int64 (n_uops, F)

    def touched(self, field: int) -> tuple[int, int]:
        """[lo, hi) of field `field` over all iterations (factors are non-negative)."""
        u = self.uops[:, field]
        hi = int(u.max()) + (self.iter_out - 1) * self.f_out[field] + (self.iter_in - 1) * self.f_in[field]
        return int(u.min()), hi + 1


def _affine(T: np.ndarray, axes: int):
    """Factors (tuple per folded axis) if T[i,j,...] == T[0,0,...] + i*f0 + j*f1, else None."""
    base = T[(0,) * axes]
    factors = []
    for a in range(axes):
        if T.shape[a] > 1:
            idx = [0] * axes
            idx[a] = 1
            d = T[tuple(idx)] - base
            f = d.reshape(-1, d.shape[-1])[0]
            if not (d == f).all() or (f < 0).any():
                return None
        else:
            f = np.zeros(T.shape[-1], dtype=np.int64)
        factors.append(f)
    grids = np.meshgrid(*[np.arange(T.shape[a]) for a in range(axes)], indexing="ij")
    pred = base[(None,) * axes]
    for g, f in zip(grids, factors):
        pred = pred + g.reshape(g.shape + (1,) * (T.ndim - axes)) * f
    if not np.array_equal(pred, T):
        return None
    return tuple(tuple(int(v) for v in f) for f in factors)


def fold(T: np.ndarray, max_uops: int, max_iter: int, max_factor) -> list[Folded]:
    """Instructions (in execution order) covering all iterations of T (shape (e1..ek, F)).

    max_uops: micro-ops per instruction; max_iter: iter_out/iter_in limit (exclusive);
    max_factor: per-field (or one) exclusive limit of the factors."""
    T = np.asarray(T, dtype=np.int64)
    k = T.ndim - 1
    F = T.shape[-1]
    lim = np.broadcast_to(np.asarray(max_factor, dtype=np.int64), (F,))
    zero = (0,) * F
    if k == 0:
        return [Folded(1, 1, zero, zero, T.reshape(1, F).copy())]
    if k == 1:
        fac = _affine(T, 1) if T.shape[0] < max_iter else None
        if fac is not None and (np.asarray(fac[0]) < lim).all():
            return [Folded(1, T.shape[0], zero, fac[0], T[:1].copy())]
        return [Folded(1, 1, zero, zero, T[s:s + max_uops].copy())
                for s in range(0, T.shape[0], max_uops)]
    n_uops = int(np.prod(T.shape[2:-1], dtype=np.int64))
    if T.shape[0] < max_iter and T.shape[1] < max_iter and n_uops <= max_uops:
        fac = _affine(T, 2)
        if fac is not None and (np.asarray(fac[0]) < lim).all() and (np.asarray(fac[1]) < lim).all():
            return [Folded(T.shape[0], T.shape[1], fac[0], fac[1], T[0, 0].reshape(-1, F).copy())]
    out: list[Folded] = []
    for i in range(T.shape[0]):
        out += fold(T[i], max_uops, max_iter, lim)
    return out
