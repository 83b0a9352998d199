"""Boards that measure tuning candidates: in-process simulator boards, one RPC server, or the
boards registered under a key at an RPC tracker.

    pool = TrackerBoards(cfg, "127.0.0.1", 9190, key="zcu102", timeout=60)
    cycles = pool.measure(program_bytes, dram_uint8, regions)   # -> int, or raises BoardError

Every remote board is a session of a board server (`bctvm serve`, bctvm/rpc) offering:
    bctvm.board.info() -> str                                     JSON, with the board name
    bctvm.board.run_program(program: bytes, dram: bytes, regions_json: str) -> str
                                                                  JSON {"cycles", "counters"}
One measurement leases one board (one tracker request, one session: bctvm.rpc.BoardClient)
and releases it, so `parallel` measurements run on as many boards at once. Every remote step
is bounded by `timeout` seconds (the client's): a dead or hung board raises BoardError for
that measurement only.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

import numpy as np

from bctvm.errors import BoardError


class Boards(ABC):
    """Where candidates are measured; `parallel` measurements may run at once."""

    parallel: int = 1

    @abstractmethod
    def measure(self, program: bytes, dram: np.ndarray, regions: dict) -> int:
        """Board cycles of one run; BoardError when the board fails or does not answer."""

    def describe(self) -> str:
        return type(self).__name__


class LocalBoards(Boards):
    """Simulator boards in this process (one per measuring thread)."""

    def __init__(self, cfg, parallel: int = 1):
        self.cfg, self.parallel = cfg, max(1, parallel)
        self._local = threading.local()

    def measure(self, program, dram, regions) -> int:
        from bctvm.runtime.board import SimulatorBoard

        if not hasattr(self._local, "board"):
            self._local.board = SimulatorBoard(self.cfg)
        return int(self._local.board.run(program, dram, regions).cycles)

    def describe(self) -> str:
        return f"local simulator ({self.cfg.name})"


class _RemoteBoards(Boards):
    """A measurement = a BoardClient session (bctvm.rpc: bounded in time), the board's
    identity checked, one run_program, the session closed."""

    def __init__(self, cfg, timeout: float, parallel: int):
        self.cfg, self.timeout, self.parallel = cfg, float(timeout), max(1, parallel)

    @abstractmethod
    def _where(self) -> dict:
        """BoardClient.connect's address arguments."""

    def measure(self, program, dram, regions) -> int:
        from bctvm.rpc.client import BoardClient

        with BoardClient.connect(timeout=self.timeout, wait=self.timeout,
                                 **self._where()) as client:
            name = client.info().get("board")
            if name != self.cfg.name:
                raise BoardError(f"{client.address}: board '{name}', the task is for "
                                 f"'{self.cfg.name}'")
            out = client.run_program(program, np.ascontiguousarray(dram, np.uint8).tobytes(),
                                     {k: [int(a), int(b)] for k, (a, b) in regions.items()})
        return int(out["cycles"])


class RpcBoards(_RemoteBoards):
    """One board server (`--rpc H:P`): one measurement at a time."""

    def __init__(self, cfg, host: str, port: int, timeout: float = 60.0):
        super().__init__(cfg, timeout, 1)
        self.host, self.port = host, int(port)

    def _where(self) -> dict:
        return {"rpc": f"{self.host}:{self.port}"}

    def describe(self) -> str:
        return f"{self.host}:{self.port}"


class TrackerBoards(_RemoteBoards):
    """The boards registered under `key` at a tracker; `parallel` None = as many as the
    tracker lists under the key when the pool is made."""

    def __init__(self, cfg, host: str, port: int, key: str, timeout: float = 60.0,
                 parallel: int | None = None):
        self.host, self.port, self.key = host, int(port), key
        super().__init__(cfg, timeout, 1)
        self.parallel = max(1, parallel or self._count())

    def _where(self) -> dict:
        return {"tracker": f"{self.host}:{self.port}", "key": self.key}

    def _count(self) -> int:
        """Boards (free or busy) under the key; BoardError when the tracker does not answer
        or lists none."""
        from tvm import rpc

        from bctvm.rpc.client import bounded

        where = f"tracker {self.host}:{self.port}"
        summary = bounded(lambda: rpc.connect_tracker(self.host, self.port).summary(),
                          self.timeout, where)
        q = summary.get("queue_info", {}).get(self.key, {})
        n = int(q.get("free", 0)) + int(q.get("pending", 0))
        if n == 0:
            raise BoardError(f"{where} has no board under key '{self.key}'")
        return n

    def describe(self) -> str:
        return f"tracker {self.host}:{self.port} key {self.key}"
