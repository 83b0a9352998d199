"""RPC tests: real TVM trackers and board servers on 127.0.0.1 free ports, and the zoo
ResNet-18 at 32x32 for pynq, compiled once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.cli_runner import run_cli  # noqa: F401 (used by the tests here)

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="session")
def r18(tmp_path_factory) -> Path:
    """block_resnet18, 1x3x32x32, blocks of 8, compiled for pynq."""
    from bctvm.compiler import compile_model

    out = tmp_path_factory.mktemp("rpc") / "r18"
    compile_model("block_resnet18", out_dir=out, board="pynq", block_size=8,
                  input_shape=SHAPE, progress=False)
    return out


@pytest.fixture
def servers(tmp_path):
    """start(board="pynq", **kw) -> a started BoardServer on a free loopback port; all are
    stopped at the end of the test."""
    from bctvm.rpc.server import BoardServer, free_port

    started = []

    def start(board="pynq", **kw):
        from bctvm.errors import BoardError

        kw.setdefault("workdir", tmp_path / f"board{len(started)}")
        for attempt in range(3):  # another process may take the free port before we bind it
            try:
                srv = BoardServer(board, "127.0.0.1", free_port(), **kw).start()
                break
            except BoardError:
                if attempt == 2:
                    raise
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def tracker():
    """A real tvm.rpc tracker on a free loopback port: (host, port)."""
    from tvm.rpc.tracker import Tracker

    from bctvm.rpc.server import free_port

    port = free_port()
    t = Tracker("127.0.0.1", port=port, port_end=port + 1, silent=True)
    yield ("127.0.0.1", t.port)
    t.terminate()


def wait_until(cond, seconds: float, what: str):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def sessions(srv) -> list:
    """The session processes of a server's worker (forked per connection)."""
    try:
        return psutil.Process(srv.worker_pid).children(recursive=True)
    except (psutil.NoSuchProcess, TypeError, ValueError):
        return []


def tracker_free(addr, key: str) -> int:
    from tvm import rpc

    q = rpc.connect_tracker(*addr).summary()["queue_info"].get(key, {})
    return int(q.get("free", 0))


def cli_process(*args, **kw) -> subprocess.Popen:
    """`bctvm ARGS` in a child process (this interpreter, the repo's cli.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def port_listening(port: int) -> bool:
    return any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
               for c in psutil.net_connections("tcp"))
