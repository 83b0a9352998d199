"""SIGINT / SIGTERM sent to real `bctvm compile` and `bctvm run` subprocesses once they are
busy: exit 130 / 143 with one line, and nothing half-written (no artifact, staging folder,
report or output), an existing artifact left as it was. Also: re-compiling replaces an
artifact as a whole, and `--force` / refusal of a foreign folder."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bctvm.errors import EXIT_SIGINT, EXIT_SIGTERM, BadInputError
from bctvm.outputs import staged_dir

from .conftest import COMPILE_ARGS, bctvm, manifest, one_error_line, popen

SIGNALS = [(signal.SIGINT, EXIT_SIGINT, "interrupted (SIGINT)"),
           (signal.SIGTERM, EXIT_SIGTERM, "terminated (SIGTERM)")]


def _signal_when(args, tmp: Path, busy, sig) -> tuple[int, str]:
    """Start `bctvm ARGS`, wait until busy(process, stderr so far) holds, send `sig`; return
    (exit code, stderr)."""
    err_path = tmp / "stderr.txt"
    with open(err_path, "w") as err:
        proc = popen(*args, stderr=err)
        try:
            deadline = time.monotonic() + 120
            while not busy(proc, err_path.read_text()):
                assert proc.poll() is None, "finished before it could be interrupted: " + \
                    err_path.read_text()
                assert time.monotonic() < deadline, "never became busy"
                time.sleep(0.02)
            proc.send_signal(sig)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, err_path.read_text()


def _compiling(proc, err: str) -> bool:
    return "passes" in err  # the pass pipeline's progress bar: imports are done


def _host_loaded(proc, err: str) -> bool:
    """The run has verified the artifact and loaded host.so (it is running the model)."""
    try:
        return "host.so" in Path(f"/proc/{proc.pid}/maps").read_text()
    except OSError:
        return False


def _leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("sig,code,words", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_interrupted_compile_leaves_no_artifact(tmp_path, sig, code, words):
    out = tmp_path / "new"
    got, err = _signal_when([*COMPILE_ARGS, "-o", out], tmp_path, _compiling, sig)
    assert got == code, err
    assert words in one_error_line(err)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_interrupted_recompile_keeps_the_old_artifact(artifact, tmp_path):
    import shutil

    out = tmp_path / "art"
    shutil.copytree(artifact, out)
    before = manifest(out)["digest"]
    got, err = _signal_when([*COMPILE_ARGS, "-o", out], tmp_path, _compiling, signal.SIGTERM)
    assert got == EXIT_SIGTERM, err
    assert manifest(out)["digest"] == before
    assert bctvm("verify", out).returncode == 0
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("sig,code,words", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_writes_no_report_or_output(artifact, tmp_path, sig, code, words):
    report, output = tmp_path / "r.json", tmp_path / "y.npy"
    got, err = _signal_when(["run", artifact, "--report", report, "--output", output],
                            tmp_path, _host_loaded, sig)
    assert got == code, err
    assert words in one_error_line(err)
    assert not report.exists() and not output.exists() and _leftovers(tmp_path) == []


def test_recompile_replaces_the_artifact_as_a_whole(artifact, tmp_path):
    import shutil

    out = tmp_path / "art"
    shutil.copytree(artifact, out)
    (out / "g9.p0.bin").write_bytes(b"\0" * 16)  # a file of no current artifact
    old = manifest(out)
    res = bctvm(*COMPILE_ARGS, "-o", out, timeout=300)
    assert res.returncode == 0, res.stderr
    new = manifest(out)
    assert not (out / "g9.p0.bin").exists()
    assert new["key"] != old["key"] and new["digest"] != old["digest"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*new["files"], "manifest.json"])
    assert _leftovers(tmp_path) == []


def test_a_foreign_folder_is_replaced_only_with_force(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(BadInputError, match="--force"):
        with staged_dir(mine):
            pass
    assert (mine / "notes.txt").read_text() == "keep"
    with pytest.raises(KeyboardInterrupt):  # an interrupt while staging: nothing changes
        with staged_dir(mine, force=True) as stage:
            (stage / "manifest.json").write_text("{}")
            raise KeyboardInterrupt
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert _leftovers(tmp_path) == []
    with staged_dir(mine, force=True) as stage:
        (stage / "manifest.json").write_text("{}")
    assert sorted(p.name for p in mine.iterdir()) == ["manifest.json"]
    assert _leftovers(tmp_path) == []
