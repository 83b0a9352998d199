"""The tuning log: a MetaSchedule JSONDatabase directory, checked before it is opened.

    DIR/database_workload.json        one workload per line (the tasks, tasks.py)
    DIR/database_tuning_record.json   one record per line: workload index, trace (the knob
                                      decisions), costs in board cycles, target, arguments
    DIR/database_tuning_record.skipped.json   lines taken out of the log (see below)

Before the database is opened every record line is checked: a line that is not JSON, not a
record, names a workload that does not exist (corrupt) or whose workload is not a bctvm task
or whose trace does not give the task's knobs (foreign) is moved to the .skipped file (kept,
nothing is lost) with one warning naming the lines. JSONDatabase itself would stop at them.

    log = TuningLog("tune/r18")                    # creates DIR when missing
    log.trials(task)                               # records of the task (failed ones too)
    best = log.knobs_for(cfg, specs, residuals)    # TunedKnobs of the best record, or None
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import tvm_ffi
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from bctvm.errors import BadInputError

from .tasks import Task, task_from_workload, task_of

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
SKIPPED = "database_tuning_record.skipped.json"
FAILED_COST = 1e9  # MetaSchedule records a failed candidate with cost 1e10


class TuningLogWarning(UserWarning):
    """Records of a tuning log were skipped."""


@dataclass
class TunedKnobs:
    """The best record of a task: knob values, their cycles, and the compile arguments."""

    task: Task
    values: dict
    cycles: int

    @property
    def compile_kwargs(self) -> dict:
        return self.task.space.compile_kwargs(self.values)

    def manifest(self, cg) -> dict:
        return {"source": "tuning_log", "log_cycles": self.cycles, "values": self.values,
                "resolved": dataclasses.asdict(cg.knobs[0])}


def _check_line(line: str, workloads: list) -> str | None:
    """Why a record line is unusable (None: fine)."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as err:
        return f"not JSON ({err.msg})"
    if not (isinstance(rec, list) and len(rec) == 2 and isinstance(rec[0], int)
            and isinstance(rec[1], list) and len(rec[1]) >= 2):
        return "not a tuning record"
    if not 0 <= rec[0] < len(workloads):
        return f"workload {rec[0]} is not in {WORKLOADS}"
    wl = workloads[rec[0]]
    if wl is None:
        return f"workload {rec[0]} is corrupt"
    task, space_mod = wl
    if task is None:
        return "foreign workload (not a bctvm tuning task)"
    try:
        sch = s_tir.Schedule(space_mod)
        s_tir.Trace.apply_json_to_schedule(rec[1][0], sch)
        task.space.values_of(sch)
    except Exception as err:  # noqa: BLE001 - a corrupt trace raises anything from TVM
        return f"trace does not give the task's knobs ({str(err).splitlines()[0][:120]})"
    return None


def _load_workloads(path: Path) -> list:
    """Per workload line: (Task or None for a foreign one, IRModule) or None when corrupt."""
    out = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            wl = ms.database.Workload.from_json(json.loads(line))
        except Exception:  # noqa: BLE001
            out.append(None)
            continue
        try:
            task = task_from_workload(wl.mod)
        except Exception:  # noqa: BLE001 - no "main" or no task attribute: foreign
            task = None
        out.append((task, wl.mod))
    return out


def sanitize(log_dir: Path) -> list[str]:
    """Move unusable record lines to the .skipped file; returns their descriptions."""
    rec_path = log_dir / RECORDS
    if not rec_path.is_file():
        return []
    workloads = _load_workloads(log_dir / WORKLOADS)
    keep, bad = [], []
    for n, line in enumerate(rec_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        why = _check_line(line, workloads)
        if why is None:
            keep.append(line)
        else:
            bad.append((n, line, why))
    if not bad:
        return []
    with open(log_dir / SKIPPED, "a") as f:
        for _, line, _ in bad:
            f.write(line + "\n")
    tmp = rec_path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, rec_path)
    msgs = [f"line {n}: {why}" for n, _, why in bad]
    warnings.warn(TuningLogWarning(
        f"tuning log {rec_path}: skipped {len(bad)} record(s) (moved to {SKIPPED}): "
        + "; ".join(msgs)), stacklevel=3)
    return msgs


class TuningLog:
    """A tuning log directory (module docstring); `create=False` requires it to exist."""

    def __init__(self, log_dir, create: bool = True):
        self.dir = Path(log_dir)
        if not self.dir.is_dir():
            if not create:
                raise BadInputError(f"tuning log {self.dir}: no such directory")
            self.dir.mkdir(parents=True)
        elif not create and not (self.dir / WORKLOADS).is_file():
            raise BadInputError(f"tuning log {self.dir}: no {WORKLOADS} (not a bctvm tune "
                                f"--log directory)")
        self.skipped = sanitize(self.dir)
        self.db = ms.database.JSONDatabase(work_dir=str(self.dir))

    def _workload(self, task: Task):
        mod = task.workload()
        return self.db.commit_workload(mod) if self.db.has_workload(mod) else None

    def records(self, task: Task) -> list:
        """Every record of the task (failed ones included), in log order."""
        wl = self._workload(task)
        if wl is None:
            return []
        return [r for r in self.db.get_all_tuning_records()
                if tvm_ffi.structural_equal(r.workload.mod, wl.mod)]

    def trials(self, task: Task) -> int:
        return len(self.records(task))

    def best(self, task: Task) -> TunedKnobs | None:
        """The task's best measured record (None: no successful one)."""
        wl = self._workload(task)
        if wl is None:
            return None
        for rec in self.db.get_top_k(wl, 1):
            costs = [float(c) for c in (rec.run_secs or [])]
            if not costs or min(costs) >= FAILED_COST:
                return None
            sch = s_tir.Schedule(wl.mod)
            rec.trace.apply_to_schedule(sch, remove_postproc=True)
            values = task.space.values_of(sch)
            return TunedKnobs(task, values, int(round(sum(costs) / len(costs))))
        return None

    def knobs_for(self, cfg, specs, residuals, sources=None) -> TunedKnobs | None:
        """The best record of the task of a group (`sources`: each layer's data input,
        None: a chain), or None (default knobs)."""
        return self.best(task_of(cfg, specs, residuals, sources=sources))

    def default_manifest(self, cg) -> dict:
        return {"source": "default", "resolved": dataclasses.asdict(cg.knobs[0])}
