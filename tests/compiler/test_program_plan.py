"""The program plan: one fit rule for the planner, the compile and the allocator.

For every program of the zoo models (small inputs, every board) the footprint the plan
prints is the peak the SRAM allocator placed in the compiled program, per buffer; the
artifact carries the plan's fits; a layer that cannot fit is a one-line error naming it.
"""

from __future__ import annotations

import json

import pytest

from bctvm.compiler.driver import compile_segments
from bctvm.compiler.plan import program_plan
from bctvm.compiler.segment import CUT_REASONS
from bctvm.lower.fit import GroupFit, fit_group, fits
from boards import load_board
from relay_passes.fold_max_pool import folded_qnet
from relay_passes.pipeline import run_pipeline, zoo_kwargs
from schedules import BufferFitError, LayerSpec

BOARDS = ("pynq", "ultra96", "zcu102")
SLOW_ON_1x16 = pytest.mark.slow  # the big models on the 1x16 boards: one program per layer


def _cases():
    for model in ("block_resnet18", "block_mobilenet", "block_resnet50", "block_vgg16"):
        for board in BOARDS:
            big = model in ("block_resnet50", "block_vgg16") and board != "zcu102"
            yield pytest.param(model, board, marks=[SLOW_ON_1x16] if big else [],
                               id=f"{model}-{board}")


@pytest.mark.parametrize("model,board", list(_cases()))
def test_plan_footprint_is_the_allocators_peak(model, board):
    cfg = load_board(board)
    res = run_pipeline(model, board=cfg, input_shape=(1, 3, 32, 32), calib=1,
                       stop_after="PlanFusedGroups", progress=False,
                       **zoo_kwargs(model, 8, None, None))
    vq = folded_qnet(res.plan, res.qnet)
    plan, segments = program_plan(res.plan, vq, "fused", 1, cfg)
    assert [g.layers for g in plan.groups] == [s.layers for s in segments]
    assert all(g.cut in CUT_REASONS for g in plan.groups)
    for seg in segments:  # fused never slower than apart: one-thread programs were weighed
        if seg.fits[0].knobs.vthreads == 1 and len(seg.layers) > 1:
            assert "kept fused:" in seg.note and "cycles" in seg.note, seg.layers
        if seg.cut == "cycles":
            assert seg.note.startswith("split:")
    compiled = compile_segments(cfg, segments, vq, "fused", 1, progress=False)
    for g, c in zip(plan.groups, compiled):
        peak = {b: max(p.stats["sram_peak"][b] for p in c.cg.programs) for b in g.footprint}
        assert g.footprint == peak, g.layers
        assert all(g.footprint[b] <= plan.capacity[b] for b in g.footprint)
        assert [f.to_dict() for f in c.cg.fits] == g.fit
    if cfg.onchip_reuse:
        assert any(len(g.layers) > 1 for g in plan.groups)


def test_plan_json_is_what_compiles(monkeypatch, capsys, tmp_path):
    """`bctvm plan --json` and the artifact of `bctvm compile` agree on every program's
    layers, footprint and fit (resolved knobs)."""
    from tests.cli_runner import run_cli

    common = ["block_resnet18", "--board", "zcu102", "--input-shape", "1,3,32,32",
              "--block-size", "8"]
    assert run_cli(monkeypatch, "plan", *common, "--json", str(tmp_path / "plan.json")) == 0
    assert "ends because" in capsys.readouterr().out
    assert run_cli(monkeypatch, "compile", *common, "-o", str(tmp_path / "a")) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert len(plan["groups"]) == len(manifest["groups"])
    for g, m in zip(plan["groups"], manifest["groups"]):
        assert g["layers"] == m["layers"] and g["cut"] == m["cut"]
        assert g["fit"] == m["fit"]
        again = GroupFit.from_dict(m["fit"][0]).to_dict()
        assert json.loads(json.dumps(again)) == m["fit"][0]


def test_fit_rule_agrees_with_the_allocator_and_names_layers():
    pynq = load_board("pynq")
    ok = LayerSpec("ok", 32, 32, 16, 16, (8, 8))
    f = fit_group(pynq, [ok])
    assert fits(pynq, [ok], f.knobs)
    assert all(f.footprint[b] <= d for b, d in
               {"inp": pynq.inp_depth, "wgt": pynq.wgt_depth, "acc": pynq.acc_depth}.items())
    # a depthwise conv over 4096 channels: one input tile per group, nothing to split
    huge = LayerSpec("huge", 4096, 4096, 8, 8, (8, 8), groups=4096)
    with pytest.raises(BufferFitError, match="huge"):
        fit_group(pynq, [huge])
