"""The tuning log: resume, finished runs, corrupt and foreign records."""

from __future__ import annotations

import json

import pytest

from bctvm.tune import LocalBoards, TuningLog, TuningLogWarning, tune_task
from bctvm.tune.log import RECORDS, SKIPPED

from .conftest import small_task


@pytest.fixture(scope="module")
def tuned_log(tmp_path_factory, zcu102):
    """A log with 4 trials of the small task (local simulator board)."""
    d = tmp_path_factory.mktemp("log")
    tune_task(small_task(zcu102), LocalBoards(zcu102), TuningLog(d), trials=4, per_iter=3,
              progress=False)
    return d


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_rerunning_a_finished_tune_measures_nothing(tuned_log, zcu102, tmp_path):
    d = _copy(tuned_log, tmp_path / "log")
    before = (d / RECORDS).read_text()
    r = tune_task(small_task(zcu102), LocalBoards(zcu102), TuningLog(d), trials=4,
                  progress=False)
    assert r.trials_before == 4 and r.measured == 0 and r.curve == []
    assert (d / RECORDS).read_text() == before
    assert r.best_cycles <= r.default_cycles


def test_an_interrupted_tune_continues_where_it_stopped(tuned_log, zcu102, tmp_path):
    d = _copy(tuned_log, tmp_path / "log")
    r = tune_task(small_task(zcu102), LocalBoards(zcu102), TuningLog(d), trials=6,
                  per_iter=2, progress=False)
    assert (r.trials_before, r.trials_after, r.measured) == (4, 6, 2)
    assert len((d / RECORDS).read_text().splitlines()) == 6


def test_corrupt_and_foreign_records_are_skipped_with_a_warning(tuned_log, zcu102, tmp_path):
    d = _copy(tuned_log, tmp_path / "log")
    lines = (d / RECORDS).read_text().splitlines()
    good = json.loads(lines[0])
    foreign = [99, good[1]]  # a workload the log does not have
    bad_trace = [good[0], [[[["NoSuchInstruction", [], [], []]], []]] + good[1][1:]]
    (d / RECORDS).write_text("\n".join(lines[:2] + ["{not json", json.dumps(foreign),
                                                    json.dumps(bad_trace)] + lines[2:]) + "\n")
    with pytest.warns(TuningLogWarning, match=r"skipped 3 record\(s\).*line 3: not JSON"):
        log = TuningLog(d)
    task = small_task(zcu102)
    assert log.trials(task) == 4
    assert len((d / SKIPPED).read_text().splitlines()) == 3  # kept, not lost
    assert log.best(task) is not None
    r = tune_task(task, LocalBoards(zcu102), log, trials=4, progress=False)
    assert r.measured == 0
