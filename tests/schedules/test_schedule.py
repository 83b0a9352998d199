"""The s_tir schedule: scopes, DMA caches, tensorized GEMM, knobs and the fit check."""

from __future__ import annotations

from dataclasses import replace

import pytest

from boards import load_board
from bctvm.errors import BadInputError
from schedules import (BufferFitError, LayerKnobs, LayerSpec, ScheduleKnobs, check_fit,
                       layer_compute, layer_footprint, resolve_knobs, scheduled_module)
from schedules.intrinsics import GEMM_MARKER, RESET_MARKER

PYNQ = load_board("pynq")
ZCU = load_board("zcu102")


def _script(spec, cfg=PYNQ, knobs=None):
    mod, resolved = scheduled_module(layer_compute(cfg, spec), knobs)
    return mod.script(), resolved


def test_schedule_places_stages_in_vta_scopes_and_tensorizes_gemm():
    text, _ = _script(LayerSpec("c", 32, 32, 16, 16, (8, 8), shift=8, sign=True,
                                residual_shift=1))
    for scope in ("local.inp_buffer", "local.wgt_buffer", "local.acc_buffer"):
        assert f'scope="{scope}"' in text
    assert f'"{GEMM_MARKER}"' in text and f'"{RESET_MARKER}"' in text
    # the conv reduction loop over input lanes is gone: it is inside the intrinsic
    assert "l0_rci" not in text.split(GEMM_MARKER)[0].rsplit("for ", 1)[-1]


def test_schedule_attributes_for_the_lowering():
    mod, knobs = scheduled_module(layer_compute(PYNQ, LayerSpec("named", 16, 16, 8, 8, (4, 4))))
    attrs = mod["main"].attrs
    assert int(attrs["bctvm.vthreads"]) == knobs.vthreads
    assert str(attrs["bctvm.layers"]["l0"]) == "named"
    assert str(attrs["bctvm.board"]) == "pynq"


def test_default_knobs_fit_and_prefer_big_tiles():
    small = LayerSpec("small", 16, 32, 8, 8, (4, 4))
    k = resolve_knobs(PYNQ, [small])
    assert k.vthreads == 2 and k.weights_resident
    assert k.layers[0].oc_chunk == 2 and k.layers[0].sub_rows == 4
    big = LayerSpec("big", 64, 64, 56, 56, (28, 28))  # 28x28x4 tiles > the pynq acc depth
    k = resolve_knobs(PYNQ, [big])
    lk = k.layers[0]
    assert lk.sub_rows < 28 or lk.oc_chunk < 4
    fp = layer_footprint(PYNQ, big, lk.oc_chunk, lk.sub_rows, k.vthreads, k.weights_resident)
    assert fp["inp"] <= PYNQ.inp_depth and fp["acc"] <= PYNQ.acc_depth
    assert fp["wgt"] <= PYNQ.wgt_depth


def test_footprint_grows_with_tiles():
    s = LayerSpec("f", 64, 64, 56, 56, (28, 28))
    a = layer_footprint(PYNQ, s, 1, 7, 1, True)
    b = layer_footprint(PYNQ, s, 2, 14, 2, True)
    assert all(b[k] >= a[k] for k in a) and b["acc"] > a["acc"] and b["inp"] > a["inp"]


def test_fit_error_names_layer_and_buffer():
    huge = LayerSpec("huge", 512, 512, 28, 28, (28, 28))
    with pytest.raises(BufferFitError, match="huge.*inp buffer"):
        check_fit(PYNQ, [huge], ScheduleKnobs((LayerKnobs(4, 28),), 2, True))
    # all 256 input tiles of one output row do not fit; per GEMM pass they would (asked not to)
    wide = LayerSpec("huge", 4096, 64, 8, 8, (8, 8))
    with pytest.raises(BufferFitError, match="huge.*inp buffer"):
        resolve_knobs(PYNQ, [wide], ScheduleKnobs((LayerKnobs(inp_per_pass=False),)))
    assert resolve_knobs(PYNQ, [wide]).layers[0].inp_per_pass
    # depthwise: one input tile per group, nothing to split per pass
    with pytest.raises(BufferFitError, match="huge"):
        resolve_knobs(PYNQ, [LayerSpec("huge", 4096, 4096, 8, 8, (8, 8), groups=4096)])


@pytest.mark.parametrize("knobs, words", [
    (ScheduleKnobs((LayerKnobs(oc_chunk=3),)), "oc_chunk"),
    (ScheduleKnobs((LayerKnobs(sub_rows=5),)), "sub_rows"),
    (ScheduleKnobs(vthreads=3), "vthreads"),
])
def test_bad_knobs_are_reported(knobs, words):
    with pytest.raises(BadInputError, match=words):
        resolve_knobs(PYNQ, [LayerSpec("k", 16, 64, 8, 8, (8, 8))], knobs)


def test_knobs_change_the_loop_structure():
    spec = LayerSpec("t", 16, 64, 16, 16, (8, 8))
    whole, _ = _script(spec, ZCU, ScheduleKnobs((LayerKnobs(2, 8),)))
    tiled, _ = _script(spec, ZCU, ScheduleKnobs((LayerKnobs(1, 2),)))
    assert whole != tiled
    assert "h_1_0" in tiled and "h_1_0" not in whole  # row sub-tile loop


def test_group_footprint_counts_one_layer_at_a_time():
    """Two 64-channel layers on 28x28 blocks fuse on zcu102: the first layer's output block is
    dead once copied into the input buffer, so the peak is the larger layer, not the sum."""
    from schedules.knobs import group_footprint

    a = LayerSpec("a", 64, 64, 56, 56, (28, 28), relu=True)
    b = LayerSpec("b", 64, 64, 56, 56, (28, 28), residual_shift=0)
    k = resolve_knobs(ZCU, [a, b])
    fp = group_footprint(ZCU, [a, b], k)
    one = layer_footprint(ZCU, a, 2, 28, k.vthreads, k.weights_resident, last=False)
    assert fp["acc"] < 2 * one["acc"] and fp["acc"] <= ZCU.acc_depth


def test_footprint_holds_padded_inputs_for_identity_residuals():
    """A padded input read by a later layer's identity-GEMM residual stays in the input buffer
    while the layers in between compute; the identity tile takes one weight element."""
    from schedules.knobs import group_footprint

    specs = [LayerSpec(n, 64, 64, 28, 28, (28, 28), residual_shift=0 if n == "c" else None)
             for n in "abc"]
    base = ScheduleKnobs(tuple(LayerKnobs(1) for _ in specs), 1, True)
    plain = group_footprint(ZCU, specs, base)
    held = group_footprint(ZCU, specs, replace(base, identity_residuals=((0, 2),)))
    pad = 2 * 30 * 30  # one padded 28x28 block of 64 channels (zcu102: 32-lane tiles)
    assert held["inp"] == plain["inp"] + pad
    assert held["wgt"] == plain["wgt"] + 1 and held["acc"] == plain["acc"]
