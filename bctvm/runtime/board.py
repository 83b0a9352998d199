"""The board interface: what the runtime needs from a VTA board, and the simulator board.

    board = SimulatorBoard(cfg)
    res = board.run(program, dram, regions)   # -> BoardRun(dram, cycles, counters)

`program` is an encoded instruction stream (`.bin` bytes, 16 bytes per instruction), `dram`
the flat DRAM image (uint8; not modified), `regions` {name: (byte_start, byte_end)} for the
traffic counters. A real board driver (e.g. pynq: copy the image into a contiguous buffer,
write the instruction queue, ring the doorbell, wait for FINISH, copy back) implements the
same `run`; the runtime and the RPC server use nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from boards import BoardConfig, load_board


@dataclass
class BoardRun:
    """The final DRAM image, cycles at the board clock and the board's counters."""

    dram: np.ndarray
    cycles: int
    counters: dict = field(default_factory=dict)


class Board(ABC):
    """A VTA board that runs one instruction stream on one DRAM image at a time."""

    cfg: BoardConfig
    kind: str = "board"  # what the report names it ("simulator", "pynq", ...)

    @abstractmethod
    def run(self, program: bytes, dram: np.ndarray, regions: dict) -> BoardRun:
        """Run `program` to its FINISH; raises a bctvm.errors.BctvmError on failure."""


class SimulatorBoard(Board):
    """bctvm.sim.Simulator behind the Board interface (the default board)."""

    kind = "simulator"

    def __init__(self, cfg: BoardConfig | str):
        from bctvm.sim import Simulator

        self.cfg = load_board(cfg)
        self._sim = Simulator(self.cfg)

    def run(self, program: bytes, dram: np.ndarray, regions: dict) -> BoardRun:
        res = self._sim.run(program, dram, regions=regions, progress=False)
        return BoardRun(res.dram, int(res.cycles), dict(res.counters))
