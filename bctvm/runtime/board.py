"""The board interface: what the runtime needs from a VTA board, and the simulator board.

    board = SimulatorBoard(cfg)
    res = board.run(program, dram, regions)   # -> BoardRun(dram, cycles, counters)

    board = open_board("pynq", "pynq", bitstream="vta.bit")   # the real-board driver

`program` is an encoded instruction stream (`.bin` bytes, 16 bytes per instruction), `dram`
the flat DRAM image (uint8; not modified), `regions` {name: (byte_start, byte_end)} for the
traffic counters. The real-board driver (bctvm/runtime/pynq_board.py: copy the image into a
contiguous buffer, point the VTA modules at it, start, poll for completion, copy back)
implements the same `run`; the runtime and the RPC server use nothing else.
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


DRIVERS = ("simulator", "pynq")


def open_board(board="pynq", driver: str = "simulator", **options) -> Board:
    """A Board of config `board` (name, .toml or BoardConfig) with `driver`: "simulator", or
    "pynq" (options: bitstream=PATH, timeout_s=...; needs the `pynq` package on the board)."""
    from bctvm.errors import BadInputError

    cfg = load_board(board)
    if driver == "simulator":
        if options:
            raise BadInputError(f"the simulator board takes no options, got {sorted(options)}")
        return SimulatorBoard(cfg)
    if driver == "pynq":
        from .pynq_board import PynqBoard

        return PynqBoard(cfg, **options)
    raise BadInputError(f"unknown board driver '{driver}' (known: {', '.join(DRIVERS)})")
