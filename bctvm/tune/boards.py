"""Boards that measure tuning candidates: in-process simulator boards, one RPC server, or the
boards registered under a key at an RPC tracker.

    pool = TrackerBoards("127.0.0.1", 9190, key="zcu102", timeout=60)
    cycles = pool.measure(program_bytes, dram_uint8, regions)   # -> int, or raises BoardError

Every remote board is a TVM RPC server session that registers (bctvm serve, issue 10):
    bctvm.board.info() -> str                                     JSON, with the board name
    bctvm.board.run_program(program: bytes, dram: bytes, regions_json: str) -> str
                                                                  JSON {"cycles", "counters"}
One measurement leases one board (one tracker request, one session) and releases it, so
`parallel` measurements run on as many boards at once. Every remote step runs under a
deadline (`timeout` seconds: TVM's tracker request and RPC calls have none): a dead or hung
board raises BoardError for that measurement only.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod

import numpy as np

from bctvm.errors import BoardError

INFO = "bctvm.board.info"
RUN = "bctvm.board.run_program"


def with_deadline(fn, timeout: float, what: str):
    """fn() in a daemon thread; its result, or BoardError after `timeout` seconds (the
    thread is left behind: a hung RPC call cannot be interrupted)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller
            box["error"] = err

    t = threading.Thread(target=target, daemon=True, name=f"bctvm-{what}")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise BoardError(f"{what}: no answer within {timeout:g} s")
    if "error" in box:
        err = box["error"]
        raise err if isinstance(err, BoardError) else BoardError(f"{what}: {err}") from err
    return box["value"]


def board_name(info_json: str) -> str:
    """The board name in a bctvm.board.info() answer."""
    info = json.loads(info_json)
    b = info.get("board")
    return b.get("name", "") if isinstance(b, dict) else str(b or info.get("name", ""))


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
    """A measurement = open a session (subclass), check the board, run, close."""

    def __init__(self, cfg, timeout: float, parallel: int):
        self.cfg, self.timeout, self.parallel = cfg, float(timeout), max(1, parallel)

    @abstractmethod
    def _session(self):
        """An RPC session to one board (blocking; called under the deadline)."""

    def measure(self, program, dram, regions) -> int:
        where = self.describe()
        sess = with_deadline(self._session, self.timeout, f"lease a board at {where}")
        regions_json = json.dumps({k: [int(a), int(b)] for k, (a, b) in regions.items()})
        payload = bytearray(np.ascontiguousarray(dram, np.uint8).tobytes())

        def run():
            name = board_name(sess.get_function(INFO)())
            if name != self.cfg.name:
                raise BoardError(f"board at {where} is '{name}', the task is for "
                                 f"'{self.cfg.name}'")
            return sess.get_function(RUN)(bytearray(program), payload, regions_json)

        out = json.loads(with_deadline(run, self.timeout, f"run on a board at {where}"))
        return int(out["cycles"])


class RpcBoards(_RemoteBoards):
    """One RPC server (`--rpc H:P`): one measurement at a time."""

    def __init__(self, cfg, host: str, port: int, timeout: float = 60.0):
        super().__init__(cfg, timeout, 1)
        self.host, self.port = host, int(port)

    def _session(self):
        from tvm import rpc

        return rpc.connect(self.host, self.port, session_timeout=int(self.timeout * 4))

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

    def _tracker(self):
        from tvm import rpc

        return rpc.connect_tracker(self.host, self.port)

    def _count(self) -> int:
        """Boards (free or busy) under the key; BoardError when the tracker does not answer
        or has none."""
        summary = with_deadline(lambda: self._tracker().summary(), self.timeout,
                                f"tracker {self.host}:{self.port}")
        q = summary.get("queue_info", {}).get(self.key, {})
        n = int(q.get("free", 0)) + int(q.get("pending", 0))
        n = max(n, sum(1 for s in summary.get("server_info", [])
                       if str(s.get("key", "")).split(":")[-1] == self.key))
        if n == 0:
            raise BoardError(f"tracker {self.host}:{self.port} has no board under key "
                             f"'{self.key}'")
        return n

    def _session(self):
        last = None
        for _ in range(3):  # a board that died since it registered refuses the connection
            try:
                return self._tracker().request(self.key, priority=1, max_retry=1,
                                               session_timeout=int(self.timeout * 4))
            except Exception as err:  # noqa: BLE001 - TVM raises plain RuntimeError here
                last = err
        raise BoardError(f"no board under key '{self.key}' answered: {last}")

    def describe(self) -> str:
        return f"tracker {self.host}:{self.port} key {self.key}"
