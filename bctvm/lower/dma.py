"""Cover an element-level copy with VTA 2-D DMA transfers (LOAD with padding, STORE).

A copy is given as two arrays over the copied elements: `dst` (on-chip element addresses) and
`src` (source element addresses; -1 = a zero to write, i.e. padding). A LOAD writes, from
`sram_base`, (y_pad_0 + y_size + y_pad_1) rows of (x_pad_0 + x_size + x_pad_1) elements,
contiguously; data row r reads x_size elements from `src_base + r * x_stride`. A STORE is a LOAD
in reverse without padding (contiguous on chip, strided in DRAM).

`plan_transfers` first tries one transfer for each run of consecutive on-chip addresses (the
usual zero-padded block: the data form a rectangle of contiguous rows at a constant stride inside
the row grid given by `row_len`), then one per plane (e.g. per channel tile of a padded block),
and otherwise covers the run greedily, left to right, with the transfer that covers most
elements: rows of a contiguous source run repeated at a constant
stride (stride 0 repeats an element, which is how replicate/reflect padding edges are built).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .exprs import LoweringError


@dataclass(frozen=True)
class Xfer:
    """One 2-D transfer; `sram_base` is where its first (possibly padding) element lands."""

    sram_base: int
    src_base: int
    y_size: int
    x_size: int
    x_stride: int
    y_pad_0: int = 0
    y_pad_1: int = 0
    x_pad_0: int = 0
    x_pad_1: int = 0

    @property
    def sram_elems(self) -> int:
        return (self.y_pad_0 + self.y_size + self.y_pad_1) * (self.x_pad_0 + self.x_size + self.x_pad_1)

    @property
    def data_elems(self) -> int:
        return self.y_size * self.x_size

    def src_span(self) -> tuple[int, int]:
        """[lo, hi) of the source elements read."""
        return self.src_base, self.src_base + (self.y_size - 1) * self.x_stride + self.x_size


@dataclass(frozen=True)
class XferLimits:
    max_size: int  # y_size, x_size, x_stride < max_size
    max_pad: int  # each pad field <= max_pad

    @classmethod
    def of(cls, cfg) -> "XferLimits":
        return cls(1 << cfg.xfer_size_bits, (1 << cfg.pad_bits) - 1)


def _single(src: np.ndarray, row_len: int, lim: XferLimits, pads: bool):
    """One transfer covering all of `src` (a run of consecutive on-chip elements), or None."""
    n = src.size
    s = row_len if row_len and n % row_len == 0 else n
    grid = src.reshape(n // s, s)
    data = grid >= 0
    if not data.any():
        return None
    rows = np.flatnonzero(data.any(axis=1))
    cols = np.flatnonzero(data.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
    box = grid[r0:r1 + 1, c0:c1 + 1]
    if (box < 0).any() or data.sum() != box.size:
        return None
    if not pads and (r0 or c0 or r1 != grid.shape[0] - 1 or c1 != s - 1):
        return None
    xs = box.shape[1]
    if not (box == box[:, :1] + np.arange(xs)).all():
        return None
    starts = box[:, 0]
    stride = int(starts[1] - starts[0]) if starts.size > 1 else xs
    if starts.size > 1 and not (np.diff(starts) == stride).all():
        return None
    pad = (int(r0), int(grid.shape[0] - 1 - r1), int(c0), int(s - 1 - c1))
    if max(pad) > lim.max_pad or stride < 0 or max(box.shape[0], xs, stride) >= lim.max_size:
        return None
    return Xfer(0, int(starts[0]), int(box.shape[0]), int(xs), stride, *pad)


def _run_len(src: np.ndarray, i: int, n: int) -> int:
    """Length of the contiguous source run starting at i (src[i+k] == src[i] + k)."""
    k = 1
    while i + k < n and src[i + k] == src[i] + k:
        k += 1
    return k


def _greedy(src: np.ndarray, lim: XferLimits, pads: bool, what: str) -> list[Xfer]:
    out = []
    n, i = src.size, 0
    while i < n:
        z0 = 0
        while i + z0 < n and src[i + z0] < 0:
            z0 += 1
        if z0 and (not pads or z0 > lim.max_pad or i + z0 == n):
            raise LoweringError(f"{what}: a run of {z0} padding elements cannot be expressed "
                                f"with the {lim.max_pad}-element pad fields")
        d = i + z0
        run = min(_run_len(src, d, n), lim.max_size - 1)
        best = (run, 1, run)  # (x_size, y_size, stride)
        if d + run < n and src[d + run] >= 0 and z0 == 0:
            stride = int(src[d + run] - src[d])
            if 0 <= stride < lim.max_size:
                y = 1
                while (y < lim.max_size - 1 and d + (y + 1) * run <= n
                       and src[d + y * run] == src[d] + y * stride
                       and _run_len(src, d + y * run, n) >= run):
                    y += 1
                if y * run > best[0] * best[1]:
                    best = (run, y, stride)
        xs, ys, st = best
        end = d + xs * ys
        z1 = 0
        if ys == 1 and pads:
            while end + z1 < n and src[end + z1] < 0 and z1 < lim.max_pad:
                z1 += 1
        out.append(Xfer(i, int(src[d]), ys, xs, st, 0, 0, z0, z1))
        i = end + z1
    return out


def _cover(seg_s: np.ndarray, row_len: int, plane: int, lim: XferLimits, pads: bool,
           what: str) -> list[Xfer]:
    """Transfers (relative sram_base) covering one run of consecutive on-chip elements:
    one transfer if possible, else one per plane (rows x row_len) if each is one, else greedy."""
    one = _single(seg_s, row_len, lim, pads)
    if one is not None:
        return [one]
    n = seg_s.size
    if plane and plane < n and n % plane == 0:
        parts = [_single(seg_s[k:k + plane], row_len, lim, pads) for k in range(0, n, plane)]
        if all(p is not None for p in parts):
            return [Xfer(k * plane + p.sram_base, p.src_base, p.y_size, p.x_size, p.x_stride,
                         p.y_pad_0, p.y_pad_1, p.x_pad_0, p.x_pad_1) for k, p in enumerate(parts)]
        out = []
        for k in range(0, n, plane):
            for p in _greedy(seg_s[k:k + plane], lim, pads, what):
                out.append(Xfer(k + p.sram_base, p.src_base, p.y_size, p.x_size, p.x_stride,
                                p.y_pad_0, p.y_pad_1, p.x_pad_0, p.x_pad_1))
        return out
    return _greedy(seg_s, lim, pads, what)


def plan_transfers(dst: np.ndarray, src: np.ndarray, row_len: int, lim: XferLimits,
                   pads: bool = True, what: str = "DMA", plane: int = 0) -> list[Xfer]:
    """Transfers covering every (dst, src) pair; `sram_base`s are absolute on-chip addresses.

    dst: on-chip element addresses (unique); src: source element addresses, -1 for zero fill
    (only when `pads`); row_len / plane: the copy's innermost row length and rows x row_len
    plane (hints: a padded block is one transfer per plane, e.g. per channel tile)."""
    dst = np.asarray(dst, dtype=np.int64).reshape(-1)
    src = np.asarray(src, dtype=np.int64).reshape(-1)
    order = np.argsort(dst, kind="stable")
    dst, src = dst[order], src[order]
    if dst.size and (np.diff(dst) == 0).any():
        raise LoweringError(f"{what}: an on-chip element is written twice")
    if not pads and (src < 0).any():
        raise LoweringError(f"{what}: padding requested on a transfer without pad fields")
    breaks = np.flatnonzero(np.diff(dst) != 1) + 1
    out: list[Xfer] = []
    for seg_d, seg_s in zip(np.split(dst, breaks), np.split(src, breaks)):
        pieces = _cover(seg_s, row_len, plane, lim, pads, what)
        base = int(seg_d[0])
        for x in pieces:
            out.append(Xfer(base + x.sram_base, x.src_base, x.y_size, x.x_size, x.x_stride,
                            x.y_pad_0, x.y_pad_1, x.x_pad_0, x.x_pad_1))
    return out


def expand(x: Xfer) -> tuple[np.ndarray, np.ndarray]:
    """(dst, src) element pairs a transfer writes (src -1 for padding): the inverse of planning,
    used by tests and by the lowering's self-check."""
    rows = x.y_pad_0 + x.y_size + x.y_pad_1
    cols = x.x_pad_0 + x.x_size + x.x_pad_1
    src = np.full((rows, cols), -1, dtype=np.int64)
    r = np.arange(x.y_size).reshape(-1, 1)
    c = np.arange(x.x_size).reshape(1, -1)
    src[x.y_pad_0:x.y_pad_0 + x.y_size, x.x_pad_0:x.x_pad_0 + x.x_size] = x.src_base + r * x.x_stride + c
    return x.sram_base + np.arange(rows * cols, dtype=np.int64), src.reshape(-1)
