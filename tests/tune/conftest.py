"""Tuning tests: a small task on zcu102 and real RPC board servers on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from .board_servers import start_server, start_tracker


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
def tracker_with_boards():
    """(tracker, [two servers under key "zcu102"]); everything terminated afterwards."""
    tracker = start_tracker()
    servers = [start_server("zcu102", tracker.port, "zcu102") for _ in range(2)]
    time.sleep(1.0)  # registration
    try:
        yield tracker, servers
    finally:
        for s in servers:
            s.terminate()
        tracker.terminate()
