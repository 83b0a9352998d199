"""VTA instruction set: instruction and micro-op records, bit-exact 128-bit encoding.

Layout (../shared/vta-spec.md): an instruction is two 64-bit little-endian words; fields are
packed LSB-first inside a word and never straddle words. Field widths that depend on the board
(micro-op range, buffer-index factors) come from BoardConfig. A micro-op is 32 bits:
dst (log acc depth) | src (max(log inp depth, log acc depth)) | wgt (log wgt depth), LSB first.

Addresses: `sram_base`, `uop_*`, factors and micro-op indices count *elements* of the
buffer concerned; `dram_base` counts elements of the memory type (DRAM byte address divided by
that type's element bytes), as on VTA.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Union

import numpy as np

from boards import BoardConfig
from bctvm.errors import EncodingError, IllegalInstructionError, UnknownOpcodeError


class Opcode(IntEnum):
    LOAD = 0
    STORE = 1
    GEMM = 2
    FINISH = 3
    ALU = 4


class MemType(IntEnum):
    """LOAD/STORE memory types. OUT_INP is bctvm's onchip_reuse load (OUT buffer -> INP)."""

    UOP = 0
    WGT = 1
    INP = 2
    ACC = 3
    OUT = 4
    ACC_8BIT = 5
    OUT_INP = 6


class AluOp(IntEnum):
    MIN = 0
    MAX = 1
    ADD = 2
    SHR = 3
    MUL = 4


@dataclass(frozen=True)
class _Insn:
    """Common head: the four dependency-token flags (module order load -> compute -> store)."""

    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False

    OPCODE: ClassVar[Opcode]

    def replace(self, **changes) -> "_Insn":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class _MemInsn(_Insn):
    """2-D DMA: y_size rows of x_size elements, rows x_stride elements apart in DRAM."""

    memory_type: MemType = MemType.INP
    sram_base: int = 0
    dram_base: int = 0
    y_size: int = 1
    x_size: int = 1
    x_stride: int = 1
    y_pad_0: int = 0
    y_pad_1: int = 0
    x_pad_0: int = 0
    x_pad_1: int = 0


@dataclass(frozen=True)
class Load(_MemInsn):
    """DRAM (or, with OUT_INP, the output buffer) -> on-chip buffer, zero padding included."""

    OPCODE: ClassVar[Opcode] = Opcode.LOAD


@dataclass(frozen=True)
class Store(_MemInsn):
    """Output buffer -> DRAM (no padding)."""

    OPCODE: ClassVar[Opcode] = Opcode.STORE
    memory_type: MemType = MemType.OUT


@dataclass(frozen=True)
class _ComputeInsn(_Insn):
    """Two-level loop over micro-ops [uop_bgn, uop_end): see vta-spec.md."""

    reset_reg: bool = False
    uop_bgn: int = 0
    uop_end: int = 1
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0


@dataclass(frozen=True)
class Gemm(_ComputeInsn):
    """acc[dst] (+)= inp[src] @ wgt[wgt].T (int32), or acc[dst] = 0 with reset_reg."""

    OPCODE: ClassVar[Opcode] = Opcode.GEMM
    wgt_factor_out: int = 0
    wgt_factor_in: int = 0


@dataclass(frozen=True)
class Alu(_ComputeInsn):
    """acc[dst] = op(acc[dst], imm if use_imm else acc[src]) on int32 lanes."""

    OPCODE: ClassVar[Opcode] = Opcode.ALU
    alu_opcode: AluOp = AluOp.ADD
    use_imm: bool = False
    imm: int = 0


@dataclass(frozen=True)
class Finish(_Insn):
    """Signals the host that the program is done (executed by the compute module)."""

    OPCODE: ClassVar[Opcode] = Opcode.FINISH


Instruction = Union[Load, Store, Gemm, Alu, Finish]
INSN_CLASSES: dict[Opcode, type] = {c.OPCODE: c for c in (Load, Store, Gemm, Alu, Finish)}


@dataclass(frozen=True)
class Uop:
    """GEMM/ALU micro-op: base indices into the accumulator (dst), input or accumulator (src),
    and weight (wgt) buffers."""

    dst: int = 0
    src: int = 0
    wgt: int = 0


# ---- field layouts -------------------------------------------------------------------------

_HEAD = [("opcode", 3), ("pop_prev", 1), ("pop_next", 1), ("push_prev", 1), ("push_next", 1)]


def field_layout(opcode: Opcode, cfg: BoardConfig) -> tuple[list, list]:
    """(word0 fields, word1 fields) as [(name, bits)], LSB first, for one opcode on a board."""
    it, acc, inp, wgt = cfg.loop_iter_bits, cfg.log_acc_depth, cfg.log_inp_depth, cfg.log_wgt_depth
    compute0 = _HEAD + [
        ("reset_reg", 1),
        ("uop_bgn", cfg.uop_bgn_bits),
        ("uop_end", cfg.uop_end_bits),
        ("iter_out", it),
        ("iter_in", it),
    ]
    if opcode in (Opcode.LOAD, Opcode.STORE):
        xs, pad = cfg.xfer_size_bits, cfg.pad_bits
        return (
            _HEAD + [("memory_type", 3), ("sram_base", cfg.sram_addr_bits),
                     ("dram_base", cfg.dram_addr_bits)],
            [("y_size", xs), ("x_size", xs), ("x_stride", xs), ("y_pad_0", pad),
             ("y_pad_1", pad), ("x_pad_0", pad), ("x_pad_1", pad)],
        )
    if opcode == Opcode.GEMM:
        return compute0, [
            ("dst_factor_out", acc), ("dst_factor_in", acc),
            ("src_factor_out", inp), ("src_factor_in", inp),
            ("wgt_factor_out", wgt), ("wgt_factor_in", wgt),
        ]
    if opcode == Opcode.ALU:
        return compute0, [
            ("dst_factor_out", acc), ("dst_factor_in", acc),
            ("src_factor_out", acc), ("src_factor_in", acc),
            ("alu_opcode", 3), ("use_imm", 1), ("imm", cfg.alu_imm_bits),
        ]
    if opcode == Opcode.FINISH:
        return list(_HEAD), []
    raise UnknownOpcodeError(f"unknown opcode {int(opcode)}")


def uop_layout(cfg: BoardConfig) -> list:
    """Micro-op fields [(name, bits)], LSB first."""
    return [("dst", cfg.uop_dst_bits), ("src", cfg.uop_src_bits), ("wgt", cfg.uop_wgt_bits)]


def _pack(values: dict, layout: list, what: str) -> int:
    word, pos = 0, 0
    for name, bits in layout:
        v = int(values[name])
        if name == "imm":
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            if not lo <= v <= hi:
                raise EncodingError(f"{what}: field 'imm' = {v} does not fit {bits}-bit signed [{lo}, {hi}]")
            v &= (1 << bits) - 1
        elif not 0 <= v < (1 << bits):
            raise EncodingError(
                f"{what}: field '{name}' = {v} does not fit {bits} bits [0, {(1 << bits) - 1}]"
            )
        word |= v << pos
        pos += bits
    if pos > 64:
        raise EncodingError(f"{what}: layout needs {pos} bits in one 64-bit word")
    return word


def _unpack(word: int, layout: list) -> dict:
    out, pos = {}, 0
    for name, bits in layout:
        v = (word >> pos) & ((1 << bits) - 1)
        if name == "imm" and v >> (bits - 1):
            v -= 1 << bits
        out[name] = v
        pos += bits
    return out


def encode(insn: Instruction, cfg: BoardConfig) -> bytes:
    """16 little-endian bytes of one instruction; EncodingError names a field that overflows."""
    opcode = type(insn).OPCODE
    w0, w1 = field_layout(opcode, cfg)
    values = {f.name: getattr(insn, f.name) for f in dataclasses.fields(insn)}
    values["opcode"] = opcode
    what = f"{opcode.name} instruction"
    lo = _pack(values, w0, what)
    hi = _pack(values, w1, what) if w1 else 0
    return lo.to_bytes(8, "little") + hi.to_bytes(8, "little")


def decode(raw: bytes, cfg: BoardConfig) -> Instruction:
    """Instruction from 16 bytes; UnknownOpcodeError for an undefined opcode/type/ALU op."""
    if len(raw) != 16:
        raise EncodingError(f"an instruction is 16 bytes, got {len(raw)}")
    lo = int.from_bytes(raw[:8], "little")
    hi = int.from_bytes(raw[8:], "little")
    code = lo & 0x7
    try:
        opcode = Opcode(code)
    except ValueError:
        raise UnknownOpcodeError(f"unknown opcode {code}") from None
    w0, w1 = field_layout(opcode, cfg)
    values = _unpack(lo, w0)
    values.update(_unpack(hi, w1))
    values.pop("opcode")
    for k in ("pop_prev", "pop_next", "push_prev", "push_next", "reset_reg", "use_imm"):
        if k in values:
            values[k] = bool(values[k])
    if "memory_type" in values:
        try:
            values["memory_type"] = MemType(values["memory_type"])
        except ValueError:
            raise UnknownOpcodeError(
                f"{opcode.name}: unknown memory type {values['memory_type']}"
            ) from None
    if "alu_opcode" in values:
        try:
            values["alu_opcode"] = AluOp(values["alu_opcode"])
        except ValueError:
            raise UnknownOpcodeError(f"ALU: unknown alu_opcode {values['alu_opcode']}") from None
    if opcode == Opcode.FINISH:
        values = {k: v for k, v in values.items() if k in ("pop_prev", "pop_next", "push_prev", "push_next")}
    return INSN_CLASSES[opcode](**values)


def encode_uop(uop: Uop, cfg: BoardConfig) -> int:
    """32-bit micro-op word."""
    return _pack({"dst": uop.dst, "src": uop.src, "wgt": uop.wgt}, uop_layout(cfg), "micro-op")


def decode_uop(word: int, cfg: BoardConfig) -> Uop:
    return Uop(**_unpack(int(word), uop_layout(cfg)))


def encode_uops(uops, cfg: BoardConfig) -> np.ndarray:
    """uint32 array of micro-op words (the DRAM/uop-buffer representation)."""
    return np.array([encode_uop(u, cfg) for u in uops], dtype=np.uint32)


def decode_uop_fields(words: np.ndarray, cfg: BoardConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised decode of uint32 micro-op words -> (dst, src, wgt) int64 arrays."""
    w = np.asarray(words, dtype=np.uint32).astype(np.int64)
    d, s, g = cfg.uop_dst_bits, cfg.uop_src_bits, cfg.uop_wgt_bits
    return w & ((1 << d) - 1), (w >> d) & ((1 << s) - 1), (w >> (d + s)) & ((1 << g) - 1)


def encode_program(insns, cfg: BoardConfig) -> bytes:
    """Concatenated 16-byte encodings (the `.bin` instruction-stream format)."""
    return b"".join(encode(i, cfg) for i in insns)


def decode_program(raw: bytes, cfg: BoardConfig) -> list:
    """Instructions of a `.bin` stream; EncodingError if its length is not a multiple of 16."""
    if len(raw) % 16:
        raise EncodingError(f"instruction stream of {len(raw)} bytes is not a multiple of 16")
    return [decode(raw[i:i + 16], cfg) for i in range(0, len(raw), 16)]


def check_memtype(insn: _MemInsn, cfg: BoardConfig) -> None:
    """Raise IllegalInstructionError if a LOAD/STORE names a memory type it cannot use here."""
    mt = insn.memory_type
    if isinstance(insn, Store):
        if mt != MemType.OUT:
            raise IllegalInstructionError(f"STORE from memory type {mt.name}: only OUT can be stored")
        if insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1:
            raise IllegalInstructionError("STORE with padding fields set")
        return
    if mt == MemType.OUT:
        raise IllegalInstructionError("LOAD into OUT is not defined")
    if mt == MemType.OUT_INP and not cfg.onchip_reuse:
        raise IllegalInstructionError(
            f"LOAD OUT_INP (onchip_reuse) on board '{cfg.name}', which does not have onchip_reuse"
        )
