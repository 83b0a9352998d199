"""Integrity and failure-behaviour tests: ONE small artifact is compiled per session by a real
`bctvm compile` subprocess; every case works on its own copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compiler.conftest import USER_MODELS

BCTVM = [sys.executable, "-c", "import cli; cli.main()"]  # the console entry, this checkout
ROOT = Path(__file__).resolve().parents[2]
SOURCE = f"{USER_MODELS}:resdw"
COMPILE_ARGS = ["compile", SOURCE, "--board", "zcu102", "--input-shape", "1,3,32,32"]


def _env(debug: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("BCTVM_DEBUG", None)
    if debug:
        env["BCTVM_DEBUG"] = "1"
    return env


def bctvm(*args, timeout=120, debug: bool = False) -> subprocess.CompletedProcess:
    """Run `bctvm ARGS` in a subprocess (repo root on the path); captured text output."""
    return subprocess.run([*BCTVM, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=_env(debug))


def popen(*args, stderr) -> subprocess.Popen:
    """Start `bctvm ARGS` (stderr to the given file object)."""
    return subprocess.Popen([*BCTVM, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=stderr, cwd=ROOT, env=_env(), text=True)


@pytest.fixture(scope="session")
def artifact(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("integrity") / "art"
    res = bctvm(*COMPILE_ARGS, "-o", d, timeout=300)
    assert res.returncode == 0, res.stderr
    return d


@pytest.fixture
def art(artifact, tmp_path) -> Path:
    """A private copy of the session artifact."""
    d = tmp_path / "art"
    shutil.copytree(artifact, d)
    return d


def manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def write_manifest(d: Path, m: dict) -> None:
    (d / "manifest.json").write_text(json.dumps(m, indent=1))


def one_error_line(stderr: str) -> str:
    """The single `error: ...` line a failing command prints (no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), stderr
    return lines[-1]
