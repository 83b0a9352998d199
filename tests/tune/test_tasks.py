"""Tasks: groups with the same structure are one task, whatever their names and shifts."""

from __future__ import annotations

import dataclasses

from bctvm.tune import task_of
from bctvm.tune.tasks import dedupe, task_from_workload
from schedules.layer import LayerSpec


def _spec(**kw):
    return LayerSpec("a", 64, 64, 16, 16, (8, 8), relu=True, **kw)


def test_names_and_shifts_of_one_class_make_one_task(zcu102):
    a = task_of(zcu102, [_spec(shift=9), _spec(shift=7, residual_shift=-2)], [None, "input"],
                "g0")
    b = task_of(zcu102, [dataclasses.replace(_spec(shift=11), name="other"),
                         _spec(shift=3, residual_shift=-5)], [None, "input"], "g4")
    (t,) = dedupe([a, b])
    assert t.groups == ["g0", "g4"]
    assert task_from_workload(t.workload()).to_json() == t.to_json()


def test_shifts_that_change_the_alu_steps_make_other_tasks(zcu102):
    base = task_of(zcu102, [_spec(shift=9, pool=True)], [None])
    wide = task_of(zcu102, [_spec(shift=20, pool=True)], [None])  # 2^19 needs a split
    none = task_of(zcu102, [_spec(shift=0, pool=True)], [None])
    left = task_of(zcu102, [_spec(shift=-1, pool=True)], [None])
    assert len(dedupe([base, wide, none, left])) == 4


def test_tune_names_the_programs_it_leaves_untuned(tmp_path):
    """A branch group is no task: `tune` says so and leaves it out of its totals."""
    from bctvm.tune.cli_tune import run_tune

    text = run_tune("block_resnet18", board="zcu102", trials=1, log=str(tmp_path / "log"),
                    strategy="random", local=True, block_size=8,
                    input_shape=(1, 3, 64, 64), progress=False)
    untuned = [line for line in text.splitlines() if line.startswith("not tuned")]
    assert len(untuned) == 1 and "layer4.1.conv2" in untuned[0], text
    assert "tuned groups summed" in text
