"""PlanFusedGroups: grouping rules (graph structure; fit is bctvm.lower.fit's), DRAM estimate,
JSON, table, zoo plans."""

from __future__ import annotations

import numpy as np
import pytest
from tvm import relax

from boards import load_board
from relay_passes import ops
from relay_passes.pack_layout import PackLayout
from relay_passes.plan_fused_groups import FusedPlan, PlanFusedGroups, plan_of


def two_conv_module(b_kernel=1, b_block=(4, 4)):
    """x (1x20x8x8) -> A: 3x3 conv 20->40, block 4, sign, relu -> B: 1x1 conv 40->40 + A."""
    b_pad = (b_kernel // 2,) * 4
    rng = np.random.default_rng(0)
    x = relax.Var("x", relax.TensorType((1, 20, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            q = bb.emit(ops.quantize(x, exponent=4))
            a = bb.emit(ops.qblock_conv2d(
                q, ops.const(rng.integers(-9, 9, (40, 20, 3, 3)).astype(np.int8)),
                ops.const(np.zeros(40, np.int32)), ops.const(np.ones(40, np.int32)),
                block=(4, 4), padding=(1, 1, 1, 1), padding_mode="constant", kernel=(3, 3),
                dilation=(1, 1), groups=1, pool=False, has_sign=True, shift=8, relu=True,
                layer="A"))
            b = bb.emit(ops.qblock_conv2d(
                a, ops.const(rng.integers(-9, 9, (40, 40, b_kernel, b_kernel)).astype(np.int8)),
                ops.const(np.zeros(40, np.int32)), ops.const(np.ones(40, np.int32)), a,
                block=b_block, padding=b_pad, padding_mode="constant",
                kernel=(b_kernel, b_kernel),
                dilation=(1, 1), groups=1, pool=False, has_sign=False, shift=-1, relu=False,
                residual_shift=1, layer="B"))
            gv = bb.emit_output(ops.dequantize(b, exponent=3))
        bb.emit_func_output(gv)
    return bb.get()


def board_file(tmp_path, **changes) -> str:
    """pynq's TOML with some [core]/[system] values changed (a board for one test)."""
    from pathlib import Path

    import boards

    text = (Path(boards.__file__).parent / "pynq.toml").read_text()
    for key, value in changes.items():
        lines = []
        for line in text.splitlines():
            if line.split("=")[0].strip() == key:
                line = f"{key} = {str(value).lower()}"
            lines.append(line)
        text = "\n".join(lines)
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace('name = "pynq"', 'name = "tiny"'))
    return str(path)


def plan_for(mod, board) -> FusedPlan:
    packed = PackLayout(board)(mod)
    planned = PlanFusedGroups(board, model="two")(packed)
    return plan_of(planned)


def test_groups_and_dram_without_onchip_reuse():
    """pynq (16 lanes): A reads 2 input tiles (20 -> 32 ch) and writes 3 output tiles
    (40 -> 48 ch); B is a 1x1 conv over A's 3 tiles + A as residual. Without onchip_reuse
    every layer is its own group; the estimate reads weights once (A: 3 x 2 x 3 x 3 tiles;
    B: 3 x 3 + the identity tile)."""
    plan = plan_for(two_conv_module(), "pynq")
    assert [g.layers for g in plan.groups] == [["A"], ["B"]]
    a, b = plan.groups
    assert a.grid == b.grid == (2, 2)
    assert a.footprint == b.footprint == {} and not a.fit  # fits are the program plan's
    tile = 8 * 8 * 16  # one 8x8 map of 16 int8 channels
    assert a.dram_bytes == {"weights": 54 * 256, "input": 2 * tile, "output": 0,
                            "feature_maps": 3 * tile}
    assert b.dram_bytes == {"weights": 10 * 256, "input": 0, "output": 3 * tile,
                            "feature_maps": 3 * tile}
    assert plan.dram_bytes()["total"] == 64 * 256 + 2 * tile + 9 * tile


def test_onchip_reuse_fuses(tmp_path):
    board = board_file(tmp_path, onchip_reuse=True)
    plan = plan_for(two_conv_module(), board)
    (g,) = plan.groups
    assert g.layers == ["A", "B"]
    assert g.inputs == [plan.groups[0].inputs[0]] and g.outputs == ["B"]
    assert g.dram_bytes["feature_maps"] == 0


def test_grid_changes_close_groups_unless_the_grids_nest(tmp_path):
    """A 3x3 conv on 2x8 blocks (grid 4x1) cannot take A's 4x4 blocks (grid 2x2) on chip; on
    one 8x8 block (grid 1x1) it collects A's 2x2 blocks (the grids nest: coarsening); a 1x1
    conv without padding computes the same on any grid and follows A's."""
    board = board_file(tmp_path, onchip_reuse=True)
    plan = plan_for(two_conv_module(b_kernel=3, b_block=(2, 8)), board)
    assert [(g.layers, g.grid) for g in plan.groups] == [(["A"], (2, 2)), (["B"], (4, 1))]
    plan = plan_for(two_conv_module(b_kernel=3, b_block=(8, 8)), board)
    assert [(g.layers, g.grid) for g in plan.groups] == [(["A", "B"], (2, 2))]
    assert plan.layers["B"].grid == (1, 1)
    plan = plan_for(two_conv_module(b_kernel=1, b_block=(8, 8)), board)
    assert [(g.layers, g.grid) for g in plan.groups] == [(["A", "B"], (2, 2))]
    assert plan.layers["B"].block == (4, 4)


def test_small_net_groups_on_zcu102(quantized):
    """SmallNet: the 3-channel stem and its pool stay on the host; everything else shares
    the 2x2 grid of 4x4 blocks (the plain 1x1 grouped conv follows it) and fits one group."""
    _, qnet, _, _, qmod = quantized
    plan = plan_for(qmod, "zcu102")
    assert plan.host_layers == ["stem", "pool"]
    (g,) = plan.groups
    assert g.layers[:3] == ["c1", "c2", "dw"] and g.layers[-1] == "pw" and g.grid == (2, 2)
    assert {plan.layers[n].kind for n in g.layers[3:5]} == {"relu", "add"}
    assert g.dram_bytes["feature_maps"] == 0
    assert plan.onchip_reuse and plan.board_key == load_board("zcu102").key


def test_plan_json_round_trip_and_table(quantized):
    _, _, _, _, qmod = quantized
    plan = plan_for(qmod, "pynq")
    again = FusedPlan.from_json(plan.to_json())
    assert again.to_dict() == plan.to_dict()
    text = plan.table(verbose=True)
    lines = text.splitlines()
    assert "onchip_reuse off" in lines[0] and f"{len(plan.groups)} groups" in lines[0]
    assert "inp 2048 x 16 B" in lines[1]
    for g in plan.groups:  # one row per group, then one line per layer
        assert any(line.startswith(f"{g.index:>3} ") for line in lines)
    assert "host (llvm): stem, pool" in text
    assert "estimated DRAM per inference" in lines[-1] or "estimated DRAM" in text


@pytest.mark.slow
def test_block_resnet18_f28_224_plans():
    from relay_passes.pipeline import plan_model

    plans = {b: plan_model("block_resnet18", board=b, block_size=28, progress=False)
             for b in ("pynq", "zcu102")}
    pynq, zcu = plans["pynq"], plans["zcu102"]
    assert len(pynq.groups) == len(pynq.layers) == 19  # stock VTA: one layer per group
    assert zcu.groups[0].layers[0] == "layer1.0.conv1" and len(zcu.groups) < 19


def test_chain_policy_keeps_linear_conv_chains(tmp_path):
    """B adds A's output as its residual: a branch inside the group, so "chain" splits."""
    board = board_file(tmp_path, onchip_reuse=True)
    mod = PackLayout(board)(two_conv_module())
    planned = PlanFusedGroups(board, policy="chain")(mod)
    assert [g.layers for g in plan_of(planned).groups] == [["A"], ["B"]]
    with pytest.raises(Exception, match="grouping policy 'tree'"):
        PlanFusedGroups(board, policy="tree")
