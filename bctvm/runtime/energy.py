"""Energy estimate of a run: DRAM bytes, on-chip buffer bytes and MACs weighted by the board's
[energy] constants (boards/*.toml, picojoules per event, sources cited there).

    sram = onchip_bytes(counters, cfg)        # bytes of VTA buffer accesses of one program
    e = energy_uj(dram_bytes, sram, macs, cfg)  # {"dram_uj", "sram_uj", "mac_uj", "total_uj"}

On-chip bytes are counted from the board's counters, per VTA micro-op and transfer:
a GEMM micro-op reads one input, one weight and one accumulator element and writes one
accumulator and one output element; an ALU micro-op reads two accumulator elements and writes
one accumulator and one output element; every DRAM byte loaded (stored) is written to (read
from) a buffer once; an on-chip OUT -> INP copy reads and writes each byte once. Instruction
fetch is not counted on chip. Everything is in bytes; energies in microjoules.
"""

from __future__ import annotations

from boards import BoardConfig


def onchip_bytes(counters: dict, cfg: BoardConfig) -> int:
    """VTA buffer bytes read + written by one program (module docstring), from its counters."""
    acc, out = cfg.acc_elem_bytes, cfg.out_elem_bytes
    gemm = int(counters.get("gemm_uops", 0)) * (cfg.inp_elem_bytes + cfg.wgt_elem_bytes
                                                 + 2 * acc + out)
    alu = int(counters.get("alu_uops", 0)) * (3 * acc + out)
    dma = int(counters.get("dram_read_total", 0)) + int(counters.get("dram_write_bytes", 0))
    return gemm + alu + dma + 2 * int(counters.get("onchip_reuse_bytes", 0))


def energy_uj(dram_bytes: int, sram_bytes: int, macs: int, cfg: BoardConfig) -> dict | None:
    """Energy in microjoules by source, or None when the board has no [energy] table."""
    e = cfg.energy
    if e is None:
        return None
    parts = {"dram_uj": dram_bytes * e.dram_pj_per_byte * 1e-6,
             "sram_uj": sram_bytes * e.sram_pj_per_byte * 1e-6,
             "mac_uj": macs * e.mac_pj * 1e-6}
    parts["total_uj"] = sum(parts.values())
    return parts
