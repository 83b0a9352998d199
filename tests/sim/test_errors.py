"""Every illegal program raises its own exception type with a message naming the culprit."""

from __future__ import annotations

import numpy as np
import pytest

from boards import load_board
from bctvm import isa
from bctvm.errors import (
    DeadlockError,
    DramOutOfRangeError,
    EncodingError,
    IllegalInstructionError,
    MissingFinishError,
    ProgramFormatError,
    SimulatorError,
    SramOutOfRangeError,
    UnknownOpcodeError,
    UopOutOfRangeError,
)
from bctvm.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store, Uop
from bctvm.sim import CycleLimitError, Simulator

from .helpers import DramBuilder, load

PYNQ = load_board("pynq")
SIM = Simulator(PYNQ)


def image_with_uops(uops=(Uop(),)):
    d = DramBuilder(PYNQ)
    d.uops("uops", list(uops))
    d.reserve("data", 64, "wgt")
    return d.image()


def run(prog, dram=None):
    return SIM.run(prog, image_with_uops() if dram is None else dram)


UOP = load(MemType.UOP, 0, 0)


# ---- SRAM --------------------------------------------------------------------------------


def test_load_past_the_input_buffer():
    prog = [load(MemType.INP, PYNQ.inp_depth - 2, 0, x=4), Finish()]
    with pytest.raises(SramOutOfRangeError, match=rf"instruction 0 \(LOAD INP\): inp buffer index "
                                                  rf"{PYNQ.inp_depth + 1} .*depth {PYNQ.inp_depth}"):
        run(prog)


def test_padded_load_overflowing_the_buffer():
    """The data fits, the zero padding does not."""
    base = PYNQ.inp_depth - 4
    prog = [load(MemType.INP, base, 0, x=4), load(MemType.INP, base, 0, x=4, x_pad_1=1), Finish()]
    with pytest.raises(SramOutOfRangeError, match=r"instruction 1 \(LOAD INP\)"):
        run(prog)


def test_gemm_dst_index_past_the_accumulator():
    prog = [UOP, Gemm(uop_bgn=0, uop_end=1, iter_out=3, dst_factor_out=PYNQ.acc_depth // 2), Finish()]
    with pytest.raises(SramOutOfRangeError, match=r"instruction 1 \(GEMM\): dst index \d+ past the end "
                                                  rf"of the acc buffer \(depth {PYNQ.acc_depth}\)"):
        run(prog)


def test_gemm_src_and_wgt_indices_past_their_buffers():
    deep_src = [UOP, Gemm(uop_bgn=0, uop_end=1, iter_in=3, src_factor_in=PYNQ.inp_depth - 1), Finish()]
    with pytest.raises(SramOutOfRangeError, match=r"src index .* inp buffer"):
        run(deep_src)
    deep_wgt = [UOP, Gemm(uop_bgn=0, uop_end=1, iter_out=2, wgt_factor_out=PYNQ.wgt_depth - 1,
                          iter_in=2, wgt_factor_in=1), Finish()]
    with pytest.raises(SramOutOfRangeError, match=r"wgt index .* wgt buffer"):
        run(deep_wgt)


def test_alu_src_index_past_the_accumulator():
    prog = [UOP, Alu(alu_opcode=AluOp.ADD, uop_bgn=0, uop_end=1, iter_out=3,
                     src_factor_out=PYNQ.acc_depth - 1), Finish()]
    with pytest.raises(SramOutOfRangeError, match=r"instruction 1 \(ALU ADD\): src index"):
        run(prog)


def test_store_past_the_output_buffer():
    prog = [Store(sram_base=PYNQ.out_depth - 1, dram_base=0, y_size=1, x_size=2, x_stride=2), Finish()]
    with pytest.raises(SramOutOfRangeError, match=r"instruction 0 \(STORE OUT\): out buffer"):
        run(prog)


# ---- DRAM --------------------------------------------------------------------------------


def test_load_past_the_dram_image():
    dram = np.zeros(10 * PYNQ.inp_elem_bytes, dtype=np.uint8)
    prog = [load(MemType.INP, 0, 8, y=2, x=2, stride=2), Finish()]
    with pytest.raises(DramOutOfRangeError, match=rf"instruction 0 \(LOAD INP\): DRAM elements \[8, 12\) "
                                                  rf".*outside the {dram.size}-byte DRAM image"):
        SIM.run(prog, dram)


def test_store_past_the_dram_image():
    dram = np.zeros(5 * PYNQ.out_elem_bytes + 3, dtype=np.uint8)
    prog = [Store(sram_base=0, dram_base=4, y_size=1, x_size=2, x_stride=2), Finish()]
    with pytest.raises(DramOutOfRangeError, match=r"instruction 0 \(STORE OUT\)"):
        SIM.run(prog, dram)


# ---- micro-ops ---------------------------------------------------------------------------


def test_uop_range_past_the_buffer():
    prog = [UOP, Gemm(uop_bgn=PYNQ.uop_depth - 1, uop_end=PYNQ.uop_depth + 1), Finish()]
    with pytest.raises(UopOutOfRangeError, match=rf"instruction 1 \(GEMM\): micro-op range "
                                                 rf"\[{PYNQ.uop_depth - 1}, {PYNQ.uop_depth + 1}\)"):
        run(prog)


def test_empty_uop_range():
    with pytest.raises(UopOutOfRangeError, match="empty"):
        run([UOP, Alu(uop_bgn=3, uop_end=3), Finish()])


def test_uops_never_loaded():
    prog = [load(MemType.UOP, 0, 0, x=2), Gemm(uop_bgn=1, uop_end=4), Finish()]
    with pytest.raises(UopOutOfRangeError, match=r"instruction 1 \(GEMM\): micro-op 2 .*never loaded"):
        run(prog, image_with_uops([Uop(), Uop()]))


# ---- tokens and stream structure -----------------------------------------------------------


def test_deadlock_names_the_waiting_instruction():
    prog = [UOP, Gemm(uop_bgn=0, uop_end=1, pop_prev=True), Finish()]
    with pytest.raises(DeadlockError, match=r"instruction 1 \(GEMM\) on the compute module waits for "
                                            r"a load->compute token \(pop_prev\)"):
        run(prog)


def test_deadlock_between_two_modules():
    """Store waits for compute, compute (FINISH) waits for store: a cycle of waits."""
    prog = [Store(sram_base=0, dram_base=0, pop_prev=True, push_prev=True), Finish(pop_next=True)]
    with pytest.raises(DeadlockError, match=r"instruction 0 \(STORE OUT\) on the store module .*"
                                            r"also blocked: instruction 1 \(FINISH\)"):
        run(prog)


def test_unmatched_pop_after_matched_ones_deadlocks():
    prog = [load(MemType.INP, 0, 0, push_next=True), UOP,
            Gemm(uop_bgn=0, uop_end=1, pop_prev=True), Gemm(uop_bgn=0, uop_end=1, pop_prev=True),
            Finish()]
    with pytest.raises(DeadlockError, match=r"instruction 3 \(GEMM\)"):
        run(prog)


def test_missing_finish():
    with pytest.raises(MissingFinishError, match="no FINISH"):
        run([UOP, Alu(uop_bgn=0, uop_end=1)])
    with pytest.raises(MissingFinishError, match="empty"):
        run([])


def test_instruction_after_finish():
    with pytest.raises(IllegalInstructionError, match=r"instruction 2 \(ALU ADD\) follows the FINISH "
                                                      r"at instruction 1"):
        run([UOP, Finish(), Alu(uop_bgn=0, uop_end=1)])


def test_token_flag_a_module_does_not_have():
    with pytest.raises(IllegalInstructionError, match=r"instruction 0 \(LOAD INP\): pop_prev set, "
                                                      r"but the load module"):
        run([load(MemType.INP, 0, 0, pop_prev=True), Finish()])
    with pytest.raises(IllegalInstructionError, match="push_next set, but the store module"):
        run([Store(push_next=True), Finish()])


def test_cycle_limit():
    prog = [load(MemType.WGT, 0, 0, x=64), Finish()]
    with pytest.raises(CycleLimitError, match=r"instruction 1 \(FINISH\).*limit of 5 cycles"):
        SIM.run(prog, np.zeros(64 * PYNQ.wgt_elem_bytes, np.uint8), max_cycles=5)


# ---- undefined / illegal encodings ---------------------------------------------------------


def encoded(prog):
    return bytearray(isa.encode_program(prog, PYNQ))


def test_unknown_opcode():
    raw = encoded([UOP, Finish()])
    raw[16] = (raw[16] & ~0x7) | 0x7  # opcode 7 in instruction 1
    with pytest.raises(UnknownOpcodeError, match="instruction 1: unknown opcode 7"):
        SIM.run(bytes(raw), image_with_uops())


def test_unknown_memory_type():
    raw = encoded([load(MemType.INP, 0, 0), Finish()])
    raw[0] |= 0x80  # memory_type is bits 7..9 of word 0: set it to 7
    raw[1] |= 0x03
    with pytest.raises(UnknownOpcodeError, match=r"instruction 0 \(LOAD\): unknown memory type 7"):
        SIM.run(bytes(raw), image_with_uops())


def test_unknown_alu_opcode():
    raw = encoded([UOP, Alu(uop_bgn=0, uop_end=1, alu_opcode=AluOp.MUL), Finish()])
    word1 = int.from_bytes(raw[24:32], "little")
    shift = 4 * PYNQ.log_acc_depth  # alu_opcode follows the four accumulator factors
    word1 = (word1 & ~(0x7 << shift)) | (0x6 << shift)
    raw[24:32] = word1.to_bytes(8, "little")
    with pytest.raises(UnknownOpcodeError, match=r"instruction 1 \(ALU\): unknown alu_opcode 6"):
        SIM.run(bytes(raw), image_with_uops())


def test_stream_length_not_a_multiple_of_16():
    with pytest.raises(ProgramFormatError, match="not a multiple of 16"):
        SIM.run(bytes(encoded([Finish()]))[:-1], image_with_uops())


@pytest.mark.parametrize("insn,what", [
    (Store(memory_type=MemType.INP), "STORE from memory type INP"),
    (Load(memory_type=MemType.OUT), "LOAD into OUT"),
    (Store(y_pad_0=1), "STORE with padding"),
])
def test_illegal_memory_types(insn, what):
    with pytest.raises(IllegalInstructionError, match=rf"instruction 0: {what}"):
        run([insn, Finish()])


def test_record_fields_must_fit_the_encoding():
    with pytest.raises(EncodingError, match=r"instruction 1 \(LOAD\): field 'dram_base' = -1"):
        run([UOP, load(MemType.INP, 0, -1), Finish()])
    with pytest.raises(EncodingError, match="field 'sram_base' = 65536"):
        run([load(MemType.INP, 1 << 16, 0), Finish()])
    with pytest.raises(EncodingError, match="field 'iter_out' = 1.5 is not an integer"):
        run([UOP, Gemm(uop_bgn=0, uop_end=1, iter_out=1.5), Finish()])


def test_not_a_program():
    with pytest.raises(ProgramFormatError, match="instruction 1 is a str"):
        run([Finish(), "LOAD"])
    with pytest.raises(ProgramFormatError, match="not int"):
        run(3)
    with pytest.raises(ProgramFormatError, match="DRAM image must be a 1-D uint8"):
        SIM.run([Finish()], np.zeros(4, dtype=np.int32))


def test_every_error_is_a_simulator_or_input_error_with_exit_code_2():
    for exc in (SramOutOfRangeError, DramOutOfRangeError, UopOutOfRangeError, DeadlockError,
                MissingFinishError, UnknownOpcodeError, IllegalInstructionError, CycleLimitError):
        assert issubclass(exc, SimulatorError) and exc.exit_code == 2
