"""Weights reused across blocks: the loop order of a one-layer group (`blocks_inside`,
output-channel chunks outside the block loops) loads each chunk's weights once for all blocks
and re-reads the input per chunk; chosen by estimated DRAM traffic; bit-exact either way on
every board, and the simulator moves exactly the estimated bytes."""

from __future__ import annotations

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm.errors import BadInputError
from bctvm.lower.group import compile_group, run_group
from schedules import LayerSpec, ScheduleKnobs, resolve_knobs
from schedules.knobs import estimate_dram_bytes

# 3x3 256 -> 256 on a 2x2 grid of 4x4 blocks: its weights never fit the weight buffer
SPEC = LayerSpec("wide", 256, 256, 8, 8, (4, 4), shift=12, relu=True)


@pytest.mark.parametrize("board", ["pynq", "ultra96", "zcu102"])
def test_blocks_inside_reads_weights_once(board):
    cfg = load_board(board)
    x, w, b, sg, _ = random_layer_data(SPEC, seed=5)
    ref = ref_spec(x, w, b, SPEC, sg)
    layer = [dict(weight=w, bias=b, sign=sg)]
    runs = {}
    for inside in (False, True):
        cg = compile_group(cfg, [SPEC], knobs=ScheduleKnobs(blocks_inside=inside),
                           name=f"o{int(inside)}")
        run = run_group(cg, cg.image(x, layer))
        assert np.array_equal(run.output, ref), inside
        k = cg.knobs[0]
        assert k.blocks_inside is inside and not k.weights_resident
        lk = k.layer(0)
        est = estimate_dram_bytes(cfg, SPEC, lk.oc_chunk, lk.sub_rows, lk.rows_outer is not False,
                                  False, True, k.bias_resident, bool(lk.inp_per_pass), inside)
        moved = run.dram_bytes["weights"] + run.dram_bytes["input"]
        runs[inside] = (moved, est, run.dram_bytes["weights"])
        assert moved == est, (inside, moved, est)
    w_bytes = cg.layout.regions["l0_weight"].nbytes
    assert runs[True][2] - runs[True][2] % w_bytes == w_bytes  # weights once (+ bias tiles)
    assert runs[False][2] >= 4 * w_bytes  # once per block
    # the default picks the order with fewer estimated bytes
    auto = resolve_knobs(cfg, [SPEC])
    assert auto.blocks_inside == (runs[True][1] < runs[False][1])


def test_blocks_inside_needs_whole_blocks():
    from schedules import LayerKnobs

    cfg = load_board("zcu102")
    with pytest.raises(BadInputError, match="blocks_inside"):
        resolve_knobs(cfg, [SPEC], ScheduleKnobs((LayerKnobs(sub_rows=2),), blocks_inside=True))
