"""Readable disassembly of VTA instruction streams and micro-ops, one line each.

Instruction line: index, opcode, memory type (LOAD/STORE) or ALU op, every field by name in
encoding order, then the dependency-token flags set ("-" for none), e.g.

    3  LOAD   INP     sram_base=0 dram_base=64 y_size=5 ... x_pad_1=1  | pop_next push_next

Micro-op line: `uop[k]  dst=... src=... wgt=...` (buffer element indices).
"""

from __future__ import annotations

import numpy as np

from boards import BoardConfig
from bctvm.isa import Alu, Load, MemType, Opcode, Store, Uop, decode, decode_uop, field_layout

FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")
_NOT_SHOWN = {"opcode", "memory_type", "alu_opcode", *FLAGS}


def format_flags(insn) -> str:
    """Names of the token flags set on an instruction, or '-'."""
    names = [f for f in FLAGS if getattr(insn, f)]
    return " ".join(names) if names else "-"


def format_insn(insn, cfg: BoardConfig, index: int | None = None) -> str:
    """One line for one instruction (fields in encoding order, flags last)."""
    opcode = type(insn).OPCODE
    w0, w1 = field_layout(opcode, cfg)
    if isinstance(insn, (Load, Store)):
        kind = MemType(insn.memory_type).name
    elif isinstance(insn, Alu):
        kind = insn.alu_opcode.name + (" imm" if insn.use_imm else "")
    else:
        kind = ""
    fields = []
    for name, _bits in w0 + w1:
        if name in _NOT_SHOWN:
            continue
        value = getattr(insn, name)
        fields.append(f"{name}={int(value)}")
    head = f"{index:5d}  " if index is not None else ""
    return f"{head}{opcode.name:6s} {kind:9s} {' '.join(fields)}  | {format_flags(insn)}".rstrip()


def format_uop(uop: Uop, index: int | None = None) -> str:
    """One line for one micro-op."""
    head = f"uop[{index}]" if index is not None else "uop"
    return f"{head:10s} dst={uop.dst} src={uop.src} wgt={uop.wgt}"


def disasm_uops(words, cfg: BoardConfig, first_index: int = 0) -> list[str]:
    """Lines for encoded micro-op words (uint32), numbered from `first_index`."""
    return [format_uop(decode_uop(int(w), cfg), first_index + k) for k, w in enumerate(words)]


def _loaded_uop_words(insn: Load, dram: np.ndarray, cfg: BoardConfig) -> list[tuple[int, int | None]]:
    """(uop-buffer index, word) pairs a LOAD UOP writes, read from a flat DRAM image."""
    eb = cfg.uop_elem_bytes
    out, sram = [], insn.sram_base + insn.y_pad_0 * (insn.x_pad_0 + insn.x_size + insn.x_pad_1)
    for row in range(insn.y_size):
        sram += insn.x_pad_0
        for col in range(insn.x_size):
            byte = (insn.dram_base + row * insn.x_stride + col) * eb
            word = int.from_bytes(dram[byte:byte + eb].tobytes(), "little") if byte + eb <= dram.size else None
            out.append((sram, word))
            sram += 1
        sram += insn.x_pad_1
    return out


def disassemble(program, cfg: BoardConfig, dram: np.ndarray | None = None) -> list[str]:
    """Lines of a program (instruction list or raw `.bin` bytes).

    With a DRAM image, each LOAD UOP is followed by the micro-ops it loads (indented, numbered
    by their uop-buffer index; a word outside the image shows as '<outside DRAM image>').
    """
    if isinstance(program, (bytes, bytearray, memoryview)):
        raw = bytes(program)
        insns = [decode(raw[i:i + 16], cfg) for i in range(0, len(raw) - len(raw) % 16, 16)]
    else:
        insns = list(program)
    lines = []
    for i, insn in enumerate(insns):
        lines.append(format_insn(insn, cfg, i))
        if dram is not None and isinstance(insn, Load) and insn.memory_type == MemType.UOP:
            for idx, word in _loaded_uop_words(insn, np.asarray(dram, dtype=np.uint8), cfg):
                if word is None:
                    lines.append(f"{'':7s}uop[{idx}]  <outside DRAM image>")
                else:
                    lines.append(f"{'':7s}{format_uop(decode_uop(word, cfg), idx)}")
    return lines


def opcode_histogram(insns) -> dict[str, int]:
    """Instruction counts by opcode name (LOAD, STORE, GEMM, ALU, FINISH)."""
    counts = {op.name: 0 for op in Opcode}
    for insn in insns:
        counts[type(insn).OPCODE.name] += 1
    return counts
