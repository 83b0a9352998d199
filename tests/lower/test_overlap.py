"""Latency hiding and weight reuse in groups of several layers:

- `weight_copies`: two copies of streamed weight tiles with one virtual thread, so the next
  chunk's weight load overlaps this chunk's GEMM (fewer cycles, same bytes);
- the footprint model gives a site its copies only when its loop runs more than once (a 1x1
  grid's padded blocks: one copy), as the SRAM allocator does;
- `blocks_inside` for groups of several layers (chains, identity-GEMM residuals, branches):
  every chunk's weights are read once for all blocks, the maps between layers stay whole on
  chip; the simulator moves exactly the estimated bytes;
- all of it bit-exact against the integer reference, fused (boards with onchip_reuse) and
  layerwise on every board, and the same results under a changed timing table (the tokens,
  not the timing, order the programs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm.lower.group import compile_group, run_group
from bctvm.sim import Simulator
from schedules import LayerSpec, ScheduleKnobs
from schedules.knobs import group_dram_bytes, group_footprint, resolve_knobs

BOARDS = ["pynq", "ultra96", "zcu102"]
MODES = ["fused", "layerwise"]
ZCU = load_board("zcu102")

# timing tables under which a correctly synchronised program gives the same result
TIMINGS = [{"dram_request_cycles": 700, "dram_row_cycles": 40},
           {"gemm_uop_cycles": 30, "pipeline_fill_cycles": 90},
           {"alu_uop_cycles": 50, "alu_reg_uop_cycles": 80, "onchip_bytes_per_cycle": 1}]


def _chain(ch: int, size: int, block: int, residual: bool):
    """Two 3x3 ch -> ch layers; the second adds the group input when `residual`."""
    a = LayerSpec("a", ch, ch, size, size, (block, block), shift=12, relu=True)
    b = LayerSpec("b", ch, ch, size, size, (block, block), shift=12, relu=True,
                  residual_shift=1 if residual else None)
    return [a, b]


def _data(specs, residual: bool, seed: int = 1):
    x, w0, b0, s0, _ = random_layer_data(specs[0], seed=seed)
    _, w1, b1, s1, _ = random_layer_data(specs[1], seed=seed + 1)
    y = ref_spec(x, w0, b0, specs[0], s0)
    ref = ref_spec(y, w1, b1, specs[1], s1, x if residual else None)
    return x, [dict(weight=w0, bias=b0, sign=s0), dict(weight=w1, bias=b1, sign=s1)], ref


def _residuals(mode: str, residual: bool):
    if not residual:
        return "external" if mode == "fused" else [None, None]
    return [None, "input"]


def _same_under_timings(cg, img, out):
    """Every program gives the same DRAM image under each changed timing table."""
    for change in TIMINGS:
        cfg = dataclasses.replace(cg.cfg, timing=dataclasses.replace(cg.cfg.timing, **change))
        run = run_group(cg, img.copy(), sim=Simulator(cfg))
        assert np.array_equal(run.output, out), change


def _compile(cfg, specs, mode, knobs, residual):
    res = _residuals(mode, residual)
    if mode == "layerwise":  # every layer its own program, its residual from DRAM
        res = [None, "external" if residual else None]
    return compile_group(cfg, specs, mode=mode, knobs=knobs, residual_source=res,
                         identity_residuals=True if mode == "fused" and residual else None,
                         input_on_chip=False if mode == "fused" and residual else None)


def _image(cg, x, layers, residual, mode):
    if mode == "layerwise" and residual:
        layers = [layers[0], dict(layers[1], residual=x)]
    return cg.image(x, layers)


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("mode", MODES)
def test_weight_copies_overlap_streamed_weights(board, mode):
    """One virtual thread, streamed weights on a 1x1 grid: two weight copies are bit-exact,
    move the same bytes and take fewer cycles than one."""
    cfg = load_board(board)
    if mode == "fused" and not cfg.onchip_reuse:
        pytest.skip("fused groups keep blocks on chip: needs onchip_reuse")
    ch = 16 * cfg.block_out
    specs = _chain(ch, 6, 6, residual=False)
    x, layers, ref = _data(specs, False)
    runs = {}
    for wc in (1, 2):
        knobs = ScheduleKnobs(vthreads=1, weights_resident=False, weight_copies=wc)
        cg = _compile(cfg, specs, mode, knobs, False)
        img = _image(cg, x, layers, False, mode)
        run = run_group(cg, img)
        assert np.array_equal(run.output, ref), wc
        assert all(f.knobs.wgt_copies == wc and f.knobs.vthreads == 1 for f in cg.fits)
        for prog, f in zip(cg.programs, cg.fits):
            assert prog.stats["sram_peak"] == f.footprint
        runs[wc] = run
        if wc == 2:
            _same_under_timings(cg, img, ref)
    assert runs[2].dram_bytes["weights"] == runs[1].dram_bytes["weights"]
    assert runs[2].cycles < runs[1].cycles


def test_one_copy_of_sites_whose_loop_runs_once():
    """A 1x1 grid: with two virtual threads the padded blocks have one copy in the model and
    in the allocator (the streamed weights and per-chunk tiles two)."""
    specs = _chain(8 * ZCU.block_out, 8, 8, residual=False)
    cg = compile_group(ZCU, specs, knobs=ScheduleKnobs(vthreads=2, weights_resident=False))
    k = cg.fits[0].knobs
    assert k.vthreads == 2 and k.wgt_copies == 2
    fp = group_footprint(ZCU, specs, k)
    peak = cg.programs[0].stats["sram_peak"]
    assert fp["inp"] == peak["inp"] == 2 * 8 * 10 * 10  # two layers' padded blocks, one copy
    assert fp["wgt"] == peak["wgt"]


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("residual", [False, True])
def test_blocks_inside_several_layers(board, mode, residual):
    """Blocks inside output-channel chunks: bit-exact, each chunk's weights read once (not
    once per block), the estimate equals the simulator's bytes, results independent of the
    timing; the default chooses it by traffic."""
    cfg = load_board(board)
    if mode == "fused" and not cfg.onchip_reuse:
        pytest.skip("fused groups keep blocks on chip: needs onchip_reuse")
    ch = 8 * cfg.block_out
    specs = _chain(ch, 8, 4, residual)  # 2x2 grid of 4x4 blocks
    x, layers, ref = _data(specs, residual)
    runs = {}
    for inside in (False, True):
        cg = _compile(cfg, specs, mode, ScheduleKnobs(blocks_inside=inside,
                                                      weights_resident=False), residual)
        img = _image(cg, x, layers, residual, mode)
        run = run_group(cg, img)
        assert np.array_equal(run.output, ref), inside
        assert all(f.knobs.blocks_inside is inside for f in cg.fits)
        runs[inside] = run
        if mode == "fused":
            k = cg.fits[0].knobs
            moved = run.dram_bytes["weights"] + run.dram_bytes["input"]
            ident = cg.layout.regions["identity"].nbytes if residual else 0
            assert moved == group_dram_bytes(cfg, specs, k) + ident
        if inside:
            _same_under_timings(cg, img, ref)
    w_bytes = sum(cg.layout.regions[f"l{i}_weight"].nbytes for i in range(2))
    assert runs[True].dram_bytes["weights"] < w_bytes + 4096  # once (+ bias tiles)
    assert runs[False].dram_bytes["weights"] >= 4 * w_bytes  # once per block
    if mode == "fused":
        auto = compile_group(cfg, specs, residual_source=_residuals(mode, residual))
        assert auto.fits[0].knobs.blocks_inside


def test_blocks_inside_branch_group():
    """A downsample block (conv1 and the 1x1 downsample read the same input, conv2 adds the
    downsample's output by an identity GEMM) in the blocks-inside order on zcu102."""
    from tests.lower.test_branch_group import RESIDUALS, SOURCES, _block
    from tests.lower.test_branch_group import _data as branch_data

    specs = _block(cin=64, cout=128, size=16, block=8)
    x, layers, ref = branch_data(specs)
    cg = compile_group(ZCU, specs, residual_source=RESIDUALS, sources=SOURCES,
                       knobs=ScheduleKnobs(weights_resident=False))
    assert cg.fits[0].knobs.blocks_inside and cg.fits[0].identity_residuals
    img = cg.image(x, layers)
    run = run_group(cg, img)
    assert np.array_equal(run.output, ref)
    assert run.dram_bytes["input"] == cg.layout.regions["data"].nbytes
    w_bytes = sum(cg.layout.regions[f"l{i}_weight"].nbytes for i in range(3))
    assert run.dram_bytes["weights"] < w_bytes + 4096  # once (+ bias tiles, identity tile)
    _same_under_timings(cg, img, ref)


def test_blocks_inside_refused_with_blocks_kept_in_the_accumulator():
    from bctvm.errors import BadInputError

    specs = _chain(8 * ZCU.block_out, 8, 4, residual=True)
    with pytest.raises(BadInputError, match="blocks_inside"):
        resolve_knobs(ZCU, specs, ScheduleKnobs(blocks_inside=True, input_on_chip=True))
