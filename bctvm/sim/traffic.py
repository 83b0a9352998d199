"""Traffic and work counters of one simulator run, with DRAM traffic attributed to regions.

Regions are named byte ranges of the DRAM image, {name: (byte_start, byte_end)} with
byte_end exclusive (e.g. weights, input, output, feature_maps, uops). Every DRAM byte a
LOAD reads or a STORE writes is added to the region holding it; bytes outside every region
go to "other" (present only when non-zero). Padding is generated on chip and is not DRAM
traffic; OUT_INP loads are on-chip reuse, never DRAM traffic.
"""

from __future__ import annotations

import bisect

import numpy as np

from bctvm.errors import BadInputError
from bctvm.isa import MemType, Opcode

# DRAM read counter key of each LOAD memory type (simapi.md)
READ_KEYS = {
    MemType.UOP: "uop",
    MemType.WGT: "wgt",
    MemType.INP: "inp",
    MemType.ACC: "acc",
    MemType.ACC_8BIT: "acc8",
}
OTHER_REGION = "other"


def check_regions(regions) -> dict:
    """Validate {name: (byte_start, byte_end)}: integers, start <= end, no two overlapping."""
    if regions is None:
        return {}
    if not isinstance(regions, dict):
        raise BadInputError(
            f"regions must be a dict name -> (byte_start, byte_end), not {type(regions).__name__}"
        )
    clean = {}
    for name, span in regions.items():
        try:
            lo, hi = (int(v) for v in span)
        except (TypeError, ValueError):
            raise BadInputError(f"region '{name}': expected (byte_start, byte_end), got {span!r}") from None
        if lo < 0 or hi < lo:
            raise BadInputError(f"region '{name}': bad byte range [{lo}, {hi})")
        clean[str(name)] = (lo, hi)
    spans = sorted((lo, hi, n) for n, (lo, hi) in clean.items() if hi > lo)
    for (lo0, hi0, n0), (lo1, hi1, n1) in zip(spans, spans[1:]):
        if lo1 < hi0:
            raise BadInputError(f"regions '{n0}' [{lo0}, {hi0}) and '{n1}' [{lo1}, {hi1}) overlap")
    return clean


class Traffic:
    """Counters of one run (see simapi.md for the meaning of each key)."""

    def __init__(self, regions: dict | None = None):
        self.dram_read_bytes = {k: 0 for k in READ_KEYS.values()}
        self.dram_write_bytes = 0
        self.insn_bytes = 0
        self.onchip_reuse_bytes = 0
        self.gemm_uops = 0
        self.alu_uops = 0
        self.macs = 0
        self.instructions = {
            op.name: 0 for op in (Opcode.LOAD, Opcode.STORE, Opcode.GEMM, Opcode.ALU, Opcode.FINISH)
        }
        self.regions = check_regions(regions)
        spans = sorted((lo, hi, n) for n, (lo, hi) in self.regions.items() if hi > lo)
        self._starts = [s[0] for s in spans]
        self._spans = spans
        self.region_read_bytes = {n: 0 for n in self.regions}
        self.region_write_bytes = {n: 0 for n in self.regions}

    # ---- region attribution ------------------------------------------------------------------
    def _attribute(self, table: dict, first: int, rows: int, row_bytes: int, stride_bytes: int) -> None:
        """Add a 2-D transfer (rows of row_bytes at first + r*stride_bytes) to regions in table."""
        if not self.regions or rows <= 0 or row_bytes <= 0:
            return
        total = rows * row_bytes
        lo, hi = first, first + (rows - 1) * stride_bytes + row_bytes
        k = bisect.bisect_right(self._starts, lo) - 1
        if k >= 0 and hi <= self._spans[k][1]:  # whole transfer inside one region: common case
            name = self._spans[k][2]
            table[name] += total
            return
        starts = first + stride_bytes * np.arange(rows, dtype=np.int64)
        ends = starts + row_bytes
        inside = 0
        for rlo, rhi, name in self._spans:
            if rhi <= lo or rlo >= hi:
                continue
            got = int(np.clip(np.minimum(ends, rhi) - np.maximum(starts, rlo), 0, None).sum())
            table[name] += got
            inside += got
        if total > inside:
            table[OTHER_REGION] = table.get(OTHER_REGION, 0) + total - inside

    def add_read(self, memtype: MemType, first: int, rows: int, row_bytes: int, stride_bytes: int) -> None:
        self.dram_read_bytes[READ_KEYS[memtype]] += rows * row_bytes
        self._attribute(self.region_read_bytes, first, rows, row_bytes, stride_bytes)

    def add_write(self, first: int, rows: int, row_bytes: int, stride_bytes: int) -> None:
        self.dram_write_bytes += rows * row_bytes
        self._attribute(self.region_write_bytes, first, rows, row_bytes, stride_bytes)

    def as_dict(self) -> dict:
        """The counters dict of SimResult (plain ints: JSON-able even if fields were numpy)."""

        def ints(d):
            return {k: int(v) for k, v in d.items()}

        return {
            "dram_read_bytes": ints(self.dram_read_bytes),
            "dram_read_total": int(sum(self.dram_read_bytes.values())),
            "dram_write_bytes": int(self.dram_write_bytes),
            "insn_bytes": int(self.insn_bytes),
            "onchip_reuse_bytes": int(self.onchip_reuse_bytes),
            "gemm_uops": int(self.gemm_uops),
            "alu_uops": int(self.alu_uops),
            "macs": int(self.macs),
            "instructions": ints(self.instructions),
            "region_read_bytes": ints(self.region_read_bytes),
            "region_write_bytes": ints(self.region_write_bytes),
        }
