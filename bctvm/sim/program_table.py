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
from operator import attrgetter

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


_HEAD_FIELDS = FIELDS[1:5]
_MEM_FIELDS = FIELDS[5:15]
_COMPUTE_FIELDS = FIELDS[15:24]
_WGT_FIELDS = FIELDS[24:26]
_ALU_FIELDS = FIELDS[26:29]


def _record_builders() -> dict:
    """{record class: function record -> Row values tuple}; fields in FIELDS order."""
    z = lambda k: (0,) * k  # noqa: E731
    mem = attrgetter(*_HEAD_FIELDS, *_MEM_FIELDS)
    gemm = attrgetter(*_HEAD_FIELDS, *_COMPUTE_FIELDS, *_WGT_FIELDS)
    alu_head = attrgetter(*_HEAD_FIELDS)
    alu_rest = attrgetter(*_COMPUTE_FIELDS, *_ALU_FIELDS)
    tail_mem = z(len(FIELDS) - 15)
    return {
        isa.Load: lambda r: (Opcode.LOAD, *mem(r), *tail_mem),
        isa.Store: lambda r: (Opcode.STORE, *mem(r), *tail_mem),
        isa.Gemm: lambda r: (Opcode.GEMM, *gemm(r)[:4], *z(10), *gemm(r)[4:], *z(3)),
        isa.Alu: lambda r: (Opcode.ALU, *alu_head(r), *z(10), *alu_rest(r)[:9], 0, 0,
                            *alu_rest(r)[9:]),
        isa.Finish: lambda r: (Opcode.FINISH, *alu_head(r), *z(len(FIELDS) - 5)),
    }


def _check_widths(cols: np.ndarray, cfg: BoardConfig) -> None:
    """EncodingError naming the first instruction whose field does not fit its width."""
    opcode = cols[0]
    for op, fields in _layouts(cfg).items():
        sel = np.flatnonzero(opcode == int(op))
        if not sel.size:
            continue
        for name, _word, _shift, bits in fields:
            if name == "opcode":
                continue
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if name == "imm" else (0, (1 << bits) - 1)
            v = cols[_FIELD_POS[name], sel]
            bad = np.flatnonzero((v < lo) | (v > hi))
            if bad.size:
                i = int(sel[bad[0]])
                raise EncodingError(
                    f"instruction {i} ({op.name}): field '{name}' = {int(v[bad[0]])} "
                    f"outside [{lo}, {hi}]"
                )


def rows_from_records(insns, cfg: BoardConfig) -> list:
    """Rows of a list of bctvm.isa records; EncodingError names an out-of-width field."""
    builders = _record_builders()
    rows = []
    append = rows.append
    make = Row._make
    for index, insn in enumerate(insns):
        build = builders.get(type(insn))
        if build is None:
            raise ProgramFormatError(
                f"instruction {index} is a {type(insn).__name__}, not a bctvm.isa instruction record"
            )
        append(make(build(insn)))
    if not rows:
        return rows
    cols = np.array(rows)
    if cols.dtype.kind not in "iub":  # a float, a huge int or some other object: find it
        cols = np.array(rows, dtype=object)
        bad = [(i, FIELDS[f]) for f in range(len(FIELDS)) for i in _non_integers(cols[:, f])]
        if bad:
            i, name = min(bad)
            raise EncodingError(
                f"instruction {i} ({Opcode(rows[i].opcode).name}): field '{name}' = "
                f"{getattr(rows[i], name)!r} is not an integer"
            )
        raise EncodingError("an instruction field does not fit 64 bits")
    cols = cols.astype(np.int64).T
    _check_widths(cols, cfg)
    _check_enums(cols)
    return rows


def _non_integers(col: np.ndarray) -> list:
    """Positions of values that are not ints (bool, IntEnum and numpy integers are ints)."""
    ok = np.fromiter((isinstance(v, (int, np.integer)) for v in col), dtype=bool, count=col.size)
    return np.flatnonzero(~ok)[:1].tolist()


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
