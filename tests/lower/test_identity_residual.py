"""Residuals read from the input buffer by an identity GEMM (acc_tile = reset; += inp_tile x I):
the group input (layer 0's padded input) or an earlier layer's output (the next layer's padded
input) becomes the int32 residual of one output-channel chunk, bit-exact, with the group input
read from DRAM once and no whole block kept in the accumulator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm import isa
from bctvm.isa import MemType
from bctvm.lower.group import compile_group, run_group
from schedules import BufferFitError, LayerKnobs, LayerSpec, ScheduleKnobs

ZCU = load_board("zcu102")
PYNQ = load_board("pynq")
PYNQ_REUSE = dataclasses.replace(PYNQ, name="pynq-reuse", onchip_reuse=True)  # pynq-sized
BOARDS = {"pynq-reuse": PYNQ_REUSE, "zcu102": ZCU}


def _params(specs, seed):
    out = []
    for i, s in enumerate(specs):
        _, w, b, sg, _ = random_layer_data(s, seed=seed + i)
        out.append(dict(weight=w, bias=b, sign=sg))
    return out


def _reference(x, specs, params, sources):
    """Layer by layer through the NumPy contract; sources[j]: None, "input" or a layer index."""
    outs, y = [], x
    for s, p, src in zip(specs, params, sources):
        r = x if src == "input" else (outs[src] if isinstance(src, int) else None)
        y = ref_spec(y, p["weight"], p["bias"], s, p["sign"], residual=r)
        outs.append(y)
    return y


def _memtypes(cg):
    return [i.memory_type for i in cg.programs[0].instructions if isinstance(i, isa.Load)]


def _run(cfg, specs, sources, seed, **kw):
    cg = compile_group(cfg, specs, "fused", residual_source=sources, **kw)
    x = random_layer_data(specs[0], seed=seed)[0]
    params = _params(specs, seed + 10)
    run = run_group(cg, cg.image(x, params))
    ref = _reference(x, specs, params, sources)
    assert np.array_equal(run.output, ref), f"{(run.output != ref).sum()} values differ"
    assert len(np.unique(ref)) > 20
    return cg, run


def _resnet_pair(c, hw, blk, residual_shift=1):
    return [LayerSpec("c1", c, c, hw, hw, (blk, blk), shift=9, relu=True),
            LayerSpec("c2", c, c, hw, hw, (blk, blk), shift=9, residual_shift=residual_shift,
                      relu=True)]


@pytest.mark.parametrize("board", list(BOARDS))
def test_group_input_by_identity_gemm_read_once(board):
    cfg = BOARDS[board]
    specs = _resnet_pair(32, 16, 8)
    cg, run = _run(cfg, specs, [None, "input"], 1, identity_residuals=True)
    k = cg.knobs[0]
    assert k.identity_residuals == ((0, 1),) and not k.input_on_chip
    reg = cg.layout.regions
    assert reg["identity"].kind == "weights"
    assert run.dram_bytes["input"] == reg["data"].nbytes  # one read of the group input
    assert MemType.ACC_8BIT not in _memtypes(cg)
    assert run.counters[0]["region_read_bytes"]["identity"] == reg["identity"].nbytes


@pytest.mark.parametrize("board", list(BOARDS))
def test_two_blocks_input_and_earlier_output_by_identity_gemm(board):
    """ResNet layer1 shape at a small size: layer 1 adds the group input (layer 0's padded
    input), layer 3 adds layer 1's output (layer 2's padded input, padded unevenly);
    replicate padding, left and right residual shifts."""
    cfg = BOARDS[board]
    specs = [LayerSpec("a", 32, 32, 16, 16, (8, 8), shift=9, relu=True,
                       padding_mode="replicate"),
             LayerSpec("b", 32, 32, 16, 16, (8, 8), shift=9, residual_shift=2, relu=True),
             LayerSpec("c", 32, 32, 16, 16, (8, 8), shift=8, relu=True, padding=(2, 1, 0, 1)),
             LayerSpec("d", 32, 32, 16, 16, (8, 8), shift=9, residual_shift=-1)]
    cg, run = _run(cfg, specs, [None, "input", None, 1], 2, identity_residuals=True)
    k = cg.knobs[0]
    assert k.identity_residuals == ((0, 1), (2, 3)) and k.kept_outputs == ()
    assert run.dram_bytes["feature_maps"] == 0
    assert MemType.ACC_8BIT not in _memtypes(cg)


@pytest.mark.parametrize("board", list(BOARDS))
def test_previous_layer_output_by_identity_gemm_with_pool_and_subtiles(board):
    """The last layer adds the previous layer's output, i.e. its own padded input (reflect
    padding); an inner stride-2 layer with sign; the last layer in row sub-tiles."""
    cfg = BOARDS[board]
    p = LayerSpec("p", 32, 32, 16, 16, (8, 8), shift=11, pool=True, sign=True,
                  padding_mode="replicate")
    q = LayerSpec("q", 32, 32, 8, 8, (4, 4), shift=10, relu=True, padding_mode="reflect")
    r = LayerSpec("r", 32, 32, 8, 8, (4, 4), shift=10, residual_shift=-1)
    knobs = ScheduleKnobs((LayerKnobs(1), LayerKnobs(1), LayerKnobs(1, 2)), 2)
    cg, _ = _run(cfg, [p, q, r], [None, None, 1], 3, identity_residuals=True, knobs=knobs)
    assert cg.knobs[0].identity_residuals == ((2, 2),) and cg.knobs[0].kept_outputs == ()


def test_single_layer_adds_its_own_input_on_a_stock_board():
    """No onchip_reuse needed: one layer whose residual is its own input reads it from the
    input buffer instead of a second time from DRAM (the default when it fits)."""
    s = LayerSpec("self", 32, 32, 16, 16, (8, 8), shift=9, residual_shift=1, relu=True)
    cg, run = _run(PYNQ, [s], ["input"], 4)
    assert cg.knobs[0].identity_residuals == ((0, 0),)
    assert run.dram_bytes["input"] == cg.layout.regions["data"].nbytes
    old = compile_group(PYNQ, [s], residual_source="input", identity_residuals=False)
    assert "identity" not in old.layout.regions


def test_resnet_stage_that_did_not_fit_now_fits():
    """Four 3x3 64->64 layers on one 28x28 block (ResNet-18 layer1: two basic blocks, the
    second adds the first's output): keeping the first block's output whole in zcu102's
    accumulator does not fit; with identity-GEMM residuals it does, bit-exact, the group
    input read once."""
    specs = [LayerSpec(f"l{i}", 64, 64, 28, 28, (28, 28), shift=9, relu=True,
                       residual_shift=None if i % 2 == 0 else 8) for i in range(4)]
    sources = [None, "input", None, 1]
    with pytest.raises(BufferFitError, match="acc buffer"):
        compile_group(ZCU, specs, "fused", residual_source=sources, identity_residuals=False)
    cg, run = _run(ZCU, specs, sources, 5)
    k = cg.knobs[0]
    assert k.identity_residuals == ((0, 1), (2, 3)) and not k.input_on_chip
    reg = cg.layout.regions
    assert run.dram_bytes["input"] == reg["data"].nbytes
    assert run.dram_bytes["feature_maps"] == 0
    lower_bound = reg["data"].nbytes + reg["out"].nbytes + sum(
        r.nbytes for r in reg.values() if r.kind == "weights")
    assert run.dram_bytes["total"] <= 1.05 * lower_bound


def test_accumulator_ways_still_come_first_when_they_fit():
    """Default order: the input kept in the accumulator when it fits (same DRAM bytes as the
    identity GEMM), the identity GEMM before re-reading the input from DRAM."""
    specs = _resnet_pair(64, 28, 14)
    cg = compile_group(ZCU, specs, "fused", residual_source="input")
    assert cg.knobs[0].input_on_chip and not cg.knobs[0].identity_residuals
    cg = compile_group(ZCU, specs, "fused", residual_source="input", input_on_chip=False)
    assert cg.knobs[0].identity_residuals == ((0, 1),)


@pytest.mark.parametrize("board", list(BOARDS))
def test_identity_residual_with_streamed_weights_and_sign(board):
    """Weights loaded per chunk (not resident): the identity tile is still loaded once; the
    residual follows a sign; the source is a pooled layer's output (layer 1's padded input)."""
    cfg = BOARDS[board]
    specs = [LayerSpec("a", 32, 32, 16, 16, (8, 8), shift=9, relu=True, pool=True),
             LayerSpec("b", 32, 32, 8, 8, (4, 4), shift=9, relu=True),
             LayerSpec("c", 32, 32, 8, 8, (4, 4), shift=9, residual_shift=3, sign=True)]
    cg, run = _run(cfg, specs, [None, None, 0], 7, identity_residuals=True,
                   knobs=ScheduleKnobs(vthreads=1, weights_resident=False))
    assert not cg.knobs[0].weights_resident and cg.knobs[0].identity_residuals == ((1, 2),)
    assert run.counters[0]["region_read_bytes"]["identity"] == cg.layout.regions["identity"].nbytes
