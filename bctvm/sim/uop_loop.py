"""The two-level micro-op loop shared by GEMM and ALU, as numpy index grids.

For i < iter_out, j < iter_in, k in [uop_bgn, uop_end) (sequential order i, j, k):
    dst = uop[k].dst + i*dst_factor_out + j*dst_factor_in      (and likewise src, wgt)
`grid` builds such an index array shaped (iter_out, iter_in, n_uops); bounds are checked
analytically first (factors are non-negative, so the largest index is
max(uop field) + (iter_out-1)*factor_out + (iter_in-1)*factor_in).
"""

from __future__ import annotations

import numpy as np

from bctvm.errors import SramOutOfRangeError, UopOutOfRangeError
from bctvm.sim.sram import Scratchpads


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


def grid(base: np.ndarray, iters: tuple, factors: tuple) -> np.ndarray:
    """Index array (iter_out, iter_in, n_uops): base[k] + i*factor_out + j*factor_in."""
    i = np.arange(iters[0], dtype=np.int64)[:, None, None] * factors[0]
    j = np.arange(iters[1], dtype=np.int64)[None, :, None] * factors[1]
    return base[None, None, :] + i + j
