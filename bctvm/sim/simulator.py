"""Simulator: runs a VTA instruction stream against a DRAM image (API: briefs/simapi.md).

    sim = Simulator(cfg)
    res = sim.run(program, dram, regions=None, max_cycles=None)

`program` is a list of bctvm.isa records or the encoded bytes of a `.bin` stream; `dram` is
the flat DRAM image (1-D uint8; not modified, the final image is `res.dram`); `regions`
names byte ranges {name: (byte_start, byte_end)} for per-region traffic. Functional results
are exact (int8 x int8 -> int32 with wrap, truncating narrowing); cycles come from the
cycle model of bctvm.sim.timing. Illegal programs raise a bctvm.errors.SimulatorError
subclass naming the instruction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from boards import BoardConfig, load_board
from bctvm.errors import ProgramFormatError
from bctvm.isa import Opcode
from bctvm.sim.alu import run_alu
from bctvm.sim.dma import load_kinds, run_load, run_store
from bctvm.sim.gemm import run_gemm
from bctvm.sim.program_table import to_rows
from bctvm.sim.scheduler import MODULE_NAMES, check_program, run_schedule
from bctvm.sim.sram import Scratchpads
from bctvm.sim.timing import CycleModel
from bctvm.sim.traffic import Traffic

_AUTO_PROGRESS_MIN = 100_000  # instructions; below this no progress bar


@dataclass
class SimResult:
    """Outcome of one run. Cycles are board clock cycles; latency_ms = cycles / clock."""

    dram: np.ndarray
    cycles: int
    latency_ms: float
    counters: dict
    board: str
    clock_mhz: float
    onchip_reuse: bool
    module_busy_cycles: dict  # {fetch, load, compute, store: cycles each module was busy}
    dram_port_busy_cycles: int  # cycles the shared DRAM port carried data
    trace: list | None = field(default=None, repr=False)  # [(index, module, start, end)]

    def to_report(self) -> dict:
        """JSON-able summary: board, clock, cycles, latency, counters, module busy cycles."""
        return {
            "board": self.board,
            "onchip_reuse": self.onchip_reuse,
            "clock_mhz": self.clock_mhz,
            "cycles": self.cycles,
            "latency_ms": self.latency_ms,
            "counters": self.counters,
            "module_busy_cycles": dict(self.module_busy_cycles),
            "dram_port_busy_cycles": self.dram_port_busy_cycles,
        }


def _as_dram(dram) -> np.ndarray:
    if isinstance(dram, np.ndarray):
        if dram.ndim != 1 or dram.dtype != np.uint8:
            raise ProgramFormatError(
                f"the DRAM image must be a 1-D uint8 array, got {dram.ndim}-D {dram.dtype}"
            )
        return dram.copy()
    if isinstance(dram, (bytes, bytearray, memoryview)):
        return np.frombuffer(dram, dtype=np.uint8).copy()
    raise ProgramFormatError(f"the DRAM image must be a uint8 array or bytes, not {type(dram).__name__}")


class Simulator:
    """A VTA core of one board: functional state, token-ordered modules, cycle model."""

    def __init__(self, cfg: BoardConfig | str):
        self.cfg = load_board(cfg)
        self._kinds = load_kinds(self.cfg)

    def run(self, program, dram, regions: dict | None = None, max_cycles: int | None = None,
            trace: bool = False, progress: bool | None = None) -> SimResult:
        """Execute `program` on a copy of `dram`; see the module docstring.

        trace=True records (index, module, start, end) per instruction in res.trace.
        progress: True/False forces the tqdm bar on/off; None shows it for long programs."""
        cfg = self.cfg
        rows = to_rows(program, cfg)
        modules = check_program(rows, cfg)
        mem = _as_dram(dram)
        traffic = Traffic(regions)
        sp = Scratchpads(cfg)
        cm = CycleModel(cfg)
        kinds = self._kinds
        macs_per_uop = cfg.gemm_macs_per_cycle
        busy = [0, 0, 0]
        events = [] if trace else None

        def execute(index: int, row, mod: int, start: int) -> int:
            op = row.opcode
            if op == Opcode.GEMM:
                n = run_gemm(row, index, sp)
                traffic.gemm_uops += n
                if not row.reset_reg:
                    traffic.macs += n * macs_per_uop
                end = start + cm.gemm_cycles(n)
            elif op == Opcode.LOAD:
                end = cm.transfer_end(start, run_load(row, index, sp, mem, traffic, kinds))
            elif op == Opcode.ALU:
                n = run_alu(row, index, sp)
                traffic.alu_uops += n
                end = start + cm.alu_cycles(n, row.use_imm)
            elif op == Opcode.STORE:
                end = cm.transfer_end(start, run_store(row, index, sp, mem, traffic, cfg))
            else:  # FINISH
                end = start + cm.finish_cycles()
            busy[mod] += end - start
            if events is not None:
                events.append((index, MODULE_NAMES[mod], start, end))
            return end

        bar = self._progress_bar(len(rows), progress)
        try:
            # the matrices are small: BLAS threads only add contention (10-100x slower on a
            # busy machine), so the run uses one BLAS thread
            with threadpool_limits(limits=1, user_api="blas"):
                last = run_schedule(rows, modules, cm.fetch_cycles, execute, max_cycles,
                                    bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()

        counts = Counter(row.opcode for row in rows)
        for op in traffic.instructions:
            traffic.instructions[op] = counts.get(int(Opcode[op]), 0)
        traffic.insn_bytes = len(rows) * cfg.insn_bytes
        fetch_busy = len(rows) * cm.fetch_cycles
        cycles = int(max(last, fetch_busy))
        return SimResult(
            dram=mem,
            cycles=cycles,
            latency_ms=cycles / (cfg.clock_mhz * 1e3),
            counters=traffic.as_dict(),
            board=cfg.name,
            clock_mhz=cfg.clock_mhz,
            onchip_reuse=cfg.onchip_reuse,
            module_busy_cycles={"fetch": fetch_busy, **{m: int(b) for m, b in zip(MODULE_NAMES, busy)}},
            dram_port_busy_cycles=int(cm.port_busy),
            trace=events,
        )

    @staticmethod
    def _progress_bar(n: int, progress: bool | None):
        if progress is False or (progress is None and n < _AUTO_PROGRESS_MIN):
            return None
        from tqdm import tqdm

        return tqdm(total=n, desc="simulating", unit="insn", disable=None if progress is None else False)
