"""Tune the knobs of a model's tasks with MetaSchedule, measuring on boards.

    results = tune_tasks(tasks, boards, log_dir, trials=64, strategy="evolutionary")

Per task (tasks.py), in order:
1. the log's records of the task count toward `trials` (a finished task measures nothing);
2. a task with no record first measures its default knobs (what `bctvm compile` uses without
   a log) and logs them as a record: the search starts from, and can only improve on, them;
3. MetaSchedule tunes the rest: design space = ScheduleFn over KnobSpace.sample (no schedule
   rules, the FitRule postprocessor, MutateTileSize + KnobMutator), search = EvolutionarySearch
   guided by XGBModel on KnobFeatures ("evolutionary") or ReplayTrace ("random"), builder =
   VtaBuilder (the project's lowering), runner = BoardRunner (board cycles), database = the
   log's JSONDatabase; callbacks add to the database, delete the candidate's build
   directory, update the cost model and the progress bar. The cost model is first trained
   on the task's records already in the log.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from bctvm.errors import BadInputError

from .builder import VtaBuilder
from .log import FAILED_COST, TuningLog
from .runner import BoardRunner
from .search import FitRule, KnobFeatures, KnobMutator, TuneProgress
from .tasks import Task

STRATEGIES = ("evolutionary", "random")
TARGET = {"kind": "ext_dev"}


@dataclass
class TaskResult:
    """What tuning one task did: cycles of the default knobs and of the best record, records
    in the log before and after, and the costs measured in this run (in order)."""

    task: Task
    default_cycles: float
    best_cycles: float
    trials_before: int
    trials_after: int
    curve: list = field(default_factory=list)

    @property
    def measured(self) -> int:
        return self.trials_after - self.trials_before


def _default_knobs(task: Task):
    """The ScheduleKnobs compile_group resolves for the task without knobs (compiled here
    when the task does not carry them from extract_tasks)."""
    if task.default_knobs is None:
        from bctvm.lower.group import compile_group

        task.default_knobs = compile_group(task.cfg, task.specs, "fused",
                                           residual_source=list(task.residuals),
                                           name="default", sources=list(task.sources)).knobs[0]
    return task.default_knobs


def _measure_default(task: Task, log: TuningLog, builder, runner) -> float:
    """Measure the default knobs and commit them as the task's first record; their cycles."""
    mod = task.workload()
    values = task.space.from_knobs(_default_knobs(task))
    sch = task.space.sample(s_tir.Schedule(mod), values)
    target = Target(TARGET)
    (b,) = builder.build([ms.builder.BuilderInput(sch.mod, target)])
    args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    if b.error_msg is None:
        (fut,) = runner.run([ms.runner.RunnerInput(b.artifact_path, "ext_dev", args)])
        r = fut.result()
        shutil.rmtree(Path(b.artifact_path).parent, ignore_errors=True)
        cost = r.run_secs if r.error_msg is None else None
    else:
        cost = None
    wl = log.db.commit_workload(mod)
    log.db.commit_tuning_record(ms.database.TuningRecord(
        sch.trace, wl, [float(c) for c in cost] if cost else [1e10], target, args))
    return float(cost[0]) if cost else math.inf


def _tune_context(mod, space_generator, search_strategy, name: str, seed: int):
    """ms.TuneContext(mod, target=ext_dev, ..., num_threads=1), built as its constructor does
    but without its `import tvm.s_tir.tensor_intrin`: that import parses every CUDA / x86 /
    ARM tensor intrinsic from TVMScript (~40 s per process on this machine), and an ext_dev
    task uses none of them."""
    from tvm.s_tir.meta_schedule import _ffi_api
    from tvm.s_tir.meta_schedule.logging import get_logger, get_logging_func

    ctx = ms.TuneContext.__new__(ms.TuneContext)
    # rand_state seed + 1: MetaSchedule's random engine treats seeds 0 and 1 alike (a run with
    # --seed 0 sampled exactly what one with --seed 1 did)
    ctx.__init_handle_by_constructor__(_ffi_api.TuneContext, mod, Target(TARGET),
                                       space_generator, search_strategy, name, 1, seed + 1,
                                       get_logging_func(get_logger("bctvm.tune")))
    _ffi_api.TuneContextInitialize(ctx)
    return ctx


def _warm_start(cost_model, ctx, records) -> None:
    """Train the cost model on the task's records already in the log (the default knobs'
    record, and everything a resumed run measured before), as UpdateCostModel would have."""
    if not records:
        return
    cands = [rec.as_measure_candidate() for rec in records]
    results = [ms.runner.RunnerResult([float(c) for c in rec.run_secs], None)
               if rec.run_secs else ms.runner.RunnerResult(None, "failed") for rec in records]
    cost_model.update(ctx, cands, results)


# EvolutionarySearch for small, mostly infeasible spaces (10^3 - 10^5 points, of which the
# fit rule refuses up to ~90%): a population of 128 drawn with up to 20 retries per
# individual, 4 genetic iterations, a few fresh random picks (eps_greedy). XGBModel predicts
# after XGB_WARMUP measurements (MetaSchedule's default of 100 would leave a run of tens of
# trials with random scores), retrained after every batch.
POPULATION = 128
XGB_WARMUP = 8


def _strategy(name: str, seed: int):
    if name == "evolutionary":
        return (ms.search_strategy.EvolutionarySearch(
            population_size=POPULATION, init_measured_ratio=0.25, init_min_unmeasured=32,
            max_fail_count=20, genetic_num_iters=4, genetic_mutate_prob=0.85,
            genetic_max_fail_count=20, eps_greedy=0.1),
            lambda space: ms.cost_model.XGBModel(extractor=KnobFeatures(space),
                                                 num_warmup_samples=XGB_WARMUP,
                                                 adaptive_training=False,
                                                 num_tuning_cores=1))
    if name == "random":  # fresh samples only (no genetic step), picked at random scores
        return (ms.search_strategy.EvolutionarySearch(
            population_size=POPULATION, init_measured_ratio=0.0, init_min_unmeasured=POPULATION,
            max_fail_count=20, genetic_num_iters=0, genetic_mutate_prob=0.0,
            genetic_max_fail_count=20, eps_greedy=0.1),
            lambda space: ms.cost_model.RandomModel(seed=seed))
    raise BadInputError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def tune_task(task: Task, boards, log: TuningLog, trials: int, strategy: str = "evolutionary",
              per_iter: int = 8, seed: int = 0, progress: bool = True,
              position: str = "") -> TaskResult:
    """Tune one task up to `trials` records in the log (module docstring)."""
    builder, runner = VtaBuilder(), BoardRunner(boards)
    before = log.trials(task)
    curve: list[float] = []
    if before == 0 and trials > 0:
        curve.append(_measure_default(task, log, builder, runner))
    best = log.best(task)
    default = _default_cycles(task, log)
    left = trials - log.trials(task)
    bar = tqdm(total=trials, initial=trials - max(left, 0), desc=f"{position}{task.name}",
               unit="trial", disable=not progress, leave=True)
    if best is not None:
        bar.set_postfix_str(f"best {best.cycles:,} cycles")
    try:
        if left > 0:
            search, model = _strategy(strategy, seed)
            space = task.space
            ctx = _tune_context(
                task.workload(), ms.space_generator.ScheduleFn(
                    space.sample, sch_rules=[], postprocs=[FitRule(space)],
                    mutator_probs={ms.mutator.MutateTileSize(): 0.5, KnobMutator(seed): 0.5}),
                search, task.name, seed)
            cost_model = model(space)
            _warm_start(cost_model, ctx, log.records(task))
            prog = TuneProgress(bar, best.cycles if best else math.inf)
            with tempfile.TemporaryDirectory(prefix="bctvm-tune-") as work:
                ms.tune_tasks(
                    tasks=[ctx], task_weights=[1.0], work_dir=work, max_trials_global=left,
                    max_trials_per_task=left, num_trials_per_iter=min(per_iter, left),
                    builder=builder, runner=runner, database=log.db, cost_model=cost_model,
                    measure_callbacks=[ms.measure_callback.AddToDatabase(),
                                       ms.measure_callback.RemoveBuildArtifact(),
                                       ms.measure_callback.UpdateCostModel(), prog],
                    task_scheduler="round-robin")
            curve += prog.curve
    finally:
        bar.close()
    best = log.best(task)
    return TaskResult(task, default, best.cycles if best else math.inf, before,
                      log.trials(task), curve)


def _default_cycles(task: Task, log: TuningLog) -> float:
    """Cycles of the task's first record (the default knobs when this tuner made it)."""
    recs = log.records(task)
    if not recs:
        return math.inf
    costs = [float(c) for c in (recs[0].run_secs or [])]
    return costs[0] if costs and costs[0] < FAILED_COST else math.inf


def tune_tasks(tasks: list[Task], boards, log_dir, trials: int, strategy: str = "evolutionary",
               per_iter: int = 8, seed: int = 0, progress: bool = True) -> list[TaskResult]:
    """Tune every task (tune_task) into one log directory."""
    if trials < 1:
        raise BadInputError(f"--trials must be at least 1, got {trials}")
    if strategy not in STRATEGIES:
        raise BadInputError(f"--strategy must be one of {', '.join(STRATEGIES)}, "
                            f"got {strategy!r}")
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    log = TuningLog(log_dir)
    out = []
    for i, task in enumerate(tasks):
        out.append(tune_task(task, boards, log, trials, strategy, per_iter, seed, progress,
                             f"[{i + 1}/{len(tasks)}] "))
    return out


def summary(results: list[TaskResult]) -> str:
    """What `bctvm tune` prints: per task default and best cycles and trials; the totals
    weighted by the groups that share each task."""
    lines = [f"{'task':<28} {'groups':>6} {'default':>12} {'best':>12} {'x':>6} "
             f"{'trials':>7} {'new':>4}"]
    tot_d = tot_b = 0.0
    for r in results:
        n = max(1, len(r.task.groups))
        ratio = r.best_cycles / r.default_cycles if math.isfinite(r.default_cycles) else math.nan
        lines.append(f"{r.task.name[:28]:<28} {n:>6} {_fmt(r.default_cycles):>12} "
                     f"{_fmt(r.best_cycles):>12} {ratio:>6.3f} {r.trials_after:>7} "
                     f"{r.measured:>4}")
        tot_d += n * r.default_cycles
        tot_b += n * r.best_cycles
    lines.append(f"tuned groups summed: default {_fmt(tot_d)} cycles, tuned {_fmt(tot_b)} "
                 f"cycles ({tot_b / tot_d:.3f}x)" if tot_d and math.isfinite(tot_d) else
                 "model: no default measurement")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return f"{int(v):,}" if math.isfinite(v) else "failed"
