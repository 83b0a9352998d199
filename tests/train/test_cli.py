"""`bctvm data | train | eval` end to end through the console entry cli.main() (real exit
codes; one test runs the installed script in a subprocess), on a small exported digits tree
(10 images per class and split) so it stays fast."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bctvm.train.checkpoint import load_checkpoint
from tests.cli_runner import cli_output


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def bctvm(*args, check_rc=None):
    """Run the console entry cli.main() in this process (saves a torch import per call) and
    return its exit code and output; the exit-code mapping under test lives in main()."""
    res = Result(*cli_output(*args))
    if check_rc is not None:
        assert res.returncode == check_rc, (res.stdout, res.stderr[-2000:])
    return res


def test_console_script_maps_bad_input_to_exit_2(tmp_path):
    exe = Path(sys.executable).with_name("bctvm")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli"]
    res = subprocess.run(cmd + ["eval", str(tmp_path / "none.pt"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {tmp_path / 'none.pt'}: checkpoint file does not exist"


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    res = bctvm("data", "digits", root, "--size", 32, "--per-class", 10, check_rc=0)
    assert "train: 100 images, val: 100 images" in res.stdout
    return root


@pytest.fixture(scope="module")
def trained(small_digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = bctvm("train", small_digits, "--arch", "block_resnet18", "--block-size", 2,
                "--type", "hierarchical", "--padding", "replicate", "--epochs", 1,
                "--lr", 0.02, "--batch-size", 25, "--out", out, check_rc=0)
    return out, res


def test_data_export_tree(small_digits):
    assert sorted(p.name for p in (small_digits / "train").iterdir()) == [str(i) for i in range(10)]
    assert len(list((small_digits / "val" / "7").glob("*.png"))) == 10


def test_train_writes_checkpoints_and_prints_accuracy(trained):
    out, res = trained
    assert "epoch 1:" in res.stdout and "top-5" in res.stdout
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1
    assert ckpt["arch"] == {"name": "block_resnet18", "block_size": 2, "type": "hierarchical",
                            "padding_mode": "replicate", "num_classes": 10, "input_size": 32,
                            "channels": 3}
    assert ckpt["classes"] == [str(i) for i in range(10)]


def test_eval_rebuilds_the_model_and_matches_training(trained, small_digits):
    out, _ = trained
    res = bctvm("eval", out / "last.pt", small_digits, check_rc=0)
    val_top1 = load_checkpoint(out / "last.pt")["history"][-1]["val_top1"]
    assert f"val: top-1 {val_top1:.2f}%" in res.stdout
    assert "(100 images)" in res.stdout
    res = bctvm("eval", out / "last.pt", small_digits, "--split", "train", check_rc=0)
    assert "train: top-1" in res.stdout


def test_resume_continues_from_the_saved_epoch(trained, small_digits, tmp_path):
    out, _ = trained
    first = load_checkpoint(out / "last.pt")
    res = bctvm("train", small_digits, "--epochs", 2, "--resume", out / "last.pt",
                "--out", tmp_path, check_rc=0)
    assert "epoch 2:" in res.stdout and "epoch 1:" not in res.stdout
    second = load_checkpoint(tmp_path / "last.pt")
    assert second["epoch"] == 2 and len(second["history"]) == 2
    assert second["arch"] == first["arch"]  # options not given came from the checkpoint
    assert second["history"][0] == first["history"][0]
    changed = [k for k in first["model"] if not torch.equal(first["model"][k],
                                                             second["model"][k])]
    assert changed  # the second epoch trained the weights further
    # a different architecture cannot continue the run ...
    res = bctvm("train", small_digits, "--epochs", 3, "--resume", out / "last.pt",
                "--padding", "constant", "--out", tmp_path / "x", check_rc=2)
    assert "--padding 'constant'" in res.stderr and "--reset-optimizer" in res.stderr
    # ... but may fine-tune from its weights with a fresh optimizer
    res = bctvm("train", small_digits, "--epochs", 1, "--resume", out / "last.pt",
                "--padding", "constant", "--reset-optimizer", "--out", tmp_path / "ft",
                check_rc=0)
    assert load_checkpoint(tmp_path / "ft" / "last.pt")["arch"]["padding_mode"] == "constant"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "{tmp}/missing", "--epochs", "1"], "data directory does not exist"),
        (["train", "{data}", "--arch", "block_nope", "--epochs", "1", "--out", "{tmp}"],
         "unknown arch 'block_nope'"),
        (["train", "{data}", "--block-size", "5", "--epochs", "1", "--out", "{tmp}"],
         "layer 'conv1': block size 5x5"),
        (["train", "{data}", "--type", "diagonal", "--out", "{tmp}"], "--type"),
        (["train", "{data}", "--epochs", "0", "--out", "{tmp}"], "--epochs"),
        (["eval", "{tmp}/junk.pt", "{data}"], "junk.pt: not a readable torch checkpoint"),
        (["eval", "{tmp}/missing.pt", "{data}"], "missing.pt: checkpoint file does not exist"),
        (["eval", "{ckpt}", "{data}", "--split", "test"], "test: image folder does not exist"),
        (["data", "cifar", "{tmp}/c"], "unknown dataset 'cifar'"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(args, message, small_digits, trained, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint")
    subs = {"tmp": tmp_path, "data": small_digits, "ckpt": trained[0] / "last.pt"}
    res = bctvm(*[a.format(**subs) for a in args])
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], res.stderr[-2000:]
