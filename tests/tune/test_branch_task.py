"""A branch group (a downsample conv beside conv1 on the same resident block) is a tuning
task: tuned, and applied by `compile --tuning-log`, bit-exact.

block_resnet18 at 64x64, block 8, on zcu102 is 3 VTA groups; g2 (layer2.0.conv1 ..
layer4.1.conv2, 14 layers) runs each stage's downsample conv beside its conv1 on the same
resident block."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bctvm.tune.cli_tune import run_tune
from bctvm.tune.log import RECORDS, WORKLOADS, _load_workloads
from tests.cli_runner import run_cli

MODEL = dict(board="zcu102", block_size=8, input_shape=(1, 3, 64, 64))
CLI = ["--board", "zcu102", "--block-size", 8, "--input-shape", "1,3,64,64"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """(summary text, log dir) of a 3-trial random tune on the local board."""
    log = tmp_path_factory.mktemp("branch") / "log"
    text = run_tune("block_resnet18", trials=3, per_iter=2, log=str(log), strategy="random",
                    local=True, progress=False, **MODEL)
    return text, log


def _branch_workload(log) -> tuple[int, object]:
    (found,) = [(i, wl[0]) for i, wl in enumerate(_load_workloads(log / WORKLOADS))
                if wl is not None and wl[0] is not None and not wl[0].chain]
    return found


def test_the_branch_group_is_a_task_and_is_measured(tuned):
    text, log = tuned
    assert not [line for line in text.splitlines() if line.startswith("not tuned")], text
    assert text.startswith("3 distinct tasks")
    assert "layer2.0.conv1 +13" in text and "tuned groups summed" in text
    idx, task = _branch_workload(log)
    assert len(set(task.sources)) < len(task.sources)  # a downsample beside a conv1
    costs = [json.loads(line)[1][1] for line in (log / RECORDS).read_text().splitlines()
             if json.loads(line)[0] == idx]
    assert len(costs) == 3 and min(min(c) for c in costs) < 1e9


def test_compile_applies_the_branch_groups_record_bit_exact(tuned, tmp_path, capsys):
    """The log without the default's record: the best is a sampled point, not the plan's."""
    from bctvm.runtime import ModelRunner, build_report, load_artifact
    from bctvm.tune import TuningLog

    _, src = tuned
    log = tmp_path / "log"
    log.mkdir()
    (log / WORKLOADS).write_bytes((src / WORKLOADS).read_bytes())
    idx, task = _branch_workload(src)
    lines = (src / RECORDS).read_text().splitlines()
    first = next(n for n, line in enumerate(lines) if json.loads(line)[0] == idx)
    (log / RECORDS).write_text("".join(line + "\n" for n, line in enumerate(lines)
                                       if n != first))  # the default knobs' record
    best = TuningLog(log).best(task)
    if best is None:
        pytest.fail("no sampled point of the branch group was measured")
    out = tmp_path / "art"
    assert run_cli(pytest.MonkeyPatch(), "compile", "block_resnet18", *CLI,
                   "--tuning-log", log, "-o", out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (g,) = [g for g in manifest["groups"] if g["layers"][0] == "layer2.0.conv1"]
    assert g["knobs"]["source"] == "tuning_log"
    assert g["knobs"]["values"] == best.values and g["knobs"]["log_cycles"] == best.cycles
    art = load_artifact(out)
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    rep = build_report(art, ModelRunner(art).run(x), x)
    assert rep["validation"]["bit_exact"] is True
    (r,) = [r for r in rep["groups"] if r["name"] == g["name"]]
    assert r["cycles"] == best.cycles  # the cycles the tuner logged
