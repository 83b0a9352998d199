"""MetaSchedule runner: measure built candidates on boards; the cost is board cycles.

MetaSchedule stores a runner's cost as-is (`run_secs`), so the log holds cycles at the
board clock, not host seconds. Up to `boards.parallel` candidates are measured at once,
each on its own leased board; a failed or timed-out measurement is that candidate's
RunnerResult error (MetaSchedule records it as failed), never the run's.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerFuture, RunnerResult

from bctvm.errors import BctvmError

from .boards import Boards


def measure_artifact(boards: Boards, program_path: str) -> int:
    """Cycles of a built candidate (builder.py's directory) on one of `boards`."""
    d = Path(program_path).parent
    regions = {k: tuple(v) for k, v in json.loads((d / "regions.json").read_text()).items()}
    dram = np.fromfile(d / "dram.bin", dtype=np.uint8)
    return boards.measure(Path(program_path).read_bytes(), dram, regions)


class _Measurement:
    """One candidate's measurement in a daemon thread, at most `gate` at once."""

    def __init__(self, boards: Boards, path: str, gate: threading.Semaphore):
        self.result_value: RunnerResult | None = None
        self._done = threading.Event()
        self._args = (boards, path, gate)
        threading.Thread(target=self._run, daemon=True, name="bctvm-measure").start()

    def _run(self):
        boards, path, gate = self._args
        with gate:
            try:
                cycles = measure_artifact(boards, path)
                self.result_value = RunnerResult([float(cycles)], None)
            except (BctvmError, OSError, ValueError, KeyError) as err:
                self.result_value = RunnerResult(None, f"{type(err).__name__}: {err}")
        self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self) -> RunnerResult:
        self._done.wait()
        return self.result_value


@derived_object
class BoardRunner(PyRunner):
    """PyRunner measuring on a bctvm.tune.boards pool (local, RPC server or tracker)."""

    def __init__(self, boards: Boards):
        super().__init__()
        self.boards = boards
        self._gate = threading.Semaphore(boards.parallel)

    def run(self, runner_inputs):
        futures = []
        for inp in runner_inputs:
            m = _Measurement(self.boards, inp.artifact_path, self._gate)
            futures.append(RunnerFuture(m.done, m.result))
        return futures
