"""Instruction streams as flat rows the simulator can execute quickly.

`to_rows(program, cfg)` accepts a list of `bctvm.isa` records or the encoded bytes of a `.bin`
stream and returns a list of `Row` namedtuples holding every field of every format (fields
an opcode does not have are 0). Encoded streams are decoded with numpy over the whole stream
at once (`bctvm.isa.decode` costs ~20 us per instruction, far too slow for 1e6 of them);
records are range-checked against the board's field widths, so a record that could not be
encoded (a negative index, a 17-bit sram_base...) is rejected before it runs.

Addresses and indices count elements of their buffer or memory type, as in bctvm.isa.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from boards import BoardConfig
from bctvm import isa
from bctvm.errors import EncodingError, ProgramFormatError, UnknownOpcodeError
from bctvm.isa import AluOp, MemType, Opcode

FIELDS = (
    "opcode", "pop_prev", "pop_next", "push_prev", "push_next",
    "memory_type", "sram_base", "dram_base", "y_size", "x_size", "x_stride",
    "y_pad_0", "y_pad_1", "x_pad_0", "x_pad_1",
    "reset_reg", "uop_bgn", "uop_end", "iter_out", "iter_in",
    "dst_factor_out", "dst_factor_in", "src_factor_out", "src_factor_in",
    "wgt_factor_out", "wgt_factor_in", "alu_opcode", "use_imm", "imm",
)
Row = namedtuple("Row", FIELDS)
_FIELD_POS = {name: i for i, name in enumerate(FIELDS)}
_N_OPCODES = len(Opcode)
_MT, _ALU_OP = _FIELD_POS["memory_type"], _FIELD_POS["alu_opcode"]
_MEM_OPCODES = (int(Opcode.LOAD), int(Opcode.STORE))


def _layouts(cfg: BoardConfig) -> dict:
    """{opcode: [(name, word, shift, bits)]} for every defined opcode on this board."""
    out = {}
    for op in Opcode:
        w0, w1 = isa.field_layout(op, cfg)
        fields = []
        for word, layout in ((0, w0), (1, w1)):
            pos = 0
            for name, bits in layout:
                fields.append((name, word, pos, bits))
                pos += bits
        out[op] = fields
    return out


def _describe(index: int, opcode: int) -> str:
    try:
        return f"instruction {index} ({Opcode(opcode).name})"
    except ValueError:
        return f"instruction {index}"


# ---- encoded streams ------------------------------------------------------------------------


def rows_from_bytes(raw, cfg: BoardConfig) -> list:
    """Decode a `.bin` stream (bytes-like or uint8 array) into rows, vectorised over the stream."""
    buf = raw if isinstance(raw, np.ndarray) else np.frombuffer(raw, dtype=np.uint8)
    if buf.size % cfg.insn_bytes:
        raise ProgramFormatError(
            f"instruction stream of {buf.size} bytes is not a multiple of {cfg.insn_bytes}"
        )
    words = np.frombuffer(np.ascontiguousarray(buf).tobytes(), dtype="<u8").reshape(-1, 2)
    n = words.shape[0]
    cols = np.zeros((len(FIELDS), n), dtype=np.int64)
    opcode = (words[:, 0] & np.uint64(0x7)).astype(np.int64)
    bad = np.flatnonzero(opcode >= _N_OPCODES)
    if bad.size:
        i = int(bad[0])
        raise UnknownOpcodeError(f"instruction {i}: unknown opcode {int(opcode[i])}")
    for op, fields in _layouts(cfg).items():
        sel = np.flatnonzero(opcode == int(op))
        if not sel.size:
            continue
        w = words[sel]
        for name, word, shift, bits in fields:
            v = ((w[:, word] >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
            if name == "imm":
                v = np.where(v >> (bits - 1), v - (1 << bits), v)
            cols[_FIELD_POS[name], sel] = v
    _check_enums(cols)
    return list(map(Row._make, zip(*cols.tolist())))


def _check_enums(cols: np.ndarray) -> None:
    opcode = cols[_FIELD_POS["opcode"]]
    mem = (opcode == Opcode.LOAD) | (opcode == Opcode.STORE)
    bad = np.flatnonzero(mem & (cols[_FIELD_POS["memory_type"]] >= len(MemType)))
    if bad.size:
        i = int(bad[0])
        raise UnknownOpcodeError(
            f"{_describe(i, opcode[i])}: unknown memory type {int(cols[_FIELD_POS['memory_type'], i])}"
        )
    bad = np.flatnonzero((opcode == Opcode.ALU) & (cols[_FIELD_POS["alu_opcode"]] >= len(AluOp)))
    if bad.size:
        i = int(bad[0])
        raise UnknownOpcodeError(
            f"instruction {i} (ALU): unknown alu_opcode {int(cols[_FIELD_POS['alu_opcode'], i])}"
        )


# ---- instruction records --------------------------------------------------------------------


def _record_checks(cfg: BoardConfig) -> dict:
    """{record class: [(field name, lo, hi)]} allowed ranges from the board's encoding."""
    checks = {}
    for op, fields in _layouts(cfg).items():
        rng = []
        for name, _word, _shift, bits in fields:
            if name == "opcode":
                continue
            if name == "imm":
                rng.append((name, -(1 << (bits - 1)), (1 << (bits - 1)) - 1))
            else:
                rng.append((name, 0, (1 << bits) - 1))
        checks[isa.INSN_CLASSES[op]] = (int(op), rng)
    return checks


def rows_from_records(insns, cfg: BoardConfig) -> list:
    """Rows of a list of bctvm.isa records; EncodingError names an out-of-width field."""
    checks = _record_checks(cfg)
    rows = []
    append = rows.append
    for index, insn in enumerate(insns):
        spec = checks.get(type(insn))
        if spec is None:
            raise ProgramFormatError(
                f"instruction {index} is a {type(insn).__name__}, not a bctvm.isa instruction record"
            )
        opcode, ranges = spec
        values = [0] * len(FIELDS)
        values[0] = opcode
        d = insn.__dict__
        for name, lo, hi in ranges:
            v = d[name]
            if not lo <= v <= hi:
                raise EncodingError(
                    f"instruction {index} ({Opcode(opcode).name}): field '{name}' = {v} "
                    f"outside [{lo}, {hi}]"
                )
            values[_FIELD_POS[name]] = int(v)
        if opcode in _MEM_OPCODES and values[_MT] >= len(MemType):
            raise UnknownOpcodeError(
                f"instruction {index} ({Opcode(opcode).name}): unknown memory type {values[_MT]}"
            )
        if opcode == Opcode.ALU and values[_ALU_OP] >= len(AluOp):
            raise UnknownOpcodeError(f"instruction {index} (ALU): unknown alu_opcode {values[_ALU_OP]}")
        append(Row._make(values))
    return rows


def to_rows(program, cfg: BoardConfig) -> list:
    """Rows of a program given as isa records or as encoded `.bin` bytes."""
    if isinstance(program, (bytes, bytearray, memoryview)):
        return rows_from_bytes(program, cfg)
    if isinstance(program, np.ndarray):
        if program.dtype != np.uint8 or program.ndim != 1:
            raise ProgramFormatError(
                f"an encoded program array must be 1-D uint8, got {program.ndim}-D {program.dtype}"
            )
        return rows_from_bytes(program, cfg)
    try:
        insns = list(program)
    except TypeError:
        raise ProgramFormatError(
            f"a program is a list of bctvm.isa instructions or encoded bytes, not {type(program).__name__}"
        ) from None
    return rows_from_records(insns, cfg)
