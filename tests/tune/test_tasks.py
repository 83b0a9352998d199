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


def test_data_sources_are_part_of_a_branch_groups_identity(zcu102):
    """A layer reading the group input (a downsample beside conv1) makes another task than
    the chain of the same layers; a chain's identity has no sources (old logs stay valid)."""
    specs = [_spec(), _spec()]
    chain = task_of(zcu102, specs, [None, None])
    branch = task_of(zcu102, specs, [None, None], sources=["input", "input"])
    assert chain.chain and not branch.chain
    assert "sources" not in chain.to_json()
    assert len(dedupe([chain, branch])) == 2
    back = task_from_workload(branch.workload())
    assert back.sources == ["input", "input"] and back.to_json() == branch.to_json()
    assert branch.space.stages(branch.space.paths[0]).specs == branch.specs


def test_untuned_lines_name_the_segments():
    from bctvm.tune.cli_tune import untuned_text

    text = untuned_text([("g3", ["a", "b"])])
    assert text == ("\nnot tuned (several programs keep the planned knobs; not in the totals): "
                    "g3 a .. b (2 layers)")
