"""How the block grids of two consecutive layers of a group nest (coarsening / refining).

A producer layer a hands its output blocks (a.out_block, on a.grid) to a consumer b (input
blocks b.block on b.grid) over the same map (a.out_size == (b.height, b.width)). The grids
nest when one block size divides the other in both dimensions (blocks aligned, since both
tile the map from its origin):

    same      b.block == a.out_block                   one producer block per consumer block
    coarsen   b.block == (rh * oh, rw * ow)            rh x rw producer blocks make one
              (e.g. after a stride-2 block conv)       consumer block (the consumer's padded
                                                       input collects them on chip)
    refine    a.out_block == (rh * bh, rw * bw)        one producer block covers rh x rw
              (a hierarchical layer, then fixed)       consumer blocks (kept on chip while
                                                       they run, each padded on its own)
Units: pixels; ratios are blocks per block, (rows, cols).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Nesting:
    """The grid change from a producer's output blocks to a consumer's input blocks."""

    kind: str  # "same" | "coarsen" | "refine"
    ratio: tuple[int, int]  # (rh, rw) fine blocks per coarse block; (1, 1) for "same"

    @property
    def fine_blocks(self) -> int:
        return self.ratio[0] * self.ratio[1]


def nesting(out_block, block) -> Nesting | None:
    """The Nesting of a producer's output block `out_block` into a consumer's input block
    `block` (both (rows, cols) on the same map), or None when they do not nest."""
    (oh, ow), (bh, bw) = tuple(out_block), tuple(block)
    if (oh, ow) == (bh, bw):
        return Nesting("same", (1, 1))
    if bh % oh == 0 and bw % ow == 0:
        return Nesting("coarsen", (bh // oh, bw // ow))
    if oh % bh == 0 and ow % bw == 0:
        return Nesting("refine", (oh // bh, ow // bw))
    return None


def source_index(nest: Nesting, out_block, block, bi, bj, r, s):
    """(producer block row, block col, row, col) holding pixel (r, s) of consumer block
    (bi, bj) (TE index expressions)."""
    oh, ow = out_block
    bh, bw = block
    rh, rw = nest.ratio
    if nest.kind == "coarsen":
        return bi * rh + r // oh, bj * rw + s // ow, r % oh, s % ow
    if nest.kind == "refine":
        return bi // rh, bj // rw, (bi % rh) * bh + r, (bj % rw) * bw + s
    return bi, bj, r, s


def refines(specs) -> bool:
    """Whether a chain of LayerSpecs has a refining hand-over (layer i to layer i+1)."""
    return any((n := nesting(a.out_block, b.block)) is not None and n.kind == "refine"
               for a, b in zip(specs, specs[1:]) if a.out_size == (b.height, b.width))
