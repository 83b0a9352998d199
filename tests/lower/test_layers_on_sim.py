"""Single layers compiled to VTA programs and run on the simulator equal the NumPy integer
reference bit for bit (pynq and zcu102)."""

from __future__ import annotations

import numpy as np
import pytest

from blockconv_int_ref import random_layer_data, ref_spec
from boards import load_board
from bctvm.lower.group import compile_group, run_group
from schedules import LayerKnobs, LayerSpec, ScheduleKnobs

SMALL = dict(x_max=3, w_max=1, b_max=16)  # values that a left shift does not saturate
CASES = {
    # name: (spec, knobs or None[, data ranges])
    "conv3x3_multiblock_odd_channels": (
        LayerSpec("c3", 20, 24, 16, 16, (8, 8), shift=11, relu=True), None),
    "conv1x1": (LayerSpec("c1", 16, 40, 8, 8, (4, 4), kernel=(1, 1), padding=(0, 0), shift=7),
                None),
    "stride2_pool_sign_residual": (
        LayerSpec("s2", 16, 32, 8, 8, (4, 4), pool=True, shift=10, sign=True, residual_shift=3),
        None),
    "left_shift_rounded_residual": (
        LayerSpec("neg", 16, 16, 8, 8, (8, 8), kernel=(1, 1), padding=(0, 0), shift=-1,
                  residual_shift=-1), None, SMALL),
    "replicate": (LayerSpec("rep", 20, 24, 8, 8, (4, 4), shift=10, padding_mode="replicate",
                            relu=True), None),
    "reflect_5x5": (LayerSpec("refl", 16, 16, 8, 8, (8, 8), kernel=(5, 5), padding=(2, 2),
                              shift=12, padding_mode="reflect"), None),
    "subtiles_weights_per_chunk_one_vthread": (
        LayerSpec("sub", 48, 64, 16, 16, (8, 8), pool=True, shift=12, relu=True),
        ScheduleKnobs((LayerKnobs(oc_chunk=2, sub_rows=2, rows_outer=False),), 1, False)),
    "wide_rounding_shift": (LayerSpec("sh18", 16, 16, 8, 8, (8, 8), shift=18), None,
                            dict(b_max=1 << 24)),
    "depthwise": (LayerSpec("dw", 64, 64, 16, 16, (8, 8), groups=64, shift=8, relu=True), None),
    "grouped_reflect_odd": (LayerSpec("g2", 40, 40, 8, 8, (8, 8), groups=2, shift=10,
                                      padding_mode="reflect"), None),
    "dilated": (LayerSpec("dil", 32, 32, 16, 16, (8, 8), dilation=(2, 2), padding=(2, 2),
                          shift=11), None),
}
ZCU_CASES = ["conv3x3_multiblock_odd_channels", "conv1x1", "stride2_pool_sign_residual",
             "replicate", "depthwise"]
PARAMS = [("pynq", n) for n in CASES] + [("zcu102", n) for n in ZCU_CASES]


@pytest.mark.parametrize("board, case", PARAMS, ids=[f"{b}-{n}" for b, n in PARAMS])
def test_layer_bit_exact_on_simulator(board, case):
    cfg = load_board(board)
    spec, knobs, *ranges = CASES[case]
    cg = compile_group(cfg, [spec], knobs=knobs, name=case)
    x, w, b, s, r = random_layer_data(spec, **(ranges[0] if ranges else {}))
    run = run_group(cg, cg.image(x, [dict(weight=w, bias=b, sign=s, residual=r)]))
    ref = ref_spec(x, w, b, spec, s, r)
    assert run.output.shape == ref.shape
    assert np.array_equal(run.output, ref), f"{(run.output != ref).sum()} elements differ"
    assert len(np.unique(ref)) > 4
    c = run.counters[0]
    assert c["instructions"]["GEMM"] > 0 and c["instructions"]["FINISH"] == 1
    # the MACs the GEMM core did cover the layer (channels padded to the block width; a
    # grouped conv only multiplies the input tiles of its packed group)
    padded_macs = (spec.batch * spec.out_size[0] * (2 if spec.pool else 1)
                   * spec.out_size[1] * (2 if spec.pool else 1) * spec.ci_tiles_per_group(cfg)
                   * cfg.block_in * spec.co_tiles(cfg) * cfg.block_out
                   * spec.kernel[0] * spec.kernel[1])
    assert c["macs"] == padded_macs
    assert run.dram_bytes["feature_maps"] == 0 and run.cycles > 0


def test_layer_traffic_is_input_weights_output_once():
    """Zero-padded loads: the input is read once, every output byte written once."""
    cfg = load_board("pynq")
    spec = LayerSpec("t", 32, 32, 16, 16, (8, 8), shift=11)
    cg = compile_group(cfg, [spec])
    x, w, b, s, r = random_layer_data(spec)
    run = run_group(cg, cg.image(x, [dict(weight=w, bias=b)]))
    reg = cg.layout.regions
    assert run.dram_bytes["input"] == reg["data"].nbytes
    assert run.dram_bytes["output"] == reg["out"].nbytes
    assert run.dram_bytes["weights"] == reg["l0_weight"].nbytes + reg["l0_bias"].nbytes


def test_small_micro_op_buffer_is_refilled():
    """A board whose micro-op buffer holds 64 micro-ops: kernels are reloaded when it fills."""
    import dataclasses

    cfg = dataclasses.replace(load_board("pynq"), name="pynq-uop64", log_uop_buff_size=8)
    spec = LayerSpec("u", 48, 64, 16, 16, (8, 8), shift=12)
    cg = compile_group(cfg, [spec])
    x, w, b, _, _ = random_layer_data(spec)
    run = run_group(cg, cg.image(x, [dict(weight=w, bias=b)]))
    assert np.array_equal(run.output, ref_spec(x, w, b, spec))
    stats = cg.programs[0].stats
    assert stats["uop_loads"] > 1 and stats["micro_ops"] > cfg.uop_depth


def test_knob_choice_follows_the_traffic_estimate():
    """A layer whose weights do not fit the pynq weight buffer: the default knobs stream each
    output-channel chunk's weights once per block (chunks outside row sub-tiles); the measured
    input + weight bytes equal the estimate and beat the other loop order."""
    from schedules.knobs import estimate_dram_bytes, resolve_knobs

    cfg = load_board("pynq")
    spec = LayerSpec("deep", 512, 512, 7, 7, (7, 7), shift=14)
    k = resolve_knobs(cfg, [spec])
    lk = k.layers[0]
    assert not k.weights_resident and lk.sub_rows < 7 and lk.rows_outer is False
    x, w, b, _, _ = random_layer_data(spec)
    measured = {}
    for order in (False, True):
        knobs = ScheduleKnobs((LayerKnobs(lk.oc_chunk, lk.sub_rows, order),), k.vthreads, False)
        cg = compile_group(cfg, [spec], knobs=knobs)
        run = run_group(cg, cg.image(x, [dict(weight=w, bias=b)]))
        assert np.array_equal(run.output, ref_spec(x, w, b, spec))
        measured[order] = run.dram_bytes["input"] + run.dram_bytes["weights"]
        assert measured[order] == estimate_dram_bytes(cfg, spec, lk.oc_chunk, lk.sub_rows,
                                                      order, False,
                                                      bias_resident=cg.knobs[0].bias_resident)
    assert measured[False] < measured[True]


@pytest.mark.parametrize("board", ["pynq", "zcu102"])
def test_folded_rounding_saves_an_alu_step_and_wraps(board):
    """shift > 0 without pool/sign: the rounding constant is in the bias data (int32 wrap),
    the epilogue has no immediate ADD; biases at the int32 edge stay bit-exact."""
    from bctvm import isa
    from bctvm.isa import AluOp

    cfg = load_board(board)
    spec = LayerSpec("edge", 32, 32, 8, 8, (4, 4), shift=12, residual_shift=1, relu=True)
    assert spec.rounding_in_bias
    x, w, b, s, r = random_layer_data(spec, seed=9, w_max=3)
    b[:8] = 2**31 - (1 << 11) + np.arange(-4, 4) * 1000
    cg = compile_group(cfg, [spec])
    run = run_group(cg, cg.image(x, [dict(weight=w, bias=b, residual=r)]))
    ref = ref_spec(x, w, b, spec, s, r)
    assert np.array_equal(run.output, ref)
    assert (ref[:, :8] == 127).any() and (ref[:, :8] == 0).any()
    alus = [(i.alu_opcode, i.use_imm) for i in cg.programs[0].instructions
            if isinstance(i, isa.Alu)]
    assert (AluOp.ADD, True) not in alus and (AluOp.SHR, True) in alus
