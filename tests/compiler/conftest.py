"""Compiler tests: compile models once per module and run the artifacts on the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.cli_runner import run_cli  # noqa: F401 (used by the tests here)

USER_MODELS = Path(__file__).with_name("user_models.py")


def compile_and_run(out_dir, source, *, board, mode="fused", size=32, seed=0, **kw):
    """(manifest, report, RunResult) of `source` compiled into out_dir and run once."""
    from bctvm.compiler import compile_model
    from bctvm.runtime import ModelRunner, build_report, load_artifact

    manifest = compile_model(source, out_dir=out_dir, board=board, mode=mode,
                             input_shape=(1, 3, size, size), progress=False, **kw)
    art = load_artifact(out_dir)
    x = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
    result = ModelRunner(art).run(x)
    return manifest, build_report(art, result, x), result


def expect_exit2(monkeypatch, capsys, args, *words):
    """Run `bctvm ARGS`: exit code 2, one `error:` line holding every word, no traceback."""
    code = run_cli(monkeypatch, *args)
    err = capsys.readouterr().err
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error:") and "Traceback" not in err
    for w in words:
        assert w in line, line


def reseal(art_dir) -> dict:
    """Re-record every file's size and SHA-256 in the manifest after a test changed a file
    on purpose (what someone who edits an artifact would do); returns the manifest."""
    import json

    from bctvm.runtime.integrity import MANIFEST, files_digest, record_files

    path = Path(art_dir) / MANIFEST
    m = json.loads(path.read_text())
    m["files"] = record_files(art_dir)
    m["digest"] = files_digest(m["files"])
    path.write_text(json.dumps(m, indent=1))
    return m


@pytest.fixture(scope="session")
def user_models() -> Path:
    return USER_MODELS
