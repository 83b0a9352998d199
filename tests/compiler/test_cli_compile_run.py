"""`bctvm compile -o DIR` and `bctvm run DIR`: outputs, report, and one-line errors with the
documented exit codes (2 bad input, 1 validation mismatch)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from .conftest import USER_MODELS, expect_exit2, reseal, run_cli

SRC = f"{USER_MODELS}:resdw"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """One compiled artifact (the user net on zcu102); tests copy it before changing it."""
    d = tmp_path_factory.mktemp("cli") / "art"
    mp = pytest.MonkeyPatch()
    try:
        assert run_cli(mp, "compile", SRC, "--board", "zcu102", "--input-shape", "1,3,32,32",
                       "-o", d) == 0
    finally:
        mp.undo()
    return d


@pytest.fixture
def copy(artifact, tmp_path):
    d = tmp_path / "art"
    shutil.copytree(artifact, d)
    return d


def test_compile_writes_a_self_contained_artifact(artifact, capsys):
    m = json.loads((artifact / "manifest.json").read_text())
    assert m["board"] == "zcu102" and m["mode"] == "fused"
    assert m["input"]["shape"] == [1, 3, 32, 32]
    assert m["versions"]["tvm"] and m["versions"]["bctvm"]
    for f in ("host.so", "qnet.json", "qnet.npz", "model.pt2"):
        assert (artifact / f).is_file()
    for g in m["groups"]:
        assert (artifact / g["dram"]).stat().st_size == g["dram_bytes"]
        for p in g["programs"]:
            assert (artifact / p["file"]).stat().st_size == 16 * p["instructions"]


def test_run_writes_output_and_report(copy, tmp_path, monkeypatch, capsys):
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = run_cli(monkeypatch, "run", copy, "--input", tmp_path / "x.npy",
                   "--output", tmp_path / "y.npy", "--report", tmp_path / "r.json")
    assert code == 0
    assert "bit-exact vs the integer reference: True" in capsys.readouterr().out
    y = np.load(tmp_path / "y.npy")
    rep = json.loads((tmp_path / "r.json").read_text())
    assert y.shape == (1, 7) and y.dtype == np.float32
    assert rep["validation"]["bit_exact"] and rep["validation"]["float_model"]["max_abs_err"] < 0.1
    # the output is the float model's up to int8 quantization
    ep = torch.export.load(str(copy / "model.pt2"))
    with torch.no_grad():
        ref = ep.module()(torch.from_numpy(x)).numpy()
    assert np.abs(y - ref).max() == pytest.approx(rep["validation"]["float_model"]["max_abs_err"])


def test_a_corrupted_weight_is_a_validation_mismatch(copy, tmp_path, monkeypatch, capsys):
    m = json.loads((copy / "manifest.json").read_text())
    g = m["groups"][0]
    w = g["regions"]["l0_weight"]
    img = np.fromfile(copy / g["dram"], dtype=np.uint8)
    img[w["start"]:w["start"] + w["nbytes"]] ^= 0x41  # flip bits in every weight byte
    img.tofile(copy / g["dram"])
    reseal(copy)  # digests re-recorded: the run itself must catch the change
    code = run_cli(monkeypatch, "run", copy, "--report", tmp_path / "r.json")
    assert code == 1
    assert "differs from the integer reference" in capsys.readouterr().err
    rep = json.loads((tmp_path / "r.json").read_text())  # the report is written first
    assert rep["validation"]["bit_exact"] is False and rep["validation"]["max_abs_err"] > 0


def test_bad_inputs_exit_2(copy, tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "shape.npy", np.zeros((1, 3, 16, 16), np.float32))
    np.save(tmp_path / "dtype.npy", np.zeros((1, 3, 32, 32), np.float64))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    expect_exit2(monkeypatch, capsys, ["run", copy, "--input", tmp_path / "shape.npy"],
                  "shape (1, 3, 16, 16)", "(1, 3, 32, 32)")
    expect_exit2(monkeypatch, capsys, ["run", copy, "--input", tmp_path / "dtype.npy"],
                  "float64")
    expect_exit2(monkeypatch, capsys, ["run", copy, "--input", tmp_path / "junk.npy"],
                  "not a .npy")
    expect_exit2(monkeypatch, capsys, ["run", copy, "--input", tmp_path / "none.npy"],
                  "no such file")


def test_missing_or_corrupt_artifacts_exit_2(copy, tmp_path, monkeypatch, capsys):
    expect_exit2(monkeypatch, capsys, ["run", tmp_path / "nowhere"], "not a directory")
    m = json.loads((copy / "manifest.json").read_text())
    prog = copy / m["groups"][0]["programs"][0]["file"]
    data = prog.read_bytes()
    prog.write_bytes(data[:-8])
    expect_exit2(monkeypatch, capsys, ["run", copy], prog.name, "bytes")
    prog.unlink()
    expect_exit2(monkeypatch, capsys, ["run", copy], prog.name, "missing")
    prog.write_bytes(data)
    (copy / m["groups"][0]["dram"]).write_bytes(b"\0" * 10)
    expect_exit2(monkeypatch, capsys, ["run", copy], m["groups"][0]["dram"], "bytes")
    (copy / "manifest.json").write_text("{ not json")
    expect_exit2(monkeypatch, capsys, ["run", copy], "manifest.json is corrupt")
    (copy / "manifest.json").unlink()
    expect_exit2(monkeypatch, capsys, ["run", copy], "manifest.json is missing")


NETS = '''
import torch
from torch import nn
from bctvm.models import BlockConv2d

def wide_dw():
    # a depthwise 512-channel 3x3 conv over a whole 32x32 map: the schedule keeps every
    # input tile of three rows on chip (32 x 3 x 34 > 2048 on pynq), nothing to split per pass
    return nn.Sequential(BlockConv2d(3, 512, 3, 0, padding=1), nn.ReLU(),
                         BlockConv2d(512, 512, 3, 0, padding=1, groups=512))


def sigmoid():
    return nn.Sequential(BlockConv2d(3, 16, 3, 8, padding=1), nn.Sigmoid(),
                         BlockConv2d(16, 16, 3, 8, padding=1))
'''


def test_compile_errors_exit_2(tmp_path, monkeypatch, capsys):
    nets = tmp_path / "nets.py"
    nets.write_text(NETS)
    expect_exit2(monkeypatch, capsys, ["compile", SRC, "--input-shape", "1,3,32,32"], "-o DIR")
    expect_exit2(monkeypatch, capsys, ["compile", f"{nets}:sigmoid", "--input-shape",
                                        "1,3,32,32", "-o", tmp_path / "a"], "igmoid")
    expect_exit2(monkeypatch, capsys, ["compile", f"{nets}:wide_dw", "--input-shape",
                                        "1,3,32,32", "-o", tmp_path / "w"],
                  "group g0", "layer 2", "inp buffer", "'pynq'")
    expect_exit2(monkeypatch, capsys, ["compile", "block_resnet18", "--input-shape",
                                        "1,3,40,40", "--block-size", "16", "-o", tmp_path / "b"],
                  "does not divide")
    expect_exit2(monkeypatch, capsys, ["compile", "block_resnet18", "--mode", "streaming",
                                        "--input-shape", "1,3,32,32", "--block-size", "8",
                                        "-o", tmp_path / "c"], "--mode")


def test_pt2_model_calibrates_from_its_graph_or_uses_a_saved_qnet(tmp_path, monkeypatch,
                                                                   capsys):
    from bctvm.quant import calibrate
    from bctvm.quant.serialize import save_qnet

    from .user_models import resdw

    model = resdw()
    x = torch.randn(1, 3, 32, 32)
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "net.pt2"))
    save_qnet(calibrate(model, x, progress=False), tmp_path / "q")
    # one capture: the exported program is all calibration needs
    assert run_cli(monkeypatch, "plan", tmp_path / "net.pt2", "--input-shape", "1,3,32,32") == 0
    expect_exit2(monkeypatch, capsys, ["plan", tmp_path / "net.pt2", "--block-size", "8"],
                  "do not apply to an exported program")
    assert run_cli(monkeypatch, "compile", tmp_path / "net.pt2", "--input-shape", "1,3,32,32",
                   "--qnet", tmp_path / "q", "--board", "zcu102", "-o", tmp_path / "b") == 0
    assert run_cli(monkeypatch, "run", tmp_path / "b") == 0
    assert "bit-exact vs the integer reference: True" in capsys.readouterr().out


def test_host_fallback_runs_a_layer_that_cannot_fit_on_the_host(tmp_path, monkeypatch, capsys):
    nets = tmp_path / "nets.py"
    nets.write_text(NETS + """

def wide_then_small():
    # a depthwise 512-channel layer on a whole 32x32 map cannot fit pynq's input buffer
    return nn.Sequential(BlockConv2d(3, 512, 3, 0, padding=1), nn.ReLU(),
                         BlockConv2d(512, 512, 3, 0, padding=1, groups=512), nn.ReLU(),
                         BlockConv2d(512, 16, 3, 8, padding=1))
""")
    out = tmp_path / "a"
    assert run_cli(monkeypatch, "compile", f"{nets}:wide_then_small", "--input-shape",
                   "1,3,32,32", "--host-fallback", "-o", out) == 0
    assert "warning: layer 2 runs on the host" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert "inp buffer" in m["host_fallbacks"]["2"] and "2" in m["host_layers"]
    assert [g["layers"] for g in m["groups"]] == [["4"]]
    assert run_cli(monkeypatch, "run", out) == 0
    assert "bit-exact vs the integer reference: True" in capsys.readouterr().out

