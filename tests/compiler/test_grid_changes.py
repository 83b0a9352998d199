"""Programs across block-grid changes, end to end (compile, run on the simulator, validate
against the integer reference): a hierarchical 2x2 layer followed by a fixed-8 stride-2 layer
(refining) is one program on zcu102 that moves no feature maps; block_resnet18 with fixed
8x8 blocks coarsens after layer2.0.conv1 (its downsample runs as a program of its own, before
the chain that adds it); every board and mode stays bit-exact."""

from __future__ import annotations

import pytest

from .conftest import USER_MODELS, compile_and_run
from .test_compile_run import _check_report

HIER = f"{USER_MODELS}:hier_then_fixed"


@pytest.mark.parametrize("board,mode", [("zcu102", "fused"), ("zcu102", "layerwise"),
                                        ("pynq", "fused"), ("ultra96", "layerwise")])
def test_refining_user_model(tmp_path, board, mode):
    manifest, rep, _ = compile_and_run(tmp_path, HIER, board=board, mode=mode)
    _check_report(rep, manifest)
    assert manifest["host_layers"] == ["stem"]
    if board == "zcu102" and mode == "fused":
        (g,) = manifest["groups"]  # one program: the coarse block stays on chip
        assert g["layers"] == ["hier", "fixed"]
        assert g["grid_changes"] == [{"after": "hier", "before": "fixed", "kind": "refine",
                                      "from": [2, 2], "to": [4, 4]}]
        assert rep["dram_bytes"]["feature_maps"] == 0
    else:
        assert [g["layers"] for g in manifest["groups"]] == [["hier"], ["fixed"]]
        assert rep["dram_bytes"]["feature_maps"] > 0


def test_resnet18_coarsens_after_a_stride_2_conv(tmp_path):
    manifest, rep, _ = compile_and_run(tmp_path, "block_resnet18", board="zcu102",
                                       mode="fused", size=64, block_size=8)
    _check_report(rep, manifest)
    groups = {g["layers"][0]: g for g in manifest["groups"]}
    g = groups["layer2.0.conv1"]
    assert g["layers"][:2] == ["layer2.0.conv1", "layer2.0.conv2"]
    assert g["grid_changes"][0] == {"after": "layer2.0.conv1", "before": "layer2.0.conv2",
                                    "kind": "coarsen", "from": [2, 2], "to": [1, 1]}
    order = [x["layers"][0] for x in manifest["groups"]]
    # the downsample (conv2's residual, on the 2x2 grid) runs first, on its own
    assert order.index("layer2.0.downsample.0") < order.index("layer2.0.conv1")
    assert groups["layer2.0.downsample.0"]["layers"] == ["layer2.0.downsample.0"]


@pytest.mark.slow
def test_refining_user_model_at_224_is_one_program(tmp_path):
    """At 224 the hierarchical layer's 112x112 output block does not fit the accumulator:
    it runs per row of the fixed-8 blocks (refine_rows), still one program, no feature maps."""
    manifest, rep, _ = compile_and_run(tmp_path, HIER, board="zcu102", mode="fused", size=224)
    _check_report(rep, manifest)
    (g,) = manifest["groups"]
    assert g["layers"] == ["hier", "fixed"] and g["fit"][0]["knobs"]["refine_rows"]
    assert rep["dram_bytes"]["feature_maps"] == 0
