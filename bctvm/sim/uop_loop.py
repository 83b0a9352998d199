"""The two-level micro-op loop shared by GEMM and ALU, as numpy index grids.

For i < iter_out, j < iter_in, k in [uop_bgn, uop_end) (sequential order i, j, k):
    dst = uop[k].dst + i*dst_factor_out + j*dst_factor_in      (and likewise src, wgt)
`grid` builds such an index array shaped (iter_out, iter_in, n_uops); bounds are checked
analytically first (factors are non-negative, so the largest index is
max(uop field) + (iter_out-1)*factor_out + (iter_in-1)*factor_in). `DstIndex` writes results
back to acc/out, as slices when the indices are one contiguous run (the common case).

Bounded memory: a loop of more than PLAN_POSITIONS micro-op positions is never laid out as
one grid. Axes along which nothing moves (every factor zero) are collapsed first (GEMM: the
sum is multiplied by the extent; ALU with an immediate: the op is applied that many times in
closed form); what remains runs as consecutive sub-loops (`sub_loops`, sequential order) of
at most PLAN_POSITIONS positions each, so one plan's index arrays stay under ~200 MiB
whatever the extents (docs/cycle-model.md, "Memory").
"""

from __future__ import annotations

import numpy as np

from bctvm.errors import SramOutOfRangeError, UopOutOfRangeError
from bctvm.sim.sram import Scratchpads

PLAN_POSITIONS = 1 << 22  # micro-op positions one loop plan lays out (int64 index arrays)


def uop_range(row, sp: Scratchpads, where: str) -> tuple[int, int]:
    """(uop_bgn, uop_end) after checking they lie in the buffer and were loaded."""
    bgn, end = row.uop_bgn, row.uop_end
    depth = sp.depth["uop"]
    if not 0 <= bgn < end <= depth:
        raise UopOutOfRangeError(
            f"{where}: micro-op range [{bgn}, {end}) is empty or outside the micro-op buffer "
            f"(depth {depth})"
        )
    loaded = sp.uop_loaded[bgn:end]
    if not loaded.all():
        first = bgn + int(np.argmin(loaded))
        raise UopOutOfRangeError(
            f"{where}: micro-op {first} in range [{bgn}, {end}) was never loaded by a LOAD UOP"
        )
    return bgn, end


def check_max(sp: Scratchpads, buffer: str, base: np.ndarray, iters: tuple, factors: tuple,
              where: str, field: str) -> None:
    """Bounds-check every index the loop forms from `base` (the micro-ops' field)."""
    hi = int(base.max()) + (iters[0] - 1) * factors[0] + (iters[1] - 1) * factors[1]
    depth = sp.depth[buffer]
    if hi >= depth:
        raise_out_of_range(sp, buffer, hi, where, field)


def raise_out_of_range(sp: Scratchpads, buffer: str, index: int, where: str, field: str):
    raise SramOutOfRangeError(
        f"{where}: {field} index {index} past the end of the {buffer} buffer "
        f"(depth {sp.depth[buffer]})"
    )


def sub_loops(iters: tuple, n_uops: int, limit: int | None = None):
    """Yield (i0, ni, j0, nj): consecutive pieces of the (iter_out, iter_in) loop, in
    sequential order, each of at most `limit` (default PLAN_POSITIONS) positions."""
    limit = PLAN_POSITIONS if limit is None else limit
    n_out, n_in = iters
    per_row = n_in * n_uops
    if per_row <= limit:
        rows = max(1, limit // max(1, per_row))
        for i in range(0, n_out, rows):
            yield i, min(rows, n_out - i), 0, n_in
        return
    cols = max(1, limit // max(1, n_uops))
    for i in range(n_out):
        for j in range(0, n_in, cols):
            yield i, 1, j, min(cols, n_in - j)


def collapse(iters: tuple, moving) -> tuple[tuple, int]:
    """(iters with every axis a where not moving[a] set to 1, product of those extents)."""
    repeat = 1
    out = list(iters)
    for a in range(2):
        if not moving[a]:
            repeat *= out[a]
            out[a] = 1
    return tuple(out), repeat


def shifted(base: np.ndarray, factors: tuple, i0: int, j0: int) -> np.ndarray:
    """Micro-op field values of a sub-loop starting at (i0, j0)."""
    return base + (i0 * factors[0] + j0 * factors[1])


def grid(base: np.ndarray, iters: tuple, factors: tuple) -> np.ndarray:
    """Index array (iter_out, iter_in, n_uops): base[k] + i*factor_out + j*factor_in."""
    i = np.arange(iters[0], dtype=np.int64)[:, None, None] * factors[0]
    j = np.arange(iters[1], dtype=np.int64)[None, :, None] * factors[1]
    return base[None, None, :] + i + j


class DstIndex:
    """Accumulator indices written by a GEMM/ALU step, with the fastest way to write them.

    `start` is set when the indices are exactly start, start+1, ... (slices, in place);
    otherwise fancy indexing, and repeated indices are summed on accumulate."""

    __slots__ = ("idx", "start", "unique", "uniq", "inv")

    def __init__(self, idx: np.ndarray):
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        self.idx = idx
        n = idx.size
        self.start = None
        if n and int(idx[-1]) - int(idx[0]) == n - 1 and (n == 1 or bool((np.diff(idx) == 1).all())):
            self.start = int(idx[0])
        self.unique = self.start is not None or n <= 1 or int(np.bincount(idx).max()) <= 1
        self.uniq = self.inv = None
        if not self.unique:
            self.uniq, self.inv = np.unique(idx, return_inverse=True)

    @property
    def size(self) -> int:
        return self.idx.size

    def part(self, c: int, count: int):
        """Slice or index array of entries [c, c + count)."""
        if self.start is not None:
            return slice(self.start + c, self.start + c + count)
        if c == 0 and count == self.idx.size:
            return self.idx
        return self.idx[c:c + count]

    def assign(self, sp: Scratchpads, value) -> None:
        """acc[dst] = out[dst] = value."""
        d = self.part(0, self.idx.size)
        sp.acc[d] = value
        sp.out[d] = value

    def accumulate(self, sp: Scratchpads, sums: np.ndarray, c: int = 0, count: int | None = None) -> None:
        """acc[dst] += sums (int32, wrapping), out[dst] = low bits, for entries [c, c + count)."""
        count = self.idx.size if count is None else count
        d = self.part(c, count)
        if self.start is not None:
            a = sp.acc[d]
            a += sums
            np.copyto(sp.out[d], a, casting="unsafe")
            return
        if not self.unique:
            if c == 0 and count == self.idx.size:
                uniq, inv = self.uniq, self.inv
            else:
                uniq, inv = np.unique(d, return_inverse=True)
            total = np.zeros((uniq.size,) + sums.shape[1:], dtype=np.int32)
            np.add.at(total, inv, sums)  # int32 adds wrap: exact modulo 2**32
            d, sums = uniq, total
        a = sp.acc[d] + sums
        sp.acc[d] = a
        sp.out[d] = a
