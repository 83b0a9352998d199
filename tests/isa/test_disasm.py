"""Disassembler: one line per instruction naming every field, micro-ops under LOAD UOP."""

import re

import numpy as np

from boards import load_board
from bctvm.disasm import disasm_uops, disassemble, format_insn, format_uop, opcode_histogram
from bctvm.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Opcode, Store, Uop, encode_program, field_layout
from bctvm.program import DramImage

PYNQ = load_board("pynq")


def _program(img: DramImage):
    uops = img.put_uops("uops", [Uop(dst=1, src=2, wgt=3), Uop(dst=4, src=5, wgt=6), Uop(dst=7)])
    return [
        Load(memory_type=MemType.UOP, sram_base=10, dram_base=uops.dram_base, y_size=1, x_size=3,
             x_stride=3),
        Load(memory_type=MemType.WGT, dram_base=2, x_size=4, x_stride=4, push_next=True),
        Gemm(reset_reg=True, uop_bgn=10, uop_end=13, iter_out=2, iter_in=3, wgt_factor_in=1,
             pop_prev=True),
        Alu(alu_opcode=AluOp.MAX, use_imm=True, imm=-5, uop_bgn=10, uop_end=11, push_next=True),
        Store(dram_base=99, x_size=2, x_stride=2, pop_prev=True, push_prev=True),
        Finish(pop_next=True),
    ]


def test_one_line_per_instruction_with_every_field():
    img = DramImage(PYNQ)
    prog = _program(img)
    lines = disassemble(prog, PYNQ)
    assert len(lines) == len(prog)
    for i, (line, insn) in enumerate(zip(lines, prog)):
        assert re.match(rf"\s*{i}\s+{type(insn).OPCODE.name}\b", line), line
        w0, w1 = field_layout(type(insn).OPCODE, PYNQ)
        for name, _ in w0 + w1:
            if name in ("opcode", "memory_type", "alu_opcode", "pop_prev", "pop_next",
                        "push_prev", "push_next"):
                continue
            assert f"{name}={int(getattr(insn, name))}" in line, (name, line)
    assert " WGT " in lines[1] and lines[1].endswith("| push_next")
    assert "reset_reg=1" in lines[2] and "iter_in=3" in lines[2] and lines[2].endswith("| pop_prev")
    assert "MAX imm" in lines[3] and "imm=-5" in lines[3]
    assert " OUT " in lines[4] and lines[4].endswith("| pop_prev push_prev")
    assert lines[5].split()[:2] == ["5", "FINISH"] and lines[5].endswith("| pop_next")
    assert format_insn(Gemm(), PYNQ).endswith("| -")


def test_raw_bytes_and_records_disassemble_alike():
    img = DramImage(PYNQ)
    prog = _program(img)
    assert disassemble(encode_program(prog, PYNQ), PYNQ) == disassemble(prog, PYNQ)


def test_micro_ops_listed_under_load_uop_with_a_dram_image():
    img = DramImage(PYNQ)
    prog = _program(img)
    lines = disassemble(prog, PYNQ, img.to_array())
    assert len(lines) == len(prog) + 3
    assert lines[1].split() == ["uop[10]", "dst=1", "src=2", "wgt=3"]
    assert lines[3].split() == ["uop[12]", "dst=7", "src=0", "wgt=0"]
    assert lines[4].split()[:2] == ["1", "LOAD"]
    short = disassemble(prog[:1], PYNQ, img.to_array()[:8])  # only two words in the image
    assert short[-1].split()[:2] == ["uop[12]", "<outside"]


def test_uop_lines_and_histogram():
    from bctvm.isa import encode_uops

    words = encode_uops([Uop(dst=2047, src=2047, wgt=1023), Uop()], PYNQ)
    assert disasm_uops(words, PYNQ, first_index=5) == [
        format_uop(Uop(2047, 2047, 1023), 5),
        format_uop(Uop(0, 0, 0), 6),
    ]
    assert format_uop(Uop(1, 2, 3), 0).split() == ["uop[0]", "dst=1", "src=2", "wgt=3"]
    hist = opcode_histogram(_program(DramImage(PYNQ)))
    assert hist == {"LOAD": 2, "STORE": 1, "GEMM": 1, "FINISH": 1, "ALU": 1}
    assert set(hist) == {op.name for op in Opcode}
    assert np.sum(list(hist.values())) == 6
