"""The board server: a TVM RPC server (tvm.rpc.Server) whose sessions run a bctvm board.

    srv = BoardServer("pynq", host="127.0.0.1", port=9091, tracker=("127.0.0.1", 9190),
                      key="pynq", workdir="~/.cache/bctvm/pynq").start()
    srv.port                 # the bound port
    srv.stop()               # the worker and every session process, nothing left listening

`tvm.rpc.Server` runs the listening loop in a popen worker process and forks one process per
session. What this class adds (the facts are in ../shared/tvm-0.27-notes.md, RPC):
- the bctvm functions (bctvm/rpc/functions.py), registered by `server_init_callback` in the
  worker before it listens, on a board the worker opens itself;
- a session that dies (a crash in the board or the host library) stops TVM's listening
  thread and drops the server from the tracker while the worker lives on: a guard thread in
  the worker sees the listening thread gone and exits the worker, and a watchdog thread here
  starts a new one on the same port, which registers with the tracker again;
- the worker exits when this process disappears (no orphan left listening), and stop() kills
  the worker with its sessions.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import threading
import time
from pathlib import Path

from bctvm.errors import BadInputError, BoardError

log = logging.getLogger("bctvm.serve")

_GUARD_PERIOD = 0.2  # seconds between the worker guard's checks
_WATCHDOG_PERIOD = 0.5  # seconds between the watchdog's checks of the worker


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def default_workdir(board: str) -> Path:
    """~/.cache/bctvm/serve/<board>: where a server keeps uploaded artifacts by digest."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "bctvm" / "serve" / Path(str(board)).stem


def _guard(parent_pid: int) -> None:
    """Worker thread: exit the worker when TVM's listening thread has died (a session crashed)
    or when the process that started the server is gone."""
    import psutil
    from tvm.rpc.server import PopenRPCServerState

    while PopenRPCServerState.current is None:
        time.sleep(_GUARD_PERIOD)
    listener = PopenRPCServerState.current.thread
    while listener.is_alive() and os.getppid() == parent_pid:
        time.sleep(_GUARD_PERIOD)
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    os._exit(3)


def _init_worker(board: str, driver: str, options: dict, workdir: str, port: int,
                 parent_pid: int) -> None:
    """server_init_callback: open the board, register the functions, start the guard."""
    from bctvm.runtime.board import open_board

    from . import functions
    from .store import ArtifactStore

    functions.register(open_board(board, driver, **options), ArtifactStore(workdir), port)
    threading.Thread(target=_guard, args=(parent_pid,), daemon=True, name="bctvm-guard").start()


def _check_driver(driver: str, options: dict) -> None:
    """Bad driver options are exit 2 here, before a worker is started."""
    from bctvm.runtime.board import DRIVERS

    if driver not in DRIVERS:
        raise BadInputError(f"--driver {driver}: unknown (known: {', '.join(DRIVERS)})")
    bit = options.get("bitstream")
    if driver == "pynq" and (not bit or not Path(bit).is_file()):
        raise BadInputError(f"--bitstream {bit}: the pynq driver needs the VTA bitstream file")


class BoardServer:
    """One board served over TVM RPC (module docstring). `board`: a board name or .toml;
    `tracker`: (host, port) or "HOST:PORT"; `driver`: "simulator" or "pynq" (`options`: the
    driver's, e.g. bitstream=...)."""

    def __init__(self, board="pynq", host: str = "127.0.0.1", port: int = 9091,
                 tracker: tuple[str, int] | str | None = None, key: str | None = None,
                 workdir=None, driver: str = "simulator", options: dict | None = None):
        from boards import load_board

        from .client import parse_addr

        self.cfg = load_board(board)  # a bad board name is exit 2 here, not in the worker
        if isinstance(tracker, str):
            tracker = parse_addr(tracker, "--tracker")
        self.board = str(board)
        self.host, self.port, self.tracker = host, int(port), tracker
        self.key = key or ""  # TVM matches it on direct connections too: only with a tracker
        if tracker and not key:
            raise BadInputError("serve: --tracker needs --key (the board kind clients ask for)")
        self.workdir = str(Path(workdir or default_workdir(self.cfg.name)).expanduser().resolve())
        self.driver, self.options = driver, dict(options or {})
        _check_driver(driver, self.options)
        self.restarts = 0
        self._server = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watchdog = None

    def _spawn(self):
        from tvm import rpc

        init = functools.partial(_init_worker, self.board, self.driver, self.options,
                                 self.workdir, self.port, os.getpid())
        try:
            server = rpc.Server(self.host, self.port, self.port + 1, key=self.key,
                                tracker_addr=self.tracker, server_init_callback=init,
                                silent=True)
        except Exception as err:  # bind failure or the board failing to open in the worker
            raise BoardError(f"serve: cannot start a server on {self.host}:{self.port} "
                             f"({' '.join(str(err).split())[:300]})") from None
        self.port = server.port
        return server

    def start(self) -> "BoardServer":
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        if not is_loopback(self.host):
            log.warning("serving on %s: TVM RPC has no authentication, anyone who reaches "
                        "this address can run code here", self.host)
        with self._lock:
            self._server = self._spawn()
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name="bctvm-watchdog")
        self._watchdog.start()
        return self

    def _watch(self) -> None:
        """Restart the worker when it exits (its guard saw a crashed session)."""
        while not self._stopping.wait(_WATCHDOG_PERIOD):
            with self._lock:
                if self._stopping.is_set() or self._server is None:
                    return
                if self._server.proc is not None and self._server.proc.is_alive():
                    continue
                self._server.terminate()
                log.warning("board server on port %d lost its session worker: restarting",
                            self.port)
                for _ in range(20):  # the port may take a moment to be free again
                    try:
                        self._server = self._spawn()
                        self.restarts += 1
                        break
                    except BoardError:
                        time.sleep(0.25)
                else:
                    log.error("board server on port %d could not restart", self.port)
                    self._server = None
                    return

    @property
    def worker_pid(self) -> int | None:
        s = self._server
        return s.proc._proc.pid if s is not None and s.proc is not None and s.proc._proc else None

    def alive(self) -> bool:
        s = self._server
        return s is not None and s.proc is not None and s.proc.is_alive()

    def stop(self) -> None:
        """Kill the worker and every session process (idempotent)."""
        self._stopping.set()
        with self._lock:
            if self._server is not None:
                self._server.terminate()
                self._server = None
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=5)

    def __enter__(self) -> "BoardServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(server: BoardServer, echo=print) -> None:
    """`bctvm serve`: start, print where, wait; Ctrl-C / SIGTERM stop every child process."""
    import signal

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        where = f"{server.host}:{server.port}"
        reg = f", registered with tracker {server.tracker[0]}:{server.tracker[1]} as " \
              f"'{server.key}'" if server.tracker else ""
        echo(f"serving board {server.cfg.name} ({server.cfg.key}, {server.driver}) on "
             f"{where}{reg}; artifacts in {server.workdir}; Ctrl-C stops")
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for s, h in old.items():
            signal.signal(s, h)
        echo("server stopped")
