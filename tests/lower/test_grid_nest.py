"""Fused groups across block-grid changes (schedules/grid_nest.py): coarsening, where several
pooled output blocks of a layer make one block of the next (a stride-2 block conv at a fixed
block size), and refining, where one output block of a layer covers several blocks of the
next (a hierarchical layer, then a fixed block size). Bit-exact against the integer
reference fused and layerwise on every board; the fused program keeps the fine blocks on chip
in the coarse padded block, or the coarse block in the accumulator (no feature maps)."""

from __future__ import annotations

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm.errors import BlockShapeError
from bctvm.isa import MemType
from bctvm.lower.group import compile_group, run_group
from schedules import LayerSpec
from schedules.block_conv2d import group_compute
from schedules.grid_nest import nesting
from schedules.knobs import ScheduleKnobs

BOARDS = ["pynq", "ultra96", "zcu102"]


def _coarsen(c: int):
    """a: 16x16 map in 8x8 blocks, pooled (2x2 grid of 4x4 outputs) -> b: one 8x8 block."""
    a = LayerSpec("a", c, 2 * c, 16, 16, (8, 8), shift=9, relu=True, pool=True)
    b = LayerSpec("b", 2 * c, c, 8, 8, (8, 8), shift=9, relu=True)
    return [a, b], "external"


def _coarsen_twice(c: int):
    """4x4 grid -> (pool) 2x2 grid -> (pool) 1x1, then a residual on the coarse grid."""
    a = LayerSpec("a", c, c, 32, 32, (8, 8), shift=9, relu=True)
    b = LayerSpec("b", c, 2 * c, 32, 32, (8, 8), shift=9, relu=True, pool=True)
    d = LayerSpec("d", 2 * c, 2 * c, 16, 16, (16, 16), shift=9, relu=True, pool=True)
    e = LayerSpec("e", 2 * c, 2 * c, 8, 8, (8, 8), shift=9, relu=True)
    f = LayerSpec("f", 2 * c, 2 * c, 8, 8, (8, 8), shift=9, residual_shift=0)
    return [a, b, d, e, f], [None, None, None, None, 3]


def _coarsen_rect_1x1(c: int):
    """4x2 fine blocks per coarse block, consumer a 1x1 conv without padding."""
    a = LayerSpec("a", c, c, 16, 16, (4, 8), shift=9, relu=True, pool=True)
    b = LayerSpec("b", c, c, 8, 8, (8, 8), kernel=(1, 1), padding=(0, 0, 0, 0), shift=6,
                  relu=True)
    return [a, b], "external"


def _refine(c: int):
    """A hierarchical 2x2 layer (16x16 blocks of a 32x32 map), then a fixed-8 stride-2 one
    (conv + pool): each coarse output block covers 2x2 blocks of the next layer."""
    a = LayerSpec("a", c, c, 32, 32, (16, 16), shift=9, relu=True)
    b = LayerSpec("b", c, 2 * c, 32, 32, (8, 8), shift=9, relu=True, pool=True)
    return [a, b], "external"


def _coarsen_refine(c: int):
    """Coarsen (2x2 pooled blocks -> one 16x16 block), then refine into 4x4 blocks with a
    residual between two layers of the fine grid."""
    a = LayerSpec("a", c, c, 32, 32, (16, 16), shift=9, relu=True, pool=True)
    b = LayerSpec("b", c, c, 16, 16, (16, 16), shift=9, relu=True)
    d = LayerSpec("d", c, c, 16, 16, (4, 4), shift=9, relu=True)
    e = LayerSpec("e", c, c, 16, 16, (4, 4), shift=9, residual_shift=1)
    return [a, b, d, e], [None, None, None, 2]


CASES = {"coarsen": _coarsen, "coarsen_twice": _coarsen_twice, "rect_1x1": _coarsen_rect_1x1,
         "refine": _refine, "coarsen_refine": _coarsen_refine}


def _data(specs, residuals, seed=5):
    rng = np.random.default_rng(seed)
    s0 = specs[0]
    x = rng.integers(-128, 128, (1, s0.in_channels, s0.height, s0.width)).astype(np.int8)
    layers, outs = [], []
    res = residuals if isinstance(residuals, list) else [None] * len(specs)
    y = x
    for i, s in enumerate(specs):
        _, w, b, sg, _ = random_layer_data(s, seed=30 + i)
        layers.append(dict(weight=w, bias=b, sign=sg))
        r = None if res[i] is None else outs[res[i]]
        y = ref_spec(y, w, b, s, sg, residual=r)
        outs.append(y)
    return x, layers, y


def _run(board, mode, case):
    cfg = load_board(board)
    specs, residuals = CASES[case](cfg.block_out)
    x, layers, ref = _data(specs, residuals)
    cg = compile_group(cfg, specs, mode=mode, residual_source=residuals, name=case)
    return cg, run_group(cg, cg.image(x, layers)), ref


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("mode", ["fused", "layerwise"])
@pytest.mark.parametrize("case", list(CASES))
def test_coarsening_bit_exact(board, mode, case):
    cfg = load_board(board)
    if mode == "fused" and not cfg.onchip_reuse:
        pytest.skip("fused groups keep blocks on chip: needs onchip_reuse")
    cg, run, ref = _run(board, mode, case)
    assert np.array_equal(run.output, ref)
    assert len(np.unique(ref)) > 10
    assert len(cg.programs) == (1 if mode == "fused" else len(cg.specs))


def test_coarse_block_collected_on_chip():
    cg, run, _ = _run("zcu102", "fused", "coarsen")
    assert run.dram_bytes["feature_maps"] == 0
    insns = [i for i in cg.programs[0].instructions if hasattr(i, "memory_type")]
    # the coarse padded block: zero-filled (padding-only LOADs), fine blocks copied in
    fills = [i for i in insns if i.memory_type == MemType.INP and i.y_size == 0]
    assert fills and all(i.y_pad_0 == 1 and i.x_size > 0 for i in fills)
    assert sum(i.x_size for i in fills) == 10 * 10 * cg.specs[1].ci_tiles(cg.cfg)
    copied = sum(i.y_size * i.x_size for i in insns if i.memory_type == MemType.OUT_INP)
    assert copied == 8 * 8 * cg.specs[1].ci_tiles(cg.cfg)  # every fine output pixel, once
    a_in = cg.layout.regions["data"].nbytes
    assert run.dram_bytes["input"] == a_in  # the input read once


def test_refined_block_computed_once():
    cg, run, _ = _run("zcu102", "fused", "refine")
    assert run.dram_bytes["feature_maps"] == 0
    assert cg.knobs[0].kept_outputs == (0,)  # the coarse output whole in the accumulator
    # the coarse layer's 3x3 conv runs once per 16x16 block: 2x2 blocks x 16x16 pixels
    a, b = cg.specs
    assert run.macs() == a.macs() + b.macs()
    assert run.dram_bytes["input"] == cg.layout.regions["data"].nbytes


@pytest.mark.parametrize("refine_rows", [False, True])
def test_refine_per_row_of_fine_blocks(refine_rows):
    """refine_rows: the coarse layer computed per row of fine blocks (its input rows with
    their halo, those output rows kept) instead of once per coarse block: bit-exact, every
    MAC once, less accumulator, more input (the halo rows read again)."""
    cfg = load_board("zcu102")
    a = LayerSpec("a", 32, 32, 32, 32, (16, 16), shift=9, relu=True)
    b = LayerSpec("b", 32, 64, 32, 32, (4, 4), shift=9, relu=True, pool=True)
    x, layers, ref = _data([a, b], "external")
    cg = compile_group(cfg, [a, b], knobs=ScheduleKnobs(refine_rows=refine_rows,
                                                        vthreads=1))
    run = run_group(cg, cg.image(x, layers))
    assert np.array_equal(run.output, ref)
    assert run.macs() == a.macs() + b.macs() and run.dram_bytes["feature_maps"] == 0
    data = cg.layout.regions["data"].nbytes
    if refine_rows:
        # 4 rows of 16 per row of fine blocks, each with its halo rows inside the block
        assert run.dram_bytes["input"] == data * (5 + 6 + 6 + 5) // 16
        assert cg.fits[0].footprint["acc"] < 4 * 16 + 16 * 16
    else:
        assert run.dram_bytes["input"] == data
        assert cg.fits[0].footprint["acc"] >= 16 * 16


def test_refine_twice_or_before_a_grid_change_is_rejected():
    cfg = load_board("zcu102")
    a = LayerSpec("a", 32, 32, 32, 32, (16, 16), shift=9)
    b = LayerSpec("b", 32, 32, 32, 32, (8, 8), shift=9, pool=True)
    c = LayerSpec("c", 32, 32, 16, 16, (8, 8), shift=9)
    with pytest.raises(BlockShapeError, match="refines once"):
        group_compute(cfg, [a, b, c])


def test_nesting_kinds():
    assert nesting((4, 4), (4, 4)).kind == "same"
    n = nesting((14, 14), (28, 28))
    assert (n.kind, n.ratio, n.fine_blocks) == ("coarsen", (2, 2), 4)
    assert nesting((56, 56), (8, 8)).ratio == (7, 7)
    assert nesting((56, 56), (8, 8)).kind == "refine"
    assert nesting((6, 6), (4, 4)) is None
    assert nesting((4, 8), (8, 4)) is None


def test_grids_that_do_not_nest_are_rejected():
    cfg = load_board("zcu102")
    a = LayerSpec("a", 32, 32, 24, 24, (12, 12), shift=9, pool=True)  # 6x6 outputs
    b = LayerSpec("b", 32, 32, 12, 12, (4, 4), shift=9)
    with pytest.raises(BlockShapeError, match="does not continue"):
        group_compute(cfg, [a, b])
    c = LayerSpec("c", 32, 32, 12, 12, (12, 12), shift=9, padding_mode="replicate")
    with pytest.raises(BlockShapeError, match="constant padding"):
        group_compute(cfg, [a, c])


def test_fine_layer_weights_stay_resident_when_all_do_not_fit():
    """A coarsening group whose weights do not all fit: the fine layer (run per fine block)
    keeps its weights resident (knobs.resident_layers), the coarse one streams them."""
    cfg = load_board("zcu102")
    a = LayerSpec("a", 64, 128, 16, 16, (8, 8), shift=10, relu=True, pool=True)
    b = LayerSpec("b", 128, 256, 8, 8, (8, 8), shift=10, relu=True)
    x, layers, ref = _data([a, b], "external")
    runs = {}
    for name, knobs in (("partial", None), ("stream", ScheduleKnobs(weights_resident=False))):
        cg = compile_group(cfg, [a, b], knobs=knobs, name=name)
        runs[name] = (cg, run_group(cg, cg.image(x, layers)))
        assert np.array_equal(runs[name][1].output, ref)
    k = runs["partial"][0].knobs[0]
    assert not k.weights_resident and k.resident_layers == (0,)
    assert runs["stream"][0].knobs[0].resident_layers == ()
    a_wgt = 128 * 64 * 9  # int8 weight bytes of layer a, read per fine block when streamed
    saved = runs["stream"][1].dram_bytes["weights"] - runs["partial"][1].dram_bytes["weights"]
    assert saved == 3 * a_wgt
