"""Fused groups across branches: a ResNet downsample block (conv1 and the 1x1 downsample
both read the block input, conv2 adds the downsample's output) runs as one program on the
same resident input block; bit-exact against the integer reference in both modes on every
board; the fused program reads the block input from DRAM once and moves no feature maps."""

from __future__ import annotations

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm.errors import BadInputError
from bctvm.lower.group import compile_group, run_group
from schedules import LayerSpec
from schedules.block_conv2d import group_compute

SOURCES = ["input", "input", 0]  # conv1, downsample (both the block input), conv2 (conv1's)
RESIDUALS = [None, None, 1]  # conv2 adds the downsample's output


def _block(pool=True, cin=32, cout=64, size=16, block=8):
    """conv1 3x3 (stride 2 = pool) / downsample 1x1 (stride 2) / conv2 3x3 + downsample."""
    half = block // 2 if pool else block
    conv1 = LayerSpec("conv1", cin, cout, size, size, (block, block), shift=10, relu=True,
                      pool=pool)
    ds = LayerSpec("ds", cin, cout, size, size, (block, block), kernel=(1, 1),
                   padding=(0, 0, 0, 0), shift=7, pool=pool)
    out = size // 2 if pool else size
    conv2 = LayerSpec("conv2", cout, cout, out, out, (half, half), shift=10, relu=True,
                      residual_shift=1)
    return [conv1, ds, conv2]


def _data(specs, seed=3):
    rng = np.random.default_rng(seed)
    s0 = specs[0]
    x = rng.integers(-128, 128, (1, s0.in_channels, s0.height, s0.width)).astype(np.int8)
    layers = []
    for i, s in enumerate(specs):
        _, w, b, sg, _ = random_layer_data(s, seed=20 + i)
        layers.append(dict(weight=w, bias=b, sign=sg))
    y1 = ref_spec(x, layers[0]["weight"], layers[0]["bias"], specs[0], layers[0]["sign"])
    d = ref_spec(x, layers[1]["weight"], layers[1]["bias"], specs[1], layers[1]["sign"])
    y = ref_spec(y1, layers[2]["weight"], layers[2]["bias"], specs[2], layers[2]["sign"],
                 residual=d)
    return x, layers, y


@pytest.mark.parametrize("board", ["pynq", "ultra96", "zcu102"])
@pytest.mark.parametrize("mode", ["fused", "layerwise"])
def test_downsample_block_bit_exact(board, mode):
    cfg = load_board(board)
    if mode == "fused" and not cfg.onchip_reuse:
        pytest.skip("fused groups keep blocks on chip: needs onchip_reuse")
    specs = _block()
    x, layers, ref = _data(specs)
    cg = compile_group(cfg, specs, mode=mode, residual_source=RESIDUALS, sources=SOURCES,
                       name="b")
    run = run_group(cg, cg.image(x, layers))
    assert np.array_equal(run.output, ref)
    assert len(np.unique(ref)) > 20
    if mode == "fused":
        assert len(cg.programs) == 1 and run.dram_bytes["feature_maps"] == 0
        assert run.dram_bytes["input"] == cg.layout.regions["data"].nbytes  # read once
        assert cg.programs[0].stats["sram_peak"] == cg.fits[0].footprint
    else:
        assert len(cg.programs) == 3 and run.dram_bytes["feature_maps"] > 0


def test_branch_shares_the_padded_input_block():
    cfg = load_board("zcu102")
    g = group_compute(cfg, _block(), RESIDUALS, sources=SOURCES)
    assert g.layers[1].pad is g.layers[0].pad and g.layers[1].pad_of == 0
    assert g.consumer(0) == 2 and g.consumer(1) is None
    # a branch needing a wider border than layer 0's block holds is refused
    wide = [_block()[1], _block()[0], _block()[2]]
    with pytest.raises(BadInputError, match="does not hold"):
        group_compute(cfg, wide, RESIDUALS, sources=["input", "input", 1])


@pytest.mark.parametrize("board", ["zcu102"])
def test_downsample_held_in_the_input_buffer(board):
    """Residuals by identity GEMM: the downsample's output (read by no layer as data) is held
    as int8 in the input buffer, not whole in the accumulator; bit-exact, and the accumulator
    peak is below the kept-output path's."""
    cfg = load_board(board)
    specs = _block(cin=64, cout=128)
    x, layers, ref = _data(specs)
    kept = compile_group(cfg, specs, residual_source=RESIDUALS, sources=SOURCES, name="k",
                         identity_residuals=False)
    held = compile_group(cfg, specs, residual_source=RESIDUALS, sources=SOURCES, name="h",
                         identity_residuals=True)
    assert held.fits[0].identity_residuals and held.fits[0].knobs.identity_residuals == ((1, 2),)
    for cg in (kept, held):
        assert np.array_equal(run_group(cg, cg.image(x, layers)).output, ref)
    assert held.fits[0].footprint["acc"] < kept.fits[0].footprint["acc"]
