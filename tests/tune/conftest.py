"""Tuning tests: a small task on zcu102 and real board servers (bctvm serve) on 127.0.0.1
(the `servers` and `tracker` fixtures of tests/rpc)."""

from __future__ import annotations

import pytest

from tests.rpc.conftest import servers, tracker, tracker_free, wait_until  # noqa: F401


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
def tracker_with_boards(servers, tracker):
    """(tracker port, [two zcu102 board servers registered under key "zcu102"])."""
    servers_ = [servers("zcu102", tracker=tracker, key="zcu102") for _ in range(2)]
    wait_until(lambda: tracker_free(tracker, "zcu102") == 2, 30, "both boards at the tracker")
    return tracker[1], servers_
