"""The client side of a board server: connect (--rpc H:P) or lease through a tracker
(--tracker H:P --key K), with every step bounded in time.

    with BoardClient.connect(rpc="127.0.0.1:9091", timeout=120) as c:
        c.info()                                  # {"board", "key", "driver", "host", ...}
        c.run_program(program, dram, regions)     # {"cycles", "counters"}
    BoardClient.connect(tracker="127.0.0.1:9190", key="pynq", wait=30)

TVM's RPC client has no timeout of its own (a hung server blocks a call forever, and a
tracker with no free board blocks `request` forever), so each step runs in a daemon thread
that is abandoned after its limit: the caller gets a one-line BoardError (exit 3) and never
hangs. A remote bctvm error comes back as its own class (bctvm.rpc.wire.remote_error).
"""

from __future__ import annotations

import json
import queue
import threading

from bctvm.errors import BadInputError, BctvmError, BoardError

from . import wire


def parse_addr(text: str, what: str) -> tuple[str, int]:
    """"host:port" -> (host, port); BadInputError naming the option otherwise."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInputError(f"{what} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9091")
    return host, int(port)


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


# how TVM reports a peer that went away in the middle of a call
_CLOSED = ("kShutdown", "kReturn", "Broken pipe", "Connection reset", "SockChannel")


def bounded(fn, seconds: float, what: str,
            late: str = "no answer within {s:g} s (server hung or board busy; see --timeout)"):
    """fn() in a daemon thread; its result, its error mapped to a bctvm error, or BoardError
    "<what>: <late>" when it takes longer than `seconds` (the thread is abandoned)."""
    out: queue.Queue = queue.Queue(maxsize=1)

    def body():
        try:
            out.put((True, fn()))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            out.put((False, err))

    threading.Thread(target=body, daemon=True, name=f"bctvm-rpc {what}").start()
    try:
        ok, value = out.get(timeout=seconds)
    except queue.Empty:
        raise BoardError(f"{what}: {late.format(s=seconds)}") from None
    if ok:
        return value
    if isinstance(value, BctvmError):
        raise value
    from tvm.error import RPCError

    if isinstance(value, RPCError):
        raise wire.remote_error(str(value), what) from None
    if "sock.Connect" in str(value):
        raise BoardError(f"{what}: connection refused (is a board server running there?)") \
            from None
    if any(sign in str(value) for sign in _CLOSED):
        raise BoardError(f"{what}: the server closed the session (killed or crashed: "
                         f"{_first_line(value)})") from None
    raise BoardError(f"{what}: {_first_line(value)}") from None


class BoardClient:
    """One session on a board server; every call bounded by `timeout` seconds."""

    def __init__(self, session, address: str, timeout: float, tracker_session=None):
        self.session, self.address, self.timeout = session, address, float(timeout)
        self._tracker = tracker_session

    @classmethod
    def connect(cls, rpc: str | None = None, tracker: str | None = None, key: str | None = None,
                timeout: float = 120.0, wait: float | None = None) -> "BoardClient":
        """A session by address (`rpc`) or leased from a tracker under `key` within `wait`
        seconds (default: `timeout`)."""
        from tvm import rpc as tvm_rpc

        if (rpc is None) == (tracker is None):
            raise BadInputError("give either --rpc HOST:PORT or --tracker HOST:PORT --key K")
        if timeout <= 0:
            raise BadInputError(f"--timeout {timeout}: must be > 0 seconds")
        if rpc is not None:
            host, port = parse_addr(rpc, "--rpc")
            sess = bounded(lambda: tvm_rpc.connect(host, port), timeout,
                           f"connect to board server {host}:{port}")
            return cls(sess, f"{host}:{port}", timeout)
        if not key:
            raise BadInputError("--tracker needs --key (the board kind to lease)")
        host, port = parse_addr(tracker, "--tracker")
        where = f"tracker {host}:{port}"
        tsess = bounded(lambda: tvm_rpc.connect_tracker(host, port), timeout, f"connect to {where}")
        wait = timeout if wait is None else float(wait)
        try:
            sess = bounded(lambda: tsess.request(key, max_retry=1), wait,
                           f"lease a '{key}' board from {where}",
                           "no free board within {s:g} s (see --wait)")
        except BoardError as err:
            tsess.close()  # drops the pending request at the tracker
            raise BoardError(f"{err}{_free_boards(host, port, key)}") from None
        return cls(sess, f"{where} key {key}", timeout, tsess)

    def call(self, name: str, *args, timeout: float | None = None):
        """The remote function `name` applied to args, bounded by `timeout` (default: the
        client's)."""
        fn = bounded(lambda: self.session.get_function(name), self.timeout,
                     f"{self.address}: {name}")
        return bounded(lambda: fn(*args), self.timeout if timeout is None else timeout,
                       f"{self.address}: {name}")

    def info(self) -> dict:
        """The board's identity: {"board", "key", "driver", "host", "pid", "bctvm"}."""
        return json.loads(str(self.call("bctvm.board.info")))

    def run_program(self, program: bytes, dram, regions: dict | None = None) -> dict:
        """One instruction stream on a copy of `dram` on the board: {"cycles", "counters"}."""
        return json.loads(str(self.call("bctvm.board.run_program", bytearray(program),
                                        bytearray(bytes(dram)), json.dumps(regions or {}))))

    def close(self) -> None:
        self.session = None  # TVM closes the connection when the session is released
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    def __enter__(self) -> "BoardClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _free_boards(host: str, port: int, key: str) -> str:
    """" (F of N boards under 'K' free)" or " (no server is registered under 'K')", asked
    on a connection of its own (best effort)."""
    from tvm import rpc as tvm_rpc

    try:
        summary = bounded(lambda: tvm_rpc.connect_tracker(host, port).summary(), 5.0,
                          "tracker summary")
        servers = sum(1 for s in summary.get("server_info", [])
                      if s.get("key") == f"server:{key}")
        free = int(summary.get("queue_info", {}).get(key, {}).get("free", 0))
    except (BctvmError, AttributeError, TypeError, ValueError):
        return ""
    if not servers:
        return f" (no server is registered under '{key}')"
    return f" ({free} of {servers} boards under '{key}' free)"
