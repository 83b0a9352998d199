"""The search's parts: the fit rule of the search, the cost model's features, and XGBModel
predicting from them within a short run (measured on the local simulator board)."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from bctvm.tune import LocalBoards
from bctvm.tune.builder import build_candidate
from bctvm.tune.features import knob_features, width
from bctvm.tune.runner import measure_artifact
from bctvm.tune.search import FitRule
from bctvm.tune.tune import XGB_WARMUP, _default_knobs, _strategy, _tune_context

from .conftest import small_task


def _values(task, rec) -> dict:
    sch = s_tir.Schedule(task.workload())
    rec.trace.apply_to_schedule(sch, remove_postproc=True)
    return task.space.values_of(sch)


def _valid_samples(space, n: int, seed: int = 0) -> list[dict]:
    rng, out, seen = random.Random(seed), [], set()
    while len(out) < n:
        v = {k.name: rng.choice(k.values) for k in space.knobs}
        key = tuple(sorted(v.items()))
        if key not in seen and space.check(v, allocator=False) is None:
            seen.add(key)
            out.append(v)
    return out


@pytest.fixture(scope="module")
def measured(zcu102):
    """(task, [(knob values, board cycles)]) for 16 distinct fitting samples."""
    task = small_task(zcu102)
    boards = LocalBoards(zcu102)
    out = []
    for v in _valid_samples(task.space, 16):
        with tempfile.TemporaryDirectory() as d:
            out.append((v, measure_artifact(boards, str(build_candidate(task, v, Path(d))))))
    return task, out


def test_the_search_fit_rule_refuses_what_the_footprint_model_refuses(zcu102):
    task = small_task(zcu102)
    space = task.space
    rule = FitRule(space)
    good = space.from_knobs(_default_knobs(task))
    bad = dict(good, blocks_inside=True, **{"l0.sub_rows": 4})  # loop orders that exclude
    assert space.check(bad, allocator=False) is not None  # each other
    assert not rule.apply(space.sample(s_tir.Schedule(task.workload()), bad))
    assert rule.apply(space.sample(s_tir.Schedule(task.workload()), good))
    assert space.check(good) is None  # with the allocator too


def test_features_have_one_width_and_tell_samples_apart(measured):
    task, samples = measured
    rows = [knob_features(task.space, v) for v, _ in samples]
    assert {len(r) for r in rows} == {width(task.space)}
    assert len({r.tobytes() for r in rows}) == len(rows)
    assert all(r[sum(2 if k.kind == "tile" else 1 for k in task.space.knobs)] == 1.0
               for r in rows)  # every sample resolves


def test_xgboost_predicts_from_a_few_measurements(measured):
    """After XGB_WARMUP measurements the model's scores are predictions (the same twice, not
    MetaSchedule's random warm-up scores) and rank the measured samples by their cycles."""
    task, samples = measured
    assert XGB_WARMUP <= len(samples)
    _, make_model = _strategy("evolutionary", 0)
    model = make_model(task.space)
    mod = task.workload()
    ctx = _tune_context(mod, ms.space_generator.ScheduleFn(task.space.sample, sch_rules=[],
                                                           postprocs=[], mutator_probs={}),
                        ms.search_strategy.ReplayTrace(), task.name, 0)
    args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    cands = [ms.MeasureCandidate(task.space.sample(s_tir.Schedule(mod), v), args)
             for v, _ in samples]
    model.update(ctx, cands, [ms.runner.RunnerResult([float(c)], None) for _, c in samples])
    a, b = model.predict(ctx, cands), model.predict(ctx, cands)
    np.testing.assert_array_equal(a, b)
    cycles = np.array([c for _, c in samples], dtype=float)
    rank = np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(-cycles)))[0, 1]
    assert rank > 0.8, (a, cycles)


@pytest.mark.parametrize("strategy", ["random", "evolutionary"])
def test_seeds_give_other_searches_and_no_point_is_measured_twice(zcu102, tmp_path, strategy):
    from bctvm.tune import TuningLog, tune_task

    task = small_task(zcu102)
    runs = []
    for seed in (0, 1):
        log = TuningLog(tmp_path / f"{strategy}{seed}")
        tune_task(task, LocalBoards(zcu102), log, trials=5, strategy=strategy, per_iter=4,
                  seed=seed, progress=False)
        points = {tuple(sorted(_values(task, rec).items())) for rec in log.records(task)}
        assert len(points) == 5
        runs.append(points)
    default = tuple(sorted(task.space.from_knobs(_default_knobs(task)).items()))
    assert default in runs[0] and default in runs[1]  # trial 1 of both
    assert runs[0] != runs[1]
