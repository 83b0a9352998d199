"""Bit-exact instruction and micro-op encoding on every bundled board."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boards import list_boards, load_board
from bctvm.errors import EncodingError, UnknownOpcodeError
from bctvm.isa import (
    INSN_CLASSES,
    Alu,
    AluOp,
    Finish,
    Gemm,
    Load,
    MemType,
    Opcode,
    Store,
    Uop,
    decode,
    decode_program,
    decode_uop,
    encode,
    encode_program,
    encode_uop,
    field_layout,
    uop_layout,
)

BOARDS = {name: load_board(name) for name in list_boards()}
ENUMS = {"memory_type": MemType, "alu_opcode": AluOp}
BOOLS = {"pop_prev", "pop_next", "push_prev", "push_next", "reset_reg", "use_imm"}


def field_value(name: str, bits: int):
    """Strategy for one field's value, within its encoded width."""
    if name in BOOLS:
        return st.booleans()
    if name in ENUMS:
        return st.sampled_from(list(ENUMS[name]))
    if name == "imm":
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return st.integers(0, (1 << bits) - 1)


@st.composite
def instructions(draw, cfg, opcode):
    w0, w1 = field_layout(opcode, cfg)
    values = {n: draw(field_value(n, b)) for n, b in w0 + w1 if n != "opcode"}
    return INSN_CLASSES[opcode](**values)


@pytest.mark.parametrize("board", sorted(BOARDS))
@pytest.mark.parametrize("opcode", list(Opcode), ids=lambda o: o.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_encode_decode_round_trip(board, opcode, data):
    cfg = BOARDS[board]
    insn = data.draw(instructions(cfg, opcode))
    raw = encode(insn, cfg)
    assert len(raw) == 16
    back = decode(raw, cfg)
    assert back == insn
    assert encode(back, cfg) == raw


@pytest.mark.parametrize("board", sorted(BOARDS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_decode_then_encode_is_identity_on_raw_words(board, data):
    """Any 128-bit pattern with a defined opcode/type/op and zero unused bits survives."""
    cfg = BOARDS[board]
    opcode = data.draw(st.sampled_from(list(Opcode)))
    words = []
    for layout in field_layout(opcode, cfg):
        word, pos = 0, 0
        for name, bits in layout:
            if name == "opcode":
                v = int(opcode)
            elif name in ENUMS:
                v = int(data.draw(st.sampled_from(list(ENUMS[name]))))
            else:
                v = data.draw(st.integers(0, (1 << bits) - 1))
            word |= v << pos
            pos += bits
        words.append(word)
    while len(words) < 2:
        words.append(0)
    raw = words[0].to_bytes(8, "little") + words[1].to_bytes(8, "little")
    assert encode(decode(raw, cfg), cfg) == raw


@pytest.mark.parametrize("board", sorted(BOARDS))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_uop_round_trip(board, data):
    cfg = BOARDS[board]
    vals = {n: data.draw(st.integers(0, (1 << b) - 1)) for n, b in uop_layout(cfg)}
    uop = Uop(**vals)
    word = encode_uop(uop, cfg)
    assert 0 <= word < 1 << 32
    assert decode_uop(word, cfg) == uop


# ---- known bit patterns, worked out by hand from the layout in vta-spec.md (pynq) ----------
# pynq: log depths uop 13, inp 11, wgt 10, acc 11.
PYNQ = BOARDS["pynq"]


def _raw(w0: int, w1: int) -> bytes:
    return w0.to_bytes(8, "little") + w1.to_bytes(8, "little")


def test_known_load_bits():
    insn = Load(pop_prev=True, push_next=True, memory_type=MemType.INP, sram_base=0x12,
                dram_base=0x345, y_size=7, x_size=9, x_stride=30, y_pad_0=1, y_pad_1=2,
                x_pad_0=3, x_pad_1=15)
    # word 0: opcode 0 @0 (3), pop_prev @3, pop_next @4, push_prev @5, push_next @6,
    #         memory_type @7 (3), sram_base @10 (16), dram_base @26 (32)
    w0 = (1 << 3) | (1 << 6) | (2 << 7) | (0x12 << 10) | (0x345 << 26)
    # word 1: y_size @0, x_size @16, x_stride @32 (16 each), pads @48, 52, 56, 60 (4 each)
    w1 = 7 | (9 << 16) | (30 << 32) | (1 << 48) | (2 << 52) | (3 << 56) | (15 << 60)
    assert encode(insn, PYNQ) == _raw(w0, w1)
    assert w0 == 0x0000_000D_1400_4948  # the same word, spelled out
    assert decode(_raw(w0, w1), PYNQ) == insn


def test_known_store_and_finish_bits():
    st_ = Store(pop_prev=True, push_prev=True, sram_base=5, dram_base=1, y_size=1, x_size=2,
                x_stride=2)
    w0 = 1 | (1 << 3) | (1 << 5) | (4 << 7) | (5 << 10) | (1 << 26)
    w1 = 1 | (2 << 16) | (2 << 32)
    assert encode(st_, PYNQ) == _raw(w0, w1)
    # FINISH with pop_next: opcode 3 | 1 << 4 = 0x13, everything else zero.
    assert encode(Finish(pop_next=True), PYNQ) == bytes([0x13]) + bytes(15)


def test_known_gemm_bits():
    insn = Gemm(reset_reg=True, uop_bgn=3, uop_end=8, iter_out=5, iter_in=6,
                dst_factor_out=16, dst_factor_in=1, src_factor_out=18, src_factor_in=1,
                wgt_factor_out=9, wgt_factor_in=0, push_prev=True)
    # word 0: head (7), reset_reg @7, uop_bgn @8 (13), uop_end @21 (14), iter_out @35 (14),
    #         iter_in @49 (14)
    w0 = 2 | (1 << 5) | (1 << 7) | (3 << 8) | (8 << 21) | (5 << 35) | (6 << 49)
    # word 1: dst_out @0 (11), dst_in @11 (11), src_out @22 (11), src_in @33 (11),
    #         wgt_out @44 (10), wgt_in @54 (10)
    w1 = 16 | (1 << 11) | (18 << 22) | (1 << 33) | (9 << 44)
    assert encode(insn, PYNQ) == _raw(w0, w1)


def test_known_alu_bits_with_negative_immediate():
    insn = Alu(uop_bgn=1, uop_end=2, iter_out=1, iter_in=64, dst_factor_in=1,
               alu_opcode=AluOp.SHR, use_imm=True, imm=-2)
    w0 = 4 | (1 << 8) | (2 << 21) | (1 << 35) | (64 << 49)
    # word 1: dst_out @0, dst_in @11, src_out @22, src_in @33 (11 each), alu_opcode @44 (3),
    #         use_imm @47, imm @48 (16, two's complement: -2 = 0xFFFE)
    w1 = (1 << 11) | (3 << 44) | (1 << 47) | (0xFFFE << 48)
    assert encode(insn, PYNQ) == _raw(w0, w1)
    assert decode(_raw(w0, w1), PYNQ).imm == -2


def test_known_uop_bits():
    # pynq micro-op: dst @0 (11), src @11 (11), wgt @22 (10)
    assert encode_uop(Uop(dst=3, src=5, wgt=7), PYNQ) == 3 | (5 << 11) | (7 << 22)


def test_zcu102_field_widths_follow_the_board():
    cfg = BOARDS["zcu102"]
    w0, w1 = field_layout(Opcode.GEMM, cfg)
    widths = dict(w1)
    assert widths["dst_factor_out"] == cfg.log_acc_depth == 11
    assert widths["src_factor_out"] == cfg.log_inp_depth == 13
    assert widths["wgt_factor_out"] == cfg.log_wgt_depth == 8
    # the largest src index fits on zcu102 but not on pynq
    big = Gemm(src_factor_in=(1 << 13) - 1)
    assert decode(encode(big, cfg), cfg) == big
    with pytest.raises(EncodingError, match="src_factor_in"):
        encode(big, PYNQ)


# ---- errors ----------------------------------------------------------------------------------


def _all_fields():
    for opcode in Opcode:
        w0, w1 = field_layout(opcode, PYNQ)
        for name, bits in w0 + w1:
            if name in ("opcode",) or name in ENUMS or name in BOOLS:
                continue
            yield opcode, name, bits


@pytest.mark.parametrize("opcode,name,bits", list(_all_fields()),
                         ids=lambda v: v.name if isinstance(v, Opcode) else str(v))
def test_field_overflow_names_the_field(opcode, name, bits):
    too_big = (1 << (bits - 1)) if name == "imm" else (1 << bits)
    insn = INSN_CLASSES[opcode](**{name: too_big})
    with pytest.raises(EncodingError, match=rf"'{name}'"):
        encode(insn, PYNQ)


def test_negative_field_and_low_immediate_rejected():
    with pytest.raises(EncodingError, match="'dram_base'"):
        encode(Load(dram_base=-1), PYNQ)
    with pytest.raises(EncodingError, match="'imm'"):
        encode(Alu(imm=-(1 << 15) - 1), PYNQ)
    with pytest.raises(EncodingError, match="'wgt'"):
        encode_uop(Uop(wgt=1 << 10), PYNQ)


@pytest.mark.parametrize("code", [5, 6, 7])
def test_unknown_opcode(code):
    with pytest.raises(UnknownOpcodeError, match=f"opcode {code}"):
        decode(bytes([code]) + bytes(15), PYNQ)


def test_unknown_memory_type_and_alu_op():
    load = bytearray(encode(Load(), PYNQ))
    load[0] |= 7 << 7 & 0xFF
    load[1] |= 7 >> 1
    with pytest.raises(UnknownOpcodeError, match="memory type 7"):
        decode(bytes(load), PYNQ)
    w1 = 7 << 44  # alu_opcode 7 on pynq
    with pytest.raises(UnknownOpcodeError, match="alu_opcode 7"):
        decode(_raw(4, w1), PYNQ)


def test_program_stream_round_trip_and_bad_length():
    prog = [Load(memory_type=MemType.UOP, x_size=3, x_stride=3), Gemm(uop_end=3),
            Alu(alu_opcode=AluOp.MAX, use_imm=True, imm=0, push_next=True),
            Store(pop_prev=True), Finish()]
    raw = encode_program(prog, PYNQ)
    assert len(raw) == 16 * len(prog)
    assert decode_program(raw, PYNQ) == prog
    with pytest.raises(EncodingError, match="multiple of 16"):
        decode_program(raw[:-1], PYNQ)


def test_every_instruction_class_has_distinct_opcode():
    codes = {cls.OPCODE for cls in (Load, Store, Gemm, Alu, Finish)}
    assert codes == set(Opcode)
    assert all(dataclasses.is_dataclass(c) for c in INSN_CLASSES.values())
