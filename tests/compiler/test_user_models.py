"""Models as users have them (tests/compiler/user_repo/): a `_ConvNd` block conv in the style
of a research repository with Python branches on input.shape, a factory file importing a
sibling module, ReLU6 / clamp, an average pool between convs, identity / dropout, a
`view(-1, C)` head, a DataParallel checkpoint; a plain CNN converted by --block-size.
Each compiles, runs bit-exact against the integer reference, and agrees with the float model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import expect_exit2, run_cli

REPO = Path(__file__).with_name("user_repo")
NETS = REPO / "nets.py"


def _nets():
    sys.path.insert(0, str(REPO))
    try:
        import nets
    finally:
        sys.path.remove(str(REPO))
    return nets


def _save_training_checkpoint(model, path, **extra):
    """What a training script writes: DataParallel keys, the optimizer and its class."""
    state = {"module." + k: v for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save({"epoch": 7, "arch": type(model).__name__, "state_dict": state,
                "optimizer_state_dict": opt.state_dict(), "optimizer_type": torch.optim.SGD,
                "extras": {"best_acc1": 61.5}, **extra}, path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of BlockNet with other weights than the factory's, and that model."""
    d = tmp_path_factory.mktemp("ckpt")
    model = _nets().block_net_other_seed()
    _save_training_checkpoint(model, d / "model_best.pth.tar")
    return d / "model_best.pth.tar", model


def _host_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("host: ")]


def test_repo_style_block_net_with_a_checkpoint_compiles_and_runs_bit_exact(
        trained, tmp_path, monkeypatch, capsys):
    ckpt, model = trained
    args = [f"{NETS}:block_net", "--checkpoint", ckpt, "--input-shape", "1,3,32,32"]
    assert run_cli(monkeypatch, "compile", *args, "-o", tmp_path / "a") == 0
    compiled = capsys.readouterr().out
    assert run_cli(monkeypatch, "plan", *args) == 0
    planned = capsys.readouterr().out
    # one function gives the host layers and their reasons to both commands
    assert _host_lines(compiled) == _host_lines(planned) == [
        "host: stem.0: stem: 3 input channels (fills 3 of 16 GEMM lanes; --stem vta runs it "
        "on VTA)",
        "host: pool: 2x2/2 average pool: integer average (divide by the window) runs on the "
        "host; the VTA group is split there"]
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["host_layers"] == ["stem.0", "pool"]
    assert [g["layers"] for g in m["groups"]] == [["layer1.conv1"], ["layer1.conv2"],
                                                 ["down.0"], ["conv3"]]
    q = json.loads((tmp_path / "a" / "qnet.json").read_text())
    conv3 = next(layer for layer in q["layers"] if layer["name"] == "conv3")
    e = conv3["e_y"]  # clamp(-0.25, 0.5): the bounds on the int8 grid, run by the ALU
    assert (conv3["clip_lo"], conv3["clip_hi"]) == (round(-0.25 * 2**e), min(127, 2**(e - 1)))
    assert conv3["clip_lo"] > -128
    down = next(layer for layer in q["layers"] if layer["name"] == "down.0")
    assert down["pool"] and down["padding_mode"] == "reflect" and down["block"] == [8, 8]

    x = np.random.default_rng(4).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert run_cli(monkeypatch, "run", tmp_path / "a", "--input", tmp_path / "x.npy",
                   "--output", tmp_path / "y.npy", "--report", tmp_path / "r.json") == 0
    rep = json.loads((tmp_path / "r.json").read_text())["validation"]
    assert rep["bit_exact"] and rep["float_model"]["top1_agreement"] == 1.0
    # the checkpoint's weights were compiled (not the factory's own)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
        factory = _nets().block_net()(torch.from_numpy(x)).numpy()
    y = np.load(tmp_path / "y.npy")
    assert y.argmax() == want.argmax()
    assert np.abs(y - want).max() < 0.1 * np.abs(want).max() < np.abs(factory - want).max()


def test_plain_net_is_converted_by_block_size_and_runs_bit_exact(tmp_path, monkeypatch,
                                                                capsys):
    out = tmp_path / "p"
    assert run_cli(monkeypatch, "compile", f"{NETS}:plain_net", "--block-size", "8",
                   "--padding", "replicate", "--input-shape", "1,3,32,32", "--board", "zcu102",
                   "-o", out) == 0
    q = json.loads((out / "qnet.json").read_text())
    convs = [layer for layer in q["layers"] if layer["kind"] == "conv"]
    assert [c["block"] for c in convs] == [[8, 8], [8, 8], [8, 8]]
    assert all(c["padding_mode"] == "replicate" for c in convs)
    assert convs[1]["clip_lo"] == 0 and not convs[1]["relu"]  # ReLU6
    m = json.loads((out / "manifest.json").read_text())
    assert m["host_layers"] == ["features.0"]  # the stem; the max-pool folds into features.3
    capsys.readouterr()
    assert run_cli(monkeypatch, "run", out, "--report", tmp_path / "r.json") == 0
    rep = json.loads((tmp_path / "r.json").read_text())["validation"]
    assert rep["bit_exact"] and rep["float_model"]["top1_agreement"] == 1.0


def test_block_options_on_a_model_with_its_own_block_convs_exit_2(tmp_path, monkeypatch,
                                                                  capsys):
    expect_exit2(monkeypatch, capsys, ["plan", f"{NETS}:block_net", "--block-size", "4",
                                        "--input-shape", "1,3,32,32"],
                  "block_net", "block convs of its own")


def test_unsupported_op_names_the_op_and_module_path(monkeypatch, capsys):
    expect_exit2(monkeypatch, capsys, ["plan", f"{NETS}:gelu_net", "--input-shape",
                                        "1,3,32,32"], "gelu (GELU)", "layer 'act'", "nets.py")


def test_checkpoint_of_another_architecture_names_the_first_key(tmp_path, monkeypatch,
                                                                capsys):
    _save_training_checkpoint(_nets().plain_net(), tmp_path / "plain.pth")
    expect_exit2(monkeypatch, capsys, ["plan", f"{NETS}:block_net", "--checkpoint",
                                        tmp_path / "plain.pth", "--input-shape", "1,3,32,32"],
                  "missing key 'stem.0.weight'", "features.0.weight")
    model = _nets().block_net()
    state = model.state_dict()
    state["fc2.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")  # a bare state dict with one key too many
    expect_exit2(monkeypatch, capsys, ["plan", f"{NETS}:block_net", "--checkpoint",
                                        tmp_path / "extra.pt", "--input-shape", "1,3,32,32"],
                  "unexpected key 'fc2.weight'")


def test_checkpoint_that_needs_code_to_load_is_refused(tmp_path, monkeypatch, capsys):
    model = _nets().block_net()
    _save_training_checkpoint(model, tmp_path / "args.pth",
                              args=argparse.Namespace(lr=0.1))  # not a torch.optim class
    expect_exit2(monkeypatch, capsys, ["plan", f"{NETS}:block_net", "--checkpoint",
                                        tmp_path / "args.pth", "--input-shape", "1,3,32,32"],
                  "args.pth", "without running code")
    expect_exit2(monkeypatch, capsys, ["plan", f"{NETS}:block_net", "--checkpoint",
                                        tmp_path / "none.pth"], "checkpoint not found")


def test_read_state_dict_accepts_bare_and_wrapped_dicts(trained, tmp_path):
    from bctvm.models.checkpoint import load_checkpoint, read_state_dict

    ckpt, model = trained
    state = read_state_dict(ckpt)
    assert list(state) == list(model.state_dict())  # "module." stripped, order kept
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    fresh = load_checkpoint(_nets().block_net(), tmp_path / "bare.pt")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                  model.state_dict().values()))


def test_a_users_own_block_conv_is_recognised_by_what_it_computes(monkeypatch, capsys):
    from bctvm.quant import capture

    plan = capture(_nets().tiled_net(), (3, 16, 16))
    assert [lp.name for lp in plan.layers] == ["0", "2"]
    from relay_passes import ops
    blocks = [ops.attrs_dict(plan.values[lp.vars["conv"]])["block"] for lp in plan.layers]
    assert blocks == [(4, 4), (4, 4)]
    expect_exit2(monkeypatch, capsys, ["plan", f"{NETS}:tiled_net", "--block-size", "8",
                                        "--input-shape", "1,3,16,16"], "block convs of its own")
