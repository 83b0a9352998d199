"""Tuning tests: a small task on zcu102 and real board servers (bctvm serve) on 127.0.0.1."""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="session")
def zcu102():
    from boards import load_board

    return load_board("zcu102")


def small_task(cfg):
    """One 3x3 64->64 layer over a 16x16 map in 8x8 blocks (about 15 000 cycles)."""
    from bctvm.tune import task_of
    from schedules.layer import LayerSpec

    spec = LayerSpec("c", 64, 64, 16, 16, (8, 8), relu=True, shift=8)
    return task_of(cfg, [spec], [None])


@pytest.fixture
def board_server(tmp_path):
    """start(board, tracker=None, key=None) -> a started BoardServer on a free loopback
    port; all are stopped at the end of the test."""
    from bctvm.rpc.server import BoardServer, free_port

    started = []

    def start(board="zcu102", **kw):
        srv = BoardServer(board, "127.0.0.1", free_port(),
                          workdir=tmp_path / f"board{len(started)}", **kw).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def tracker_with_boards(board_server):
    """(tracker port, [two zcu102 board servers registered under key "zcu102"])."""
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    from bctvm.rpc.server import free_port

    port = free_port()
    tracker = Tracker("127.0.0.1", port=port, port_end=port + 1, silent=True)
    servers = [board_server(tracker=("127.0.0.1", tracker.port), key="zcu102")
               for _ in range(2)]
    end = time.monotonic() + 30
    while time.monotonic() < end:  # both registered
        q = rpc.connect_tracker("127.0.0.1", tracker.port).summary()["queue_info"]
        if q.get("zcu102", {}).get("free", 0) == 2:
            break
        time.sleep(0.1)
    try:
        yield tracker.port, servers
    finally:
        tracker.terminate()
