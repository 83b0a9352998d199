"""`bctvm tune` then `bctvm compile --tuning-log`: the best knobs per group, bit-exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_runner import run_cli
from tests.compiler.conftest import USER_MODELS

MODEL = f"{USER_MODELS}:resdw"
SHAPE = "1,3,32,32"


@pytest.fixture(scope="module")
def tune_log(tmp_path_factory):
    """resdw at 32x32 on zcu102 (one 5-layer task) tuned for 3 trials on the local board."""
    mp = pytest.MonkeyPatch()
    d = tmp_path_factory.mktemp("tune") / "log"
    try:
        assert run_cli(mp, "tune", MODEL, "--board", "zcu102", "--input-shape", SHAPE,
                       "--trials", 3, "--per-iter", 2, "--local", "--log", d) == 0
    finally:
        mp.undo()
    return d


def test_compile_with_the_log_uses_the_best_record_and_is_bit_exact(tune_log, tmp_path,
                                                                     capsys):
    from bctvm.runtime import ModelRunner, build_report, load_artifact
    from bctvm.tune import TuningLog, extract_tasks

    out = tmp_path / "art"
    capsys.readouterr()
    assert run_cli(pytest.MonkeyPatch(), "compile", MODEL, "--board", "zcu102",
                   "--input-shape", SHAPE, "--tuning-log", tune_log, "-o", out) == 0
    assert "knobs: tuning_log" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    (g,) = [g for g in manifest["groups"] if len(g["layers"]) > 1]
    (task,) = extract_tasks(MODEL, board="zcu102", input_shape=(1, 3, 32, 32), progress=False)
    best = TuningLog(tune_log).best(task)
    assert g["knobs"]["source"] == "tuning_log"
    assert g["knobs"]["log_cycles"] == best.cycles and g["knobs"]["values"] == best.values
    art = load_artifact(out)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    result = ModelRunner(art).run(x)
    rep = build_report(art, result, x)
    assert rep["validation"]["bit_exact"] is True
    assert rep["groups"][0]["cycles"] == best.cycles  # the board cycles the tuner logged


def test_a_group_without_a_record_uses_default_knobs_and_says_so(tune_log, tmp_path, capsys):
    out = tmp_path / "art"
    capsys.readouterr()
    # at 16x16 the group is another task: the log has no record of it
    assert run_cli(pytest.MonkeyPatch(), "compile", MODEL, "--board", "zcu102",
                   "--input-shape", "1,3,16,16", "--tuning-log", tune_log, "-o", out) == 0
    assert "knobs: default (no record in the tuning log)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert {g["knobs"]["source"] for g in manifest["groups"]} == {"default"}


def test_tune_options_are_checked(tmp_path, capsys):
    mp = pytest.MonkeyPatch()
    assert run_cli(mp, "tune", MODEL, "--trials", 2, "--log", tmp_path / "l") == 2
    assert "exactly one of --rpc" in capsys.readouterr().err
    assert run_cli(mp, "tune", MODEL, "--trials", 2, "--log", tmp_path / "l",
                   "--tracker", "localhost", "--key", "k") == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert run_cli(mp, "compile", MODEL, "--tuning-log", tmp_path / "none", "-o",
                   tmp_path / "a") == 2
    assert "no such directory" in capsys.readouterr().err
