"""The cycle model: what each instruction costs, from BoardConfig.timing (docs/cycle-model.md).

All costs in board clock cycles. `bus` = cfg.bus_bytes (DRAM bytes per cycle).
- fetch: each instruction costs insn_issue_cycles + ceil(insn_bytes / bus) in the fetch
  module, in program order; instruction i is dispatched at (i + 1) x that.
- DRAM transfer (LOAD from DRAM, STORE): occupies the single DRAM port for
  rows x (dram_row_cycles + ceil(row_bytes / bus)) cycles, starting when both the module
  and the port are free; the instruction ends dram_request_cycles later (request latency),
  plus the zero-padding fill ceil(pad_bytes / sram_fill_bytes_per_cycle).
- OUT_INP (on-chip reuse): ceil(bytes / onchip_bytes_per_cycle) + padding fill; no DRAM.
- GEMM: pipeline_fill_cycles + uops x gemm_uop_cycles.
- ALU: pipeline_fill_cycles + uops x (alu_uop_cycles with an immediate,
  alu_reg_uop_cycles with an accumulator-tile operand).
- FINISH: insn_issue_cycles.
"""

from __future__ import annotations

from boards import BoardConfig
from bctvm.sim.dma import Transfer


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class CycleModel:
    """Per-instruction costs and the shared DRAM port of one run."""

    def __init__(self, cfg: BoardConfig):
        t = cfg.timing
        self.t = t
        self.bus = cfg.bus_bytes
        self.fetch_cycles = t.insn_issue_cycles + _ceil_div(cfg.insn_bytes, self.bus)
        self.port_free = 0  # cycle at which the DRAM port is next idle
        self.port_busy = 0  # total cycles the port carried data

    def _fill(self, pad_bytes: int) -> int:
        if not pad_bytes:
            return 0
        return _ceil_div(pad_bytes, max(1, self.t.sram_fill_bytes_per_cycle))

    def transfer_end(self, start: int, xfer: Transfer) -> int:
        """End cycle of a LOAD/STORE that may start at `start` (reserves the DRAM port)."""
        end = start
        if xfer.rows:
            beats = xfer.rows * (self.t.dram_row_cycles + _ceil_div(xfer.row_bytes, self.bus))
            begin = max(start, self.port_free)
            self.port_free = begin + beats
            self.port_busy += beats
            end = self.port_free + self.t.dram_request_cycles
        if xfer.onchip_bytes:
            end += _ceil_div(xfer.onchip_bytes, max(1, self.t.onchip_bytes_per_cycle))
        return end + self._fill(xfer.pad_bytes)

    def gemm_cycles(self, uops: int) -> int:
        return self.t.pipeline_fill_cycles + uops * self.t.gemm_uop_cycles

    def alu_cycles(self, uops: int, use_imm: bool) -> int:
        ii = self.t.alu_uop_cycles if use_imm else self.t.alu_reg_uop_cycles
        return self.t.pipeline_fill_cycles + uops * ii

    def finish_cycles(self) -> int:
        return self.t.insn_issue_cycles
