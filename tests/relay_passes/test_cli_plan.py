"""`bctvm plan` / `bctvm compile --plan`: the plan table, and one-line errors with exit 2."""

from __future__ import annotations

import pytest

from tests.cli_runner import run_cli

NETS = '''
import torch
from torch import nn
from bctvm.models import BlockConv2d

class Net(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.a = BlockConv2d(3, 16, 3, 4, padding=1)
        self.b = BlockConv2d(16, 16, 3, 4, stride=2, padding=1)
        self.act = act

    def forward(self, x):
        return self.b(self.act(self.a(x)))

def good():
    return Net(torch.relu)

def sigmoid():
    return Net(torch.sigmoid)
'''




@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return path


@pytest.mark.parametrize("command", [["plan"], ["compile", "--plan"]])
def test_plan_prints_the_table(monkeypatch, capsys, nets, command):
    code = run_cli(monkeypatch, *command, f"{nets}:good", "--board", "zcu102",
                   "--input-shape", "1,3,16,16", "--stem", "vta", "-v")
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Fused-group plan: good input 1x3x16x16 on zcu102")
    assert "onchip_reuse on: 1 groups, 2 VTA layers" in lines[0]
    assert lines[2].split()[:4] == ["grp", "grid", "n", "layers"]
    assert lines[3].split()[:5] == ["0", "4x4", "2", "a", ".."]
    assert any(line.strip().startswith("b ") and "pool" in line for line in lines)
    assert "estimated DRAM per inference" in out


def test_unsupported_op_is_exit_2_with_one_line(monkeypatch, capsys, nets):
    code = run_cli(monkeypatch, "plan", f"{nets}:sigmoid", "--input-shape", "1,3,16,16")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error:") and "sigmoid" in err[-1]


def test_bad_options_are_exit_2(monkeypatch, capsys, nets):
    assert run_cli(monkeypatch, "plan", f"{nets}:good", "--block-size", "8") == 2
    assert "block convs of its own" in capsys.readouterr().err
    assert run_cli(monkeypatch, "compile", "block_resnet18") == 2
    assert "-o DIR" in capsys.readouterr().err
    assert run_cli(monkeypatch, "plan", "block_resnet18", "--block-size", "5",
                   "--input-shape", "1,3,32,32") == 2
    assert "does not divide" in capsys.readouterr().err


ZOO_HOST = {
    # model, block size -> the host layers `plan` prints (name: reason), zcu102 at 32x32
    ("block_resnet18", "8"): ["conv1: stem: 3 input channels",
                              "maxpool: 2x2 max-pool not folded into a conv: 'conv1' pools "
                              "already"],
    ("block_vgg16", "4"): ["features.0: stem: 3 input channels"],
    ("block_mobilenet", "8"): ["features.0.0: stem: 3 input channels"],
}


@pytest.mark.parametrize("model, block", list(ZOO_HOST))
def test_plan_gives_every_host_layer_its_reason(monkeypatch, capsys, model, block):
    """`plan` prints bctvm.compiler.host_reasons, which `compile` prints and records too
    (tests/compiler/test_user_models.py compares both on one model): every integer layer the
    segments leave out, with its reason."""
    from bctvm.compiler.host_reasons import host_reasons
    from bctvm.compiler.plan import program_plan
    from relay_passes.fold_max_pool import folded_qnet
    from relay_passes.pipeline import run_pipeline

    assert run_cli(monkeypatch, "plan", model, "--block-size", block, "--board", "zcu102",
                   "--input-shape", "1,3,32,32") == 0
    lines = [line[len("host: "):] for line in capsys.readouterr().out.splitlines()
             if line.startswith("host: ")]
    assert [line.split(" (")[0] for line in lines] == ZOO_HOST[(model, block)]
    r = run_pipeline(model, board="zcu102", input_shape=(1, 3, 32, 32), block_size=int(block),
                     stop_after="PlanFusedGroups", progress=False)
    q = folded_qnet(r.plan, r.qnet)
    _, segments = program_plan(r.plan, q, "fused", 1, r.board)
    on_vta = {n for s in segments for n in s.layers}
    reasons = host_reasons(r.plan, q, segments, r.board)
    assert list(reasons) == [layer.name for layer in q.layers if layer.name not in on_vta]


@pytest.mark.slow
@pytest.mark.parametrize("model, block", list(ZOO_HOST))
def test_compile_and_plan_print_the_same_host_layers(tmp_path, monkeypatch, capsys, model,
                                                    block):
    args = [model, "--block-size", block, "--board", "zcu102", "--input-shape", "1,3,32,32"]
    assert run_cli(monkeypatch, "plan", *args) == 0
    planned = [line for line in capsys.readouterr().out.splitlines() if line.startswith("host")]
    assert run_cli(monkeypatch, "compile", *args, "-o", tmp_path / "a") == 0
    compiled = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("host")]
    assert compiled == planned and planned
