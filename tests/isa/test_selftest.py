"""The self-test program: token protocol, layouts, and a bit-exact run on the simulator."""

import numpy as np
import pytest
import torch

from boards import list_boards, load_board
from bctvm.errors import BadInputError, ValidationMismatch
from bctvm.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store, decode_program, encode_program
from bctvm.selftest import (
    MUL,
    build_selftest,
    check_output,
    conv_acc,
    format_report,
    pick_shift,
    raise_on_mismatch,
    requantize,
    run_selftest,
)
from bctvm.sim import Simulator

PYNQ = load_board("pynq")


def _module(insn) -> str:
    if isinstance(insn, Load) and insn.memory_type in (MemType.INP, MemType.WGT, MemType.OUT_INP):
        return "load"
    if isinstance(insn, Store):
        return "store"
    return "compute"


def _token_balance(insns) -> dict:
    """Pushes minus pops per queue, walking each module's instructions (static check)."""
    bal = {"l2c": 0, "c2l": 0, "c2s": 0, "s2c": 0}
    for insn in insns:
        m = _module(insn)
        if m == "load":
            bal["c2l"] -= insn.pop_next
            bal["l2c"] += insn.push_next
            assert not insn.pop_prev and not insn.push_prev
        elif m == "compute":
            bal["l2c"] -= insn.pop_prev
            bal["s2c"] -= insn.pop_next
            bal["c2l"] += insn.push_prev
            bal["c2s"] += insn.push_next
        else:
            bal["c2s"] -= insn.pop_prev
            bal["s2c"] += insn.push_prev
            assert not insn.pop_next and not insn.push_next
    return bal


@pytest.mark.parametrize("row_tiles", [1, 2, 4])
def test_program_shape_and_balanced_tokens(row_tiles):
    prog = build_selftest(PYNQ, row_tiles=row_tiles)
    insns = prog.insns
    assert isinstance(insns[-1], Finish) and insns[-1].pop_next
    assert sum(isinstance(i, Finish) for i in insns) == 1
    assert _token_balance(insns) == {"l2c": 0, "c2l": 0, "c2s": 0, "s2c": 0}
    ops = [i.alu_opcode for i in insns if isinstance(i, Alu)]
    assert ops.count(AluOp.SHR) == row_tiles and ops.count(AluOp.MIN) == row_tiles
    assert {AluOp.ADD, AluOp.MUL, AluOp.SHR, AluOp.MIN, AluOp.MAX} == set(ops)
    pads = [(i.y_pad_0, i.y_pad_1) for i in insns if isinstance(i, Load) and i.memory_type == MemType.INP]
    assert pads[0] == (1, 0 if row_tiles > 1 else 1) and pads[-1][1] == 1
    assert sum(isinstance(i, Gemm) for i in insns) == 2 * row_tiles
    # encodable on this board, and survives the .bin format
    assert decode_program(encode_program(insns, PYNQ), PYNQ) == insns


def test_reference_matches_torch_conv():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (1, 16, 5, 6))
    w = rng.integers(-128, 128, (8, 16, 3, 3))
    b = rng.integers(-1000, 1000, 8)
    want = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64),
                                      torch.tensor(w, dtype=torch.float64),
                                      torch.tensor(b, dtype=torch.float64), padding=1)
    acc = conv_acc(x, w, b)
    assert np.array_equal(acc, want.numpy().astype(np.int64))
    s = pick_shift(acc)
    y = requantize(acc, s)
    assert y.dtype == np.int8 and y.min() >= 0 and 0 < np.mean(y == 127) <= 0.05
    # requantize by hand for one element
    v = int(acc[0, 3, 2, 4])
    assert y[0, 3, 2, 4] == max(min((v * MUL + (1 << (s - 1))) >> s, 127), 0)


@pytest.mark.parametrize("board", list_boards())
def test_selftest_bit_exact_on_every_board(board):
    report, prog = run_selftest(board)
    assert report["validation"]["bit_exact"] is True
    assert report["validation"]["max_abs_err"] == 0
    assert report["board"] == board
    assert report["cycles"] > 0 and report["latency_ms"] > 0
    c = report["counters"]
    s = prog.shape
    cfg = prog.cfg
    assert c["macs"] == s["batch"] * s["in_channels"] * s["out_channels"] * 9 * s["height"] * s["width"]
    assert c["gemm_uops"] > 0 and c["alu_uops"] > 0
    assert c["dram_read_bytes"]["wgt"] == prog.image.region("weights").n_elems * cfg.wgt_elem_bytes
    out = prog.image.region("output")
    assert c["dram_write_bytes"] == out.byte_end - out.byte_start
    # ~5% clipped at 127, about half zeroed by ReLU: the epilogue really acts
    assert 0 < np.mean(prog.expected == 127) <= 0.05 and 0.3 < np.mean(prog.expected == 0) < 0.7
    text = format_report(report)
    assert "bit-exact" in text and board in text


@pytest.mark.parametrize("row_tiles", [1, 4])
def test_selftest_other_tilings(row_tiles):
    report, _ = run_selftest("pynq", seed=5, row_tiles=row_tiles, height=8, width=6)
    assert report["validation"]["bit_exact"]
    assert report["selftest"]["row_tiles"] == row_tiles


def test_pipelining_overlaps_modules():
    """More row tiles move the same data but overlap load/compute/store: fewer cycles than
    running the tiles back to back would take."""
    one, _ = run_selftest("pynq", row_tiles=1, height=8)
    four, _ = run_selftest("pynq", row_tiles=4, height=8)
    assert four["counters"]["macs"] == one["counters"]["macs"]
    assert four["cycles"] < 2 * one["cycles"]


def test_wrong_weights_are_caught():
    prog = build_selftest(PYNQ)
    w = prog.image.read("weights")
    w[0] = 127  # one weight tile (out block 0, in block 0, tap 0,0) changed
    prog.image.write("weights", w)
    res = Simulator(PYNQ).run(prog.insns, prog.dram, regions=prog.regions)
    v = check_output(prog, res.dram)
    assert v["bit_exact"] is False and v["mismatches"] > 0
    with pytest.raises(ValidationMismatch, match="outputs differ"):
        raise_on_mismatch({"board": "pynq", "validation": v})


def test_bad_layer_parameters():
    with pytest.raises(BadInputError, match="multiple of row_tiles"):
        build_selftest(PYNQ, height=9, row_tiles=2)
    with pytest.raises(BadInputError, match="inp elements"):
        build_selftest(PYNQ, height=64, width=64, row_tiles=1)
