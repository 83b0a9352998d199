"""Tuning measured on real RPC board servers behind a tracker (127.0.0.1)."""

from __future__ import annotations

import math
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from bctvm.errors import BoardError
from bctvm.tune import LocalBoards, RpcBoards, TrackerBoards, TuningLog, tune_task
from bctvm.tune.builder import build_candidate
from bctvm.tune.log import RECORDS
from bctvm.tune.runner import measure_artifact

from .conftest import small_task

pytestmark = pytest.mark.rpc


def test_tune_over_two_tracked_boards_improves_on_or_equals_the_default(
        zcu102, tracker_with_boards, tmp_path):
    port, _ = tracker_with_boards
    boards = TrackerBoards(zcu102, "127.0.0.1", port, "zcu102", timeout=30)
    assert boards.parallel == 2  # both boards listed under the key
    task = small_task(zcu102)
    log = TuningLog(tmp_path / "log")
    r = tune_task(task, boards, log, trials=8, per_iter=4, progress=False)
    assert r.trials_after == 8 and r.measured == 8
    assert math.isfinite(r.default_cycles) and r.curve[0] == r.default_cycles
    assert r.best_cycles <= r.default_cycles
    assert r.best_cycles == min(c for c in r.curve if math.isfinite(c))
    assert sum(math.isfinite(c) for c in r.curve) >= 4  # the builder refuses fallback knobs
    best = log.best(task)  # the logged knobs give the logged board cycles
    with tempfile.TemporaryDirectory() as d:
        prog = build_candidate(task, best.values, Path(d))
        assert measure_artifact(LocalBoards(zcu102), str(prog)) == best.cycles


def test_a_board_killed_mid_run_costs_candidates_not_the_run(zcu102, tracker_with_boards,
                                                             tmp_path):
    port, servers = tracker_with_boards
    boards = TrackerBoards(zcu102, "127.0.0.1", port, "zcu102", timeout=15)
    log_dir = tmp_path / "log"

    killed_at = []

    def kill_after_first_records():
        deadline = time.time() + 120
        p = log_dir / RECORDS
        while time.time() < deadline:
            if p.is_file() and len(p.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        servers[0].stop()
        killed_at.append(len(p.read_text().splitlines()))

    killer = threading.Thread(target=kill_after_first_records, daemon=True)
    killer.start()
    r = tune_task(small_task(zcu102), boards, TuningLog(log_dir), trials=10, per_iter=4,
                  progress=False)
    killer.join(5)
    assert killed_at and killed_at[0] < 10  # the board died while the run went on
    assert r.trials_after == 10  # every trial recorded (failed ones too)
    assert math.isfinite(r.best_cycles)


def test_a_hung_board_fails_its_measurement_after_the_timeout(zcu102, servers):
    srv = servers("zcu102")
    worker = psutil.Process(srv.worker_pid)
    worker.suspend()  # the port accepts TCP, nothing answers
    try:
        boards = RpcBoards(zcu102, "127.0.0.1", srv.port, timeout=2)
        t0 = time.time()
        with pytest.raises(BoardError, match="no answer within 2 s"):
            boards.measure(b"\0" * 16, np.zeros(64, np.uint8), {})
        assert time.time() - t0 < 10
    finally:
        worker.resume()


def test_a_board_of_another_kind_is_refused(zcu102, servers):
    srv = servers("pynq")
    with pytest.raises(BoardError, match="board 'pynq', the task is for 'zcu102'"):
        RpcBoards(zcu102, "127.0.0.1", srv.port, timeout=20).measure(
            b"\0" * 16, np.zeros(64, np.uint8), {})
