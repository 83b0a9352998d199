"""Whole models compiled to artifacts and run on the simulator board, bit-exact against the
integer reference, in fused and layerwise modes, on boards with and without onchip_reuse."""

from __future__ import annotations

import json

import pytest

from .conftest import USER_MODELS, compile_and_run

KINDS = ("weights", "input", "output", "feature_maps", "uops", "instructions")


def _check_report(rep, manifest):
    v = rep["validation"]
    assert v["bit_exact"] and v["max_abs_err"] == 0 and v["ok"], v
    assert v["output_max_abs_err_vs_int8_reference"] < 1e-4
    b = rep["dram_bytes"]
    assert "other" not in b  # every DRAM byte moved belongs to a named region
    assert b["total"] == sum(b[k] for k in KINDS)
    assert b["weights"] > 0 and b["input"] > 0 and b["output"] > 0 and b["instructions"] > 0
    assert rep["cycles"] == sum(g["cycles"] for g in rep["groups"]) > 0
    assert rep["latency_ms"] == pytest.approx(rep["cycles"] / (rep["clock_mhz"] * 1e3))
    assert 0 < rep["gemm_utilisation"] <= 1
    assert rep["lower_bound_bytes"] <= b["total"]
    assert [g["layers"] for g in rep["groups"]] == [g["layers"] for g in manifest["groups"]]
    json.dumps(rep)  # plain JSON


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    """block_resnet18 at 32x32 (block 8) on zcu102 in both modes and on pynq."""
    out = {}
    for board, mode in (("zcu102", "fused"), ("zcu102", "layerwise"), ("pynq", "fused")):
        d = tmp_path_factory.mktemp(f"r18_{board}_{mode}")
        out[board, mode] = compile_and_run(d, "block_resnet18", board=board, mode=mode,
                                           block_size=8)
    return out


def test_resnet18_fused_on_zcu102_is_bit_exact_with_multi_layer_groups(r18):
    manifest, rep, _ = r18["zcu102", "fused"]
    _check_report(rep, manifest)
    sizes = [len(g["layers"]) for g in manifest["groups"]]
    assert max(sizes) >= 4 and sum(sizes) == 19
    assert manifest["host_layers"][:1] == ["conv1"]  # the 3-channel stem stays on the host
    # a fused group's program touches only its input, residual, weights, output and uops
    for g in manifest["groups"]:
        kinds = {r["kind"] for name, r in g["regions"].items()
                 if name not in ("data", "out") and not name.endswith("_residual")}
        assert kinds <= {"weights", "uops"}


def test_layerwise_moves_more_feature_maps_than_fused(r18):
    fm, fused, _ = r18["zcu102", "fused"]
    lm, layer, _ = r18["zcu102", "layerwise"]
    _check_report(layer, lm)
    assert len(lm["groups"]) == 19 and all(len(g["layers"]) == 1 for g in lm["groups"])
    assert layer["dram_bytes"]["feature_maps"] > fused["dram_bytes"]["feature_maps"]
    assert layer["dram_bytes"]["weights"] == fused["dram_bytes"]["weights"]


def test_board_without_onchip_reuse_runs_one_layer_per_group(r18):
    manifest, rep, _ = r18["pynq", "fused"]
    _check_report(rep, manifest)
    assert all(len(g["layers"]) == 1 for g in manifest["groups"])
    assert rep["onchip_reuse"] is False


@pytest.mark.parametrize("board,mode", [("zcu102", "fused"), ("pynq", "layerwise")])
def test_mobilenet_replicate_padding(tmp_path, board, mode):
    manifest, rep, _ = compile_and_run(tmp_path, "block_mobilenet", board=board, mode=mode,
                                       block_size=8, padding_mode="replicate")
    _check_report(rep, manifest)
    if mode == "fused":  # depthwise + pointwise pairs fuse into long groups
        assert max(len(g["layers"]) for g in manifest["groups"]) >= 8


@pytest.mark.parametrize("board,mode,kw", [
    ("zcu102", "fused", {"block_size": 16, "padding_mode": "reflect"}),
    ("zcu102", "layerwise", {"block_size": 2, "block_type": "hierarchical"}),
])
def test_resnet18_reflect_and_hierarchical(tmp_path, board, mode, kw):
    manifest, rep, _ = compile_and_run(tmp_path, "block_resnet18", board=board, mode=mode,
                                       size=64, **kw)
    _check_report(rep, manifest)


@pytest.mark.parametrize("factory,board,mode", [
    ("resdw", "zcu102", "fused"),
    ("resdw_reflect", "zcu102", "fused"),
    ("resdw_reflect", "pynq", "layerwise"),
    ("resdw_hierarchical", "zcu102", "fused"),
    ("resdw_hierarchical", "ultra96", "layerwise"),
])
def test_user_model_from_a_python_file(tmp_path, factory, board, mode):
    manifest, rep, _ = compile_and_run(tmp_path, f"{USER_MODELS}:{factory}", board=board,
                                       mode=mode)
    _check_report(rep, manifest)
    if board == "zcu102" and mode == "fused":
        # the whole VTA part is one group: only weights, input, output, uops, instructions move
        assert len(manifest["groups"]) == 1
        assert rep["dram_bytes"]["feature_maps"] == 0


def test_stem_on_vta(tmp_path):
    manifest, rep, _ = compile_and_run(tmp_path, f"{USER_MODELS}:resdw", board="zcu102",
                                       stem="vta")
    _check_report(rep, manifest)
    assert manifest["groups"][0]["layers"][0] == "c0"
    assert "c0" not in manifest["host_layers"]


def test_plain_strided_conv_stays_on_the_host(tmp_path):
    manifest, rep, _ = compile_and_run(tmp_path, f"{USER_MODELS}:strided_plain", board="zcu102")
    _check_report(rep, manifest)
    assert "0" in manifest["host_layers"]
    assert [g["layers"] for g in manifest["groups"]] == [["2"]]


@pytest.mark.slow
@pytest.mark.parametrize("model,board,mode", [
    ("block_vgg16", "zcu102", "fused"),
    ("block_vgg16_bn", "pynq", "layerwise"),
    ("block_resnet50", "zcu102", "fused"),
    ("block_resnet34", "ultra96", "fused"),
])
def test_zoo_small(tmp_path, model, board, mode):
    manifest, rep, _ = compile_and_run(tmp_path, model, board=board, mode=mode, block_size=8)
    _check_report(rep, manifest)


@pytest.mark.slow
@pytest.mark.parametrize("board,mode", [("zcu102", "fused"), ("zcu102", "layerwise"),
                                        ("pynq", "fused")])
def test_resnet18_224(tmp_path, board, mode):
    manifest, rep, _ = compile_and_run(tmp_path, "block_resnet18", board=board, mode=mode,
                                       size=224)
    _check_report(rep, manifest)


def test_pool_across_block_edges_runs_on_the_host(tmp_path):
    manifest, rep, _ = compile_and_run(tmp_path, f"{USER_MODELS}:odd_pool", board="zcu102",
                                       size=20, stem="vta")
    _check_report(rep, manifest)
    assert "4" in manifest["host_layers"]  # the stride-2 conv with 5x5 blocks
    assert [g["layers"] for g in manifest["groups"]] == [["0", "2"], ["6"]]
    assert rep["dram_bytes"]["feature_maps"] > 0  # through the host between the groups
