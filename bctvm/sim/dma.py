"""LOAD and STORE: 2-D strided transfers between the DRAM image and the on-chip buffers.

A LOAD moves y_size rows of x_size elements, rows x_stride elements apart, starting at
element dram_base of its memory type, into a contiguous SRAM block at sram_base of
(y_pad_0 + y_size + y_pad_1) x (x_pad_0 + x_size + x_pad_1) elements, pads zero-filled.
DRAM addresses count elements of the memory type: element i starts at byte i x elem bytes.
ACC_8BIT reads int8 elements and sign-extends them into the accumulator. OUT_INP (onchip
reuse) reads the same 2-D pattern from the output buffer instead of DRAM (dram_base is then
an output-buffer index). STORE writes y_size rows of x_size output-buffer elements, read
contiguously from sram_base, to DRAM. Every access is bounds-checked first.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from boards import BoardConfig
from bctvm.errors import DramOutOfRangeError
from bctvm.isa import MemType
from bctvm.sim.sram import Scratchpads
from bctvm.sim.traffic import Traffic


class Transfer(NamedTuple):
    """What one LOAD/STORE moved, for the cycle model (bytes)."""

    rows: int  # DRAM rows (0 for on-chip or empty transfers)
    row_bytes: int  # bytes per DRAM row
    pad_bytes: int  # SRAM bytes zero-filled as padding
    onchip_bytes: int  # OUT -> INP bytes copied on chip


class _LoadKind(NamedTuple):
    buffer: str  # destination scratchpad
    dram_elem_bytes: int
    dram_dtype: str  # element scalar type in DRAM
    elem_shape: tuple  # shape of one element
    sram_elem_bytes: int


def load_kinds(cfg: BoardConfig) -> dict:
    """Per LOAD memory type: destination buffer and the DRAM/SRAM element formats."""
    b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
    return {
        MemType.UOP: _LoadKind("uop", cfg.uop_elem_bytes, "<u4", (), cfg.uop_elem_bytes),
        MemType.WGT: _LoadKind("wgt", cfg.wgt_elem_bytes, "i1", (bo, bi), cfg.wgt_elem_bytes),
        MemType.INP: _LoadKind("inp", cfg.inp_elem_bytes, "i1", (b, bi), cfg.inp_elem_bytes),
        MemType.ACC: _LoadKind("acc", cfg.acc_elem_bytes, "<i4", (b, bo), cfg.acc_elem_bytes),
        MemType.ACC_8BIT: _LoadKind("acc", cfg.out_elem_bytes, "i1", (b, bo), cfg.acc_elem_bytes),
        MemType.OUT_INP: _LoadKind("inp", cfg.out_elem_bytes, "i1", (b, bi), cfg.inp_elem_bytes),
    }


def _check_dram(dram: np.ndarray, base: int, y: int, x: int, stride: int, elem: int, where: str) -> None:
    last = base + (y - 1) * stride + x  # one past the last element touched
    if last * elem > dram.size:
        raise DramOutOfRangeError(
            f"{where}: DRAM elements [{base}, {last}) of {elem} B (bytes [{base * elem}, "
            f"{last * elem})) outside the {dram.size}-byte DRAM image"
        )


def _dram_rows(dram: np.ndarray, first: int, y: int, row_bytes: int, stride_bytes: int) -> np.ndarray:
    """A (y, row_bytes) uint8 view of a 2-D region of the DRAM image (bounds already checked)."""
    return np.ndarray((y, row_bytes), dtype=np.uint8, buffer=dram, offset=first,
                      strides=(stride_bytes, 1))


def _place(dst: np.ndarray, data, y0: int, y: int, x0: int, x: int, padded: bool) -> None:
    """Write data into dst[(H, W, ...)] at [y0:y0+y, x0:x0+x], zeroing the rest if padded."""
    if padded:
        dst[:y0] = 0
        dst[y0 + y:] = 0
        dst[y0:y0 + y, :x0] = 0
        dst[y0:y0 + y, x0 + x:] = 0
    if y and x:
        dst[y0:y0 + y, x0:x0 + x] = data


def _where(index: int, mt: MemType) -> str:
    return f"instruction {index} (LOAD {MemType(mt).name})"


def run_load(row, index: int, sp: Scratchpads, dram: np.ndarray, traffic: Traffic,
             kinds: dict) -> Transfer:
    """Execute one LOAD (legality of its memory type already checked)."""
    mt = row.memory_type
    kind = kinds[mt]
    y, x, stride = row.y_size, row.x_size, row.x_stride
    y0, y1, x0, x1 = row.y_pad_0, row.y_pad_1, row.x_pad_0, row.x_pad_1
    h, w = y0 + y + y1, x0 + x + x1
    total = h * w
    base = row.sram_base
    if total and base + total > sp.depth[kind.buffer]:
        sp.check_range(kind.buffer, base, base + total - 1, _where(index, mt))
    padded = total != y * x
    pad_bytes = (total - y * x) * kind.sram_elem_bytes
    moving = y > 0 and x > 0

    if mt == MemType.OUT_INP:
        data = None
        if moving:
            src0 = row.dram_base
            sp.check_range("out", src0, src0 + (y - 1) * stride + x - 1,
                           _where(index, mt) + " source")
            idx = src0 + stride * np.arange(y)[:, None] + np.arange(x)[None, :]
            data = sp.out[idx]
        dst = sp.inp[base:base + total].reshape((h, w) + kind.elem_shape)
        _place(dst, data, y0, y, x0, x, padded)
        moved = y * x * kind.dram_elem_bytes if moving else 0
        traffic.onchip_reuse_bytes += moved
        return Transfer(0, 0, pad_bytes, moved)

    e = kind.dram_elem_bytes
    data = None
    if moving:
        if (row.dram_base + (y - 1) * stride + x) * e > dram.size:
            _check_dram(dram, row.dram_base, y, x, stride, e, _where(index, mt))
        first = row.dram_base * e
        # rows are byte-contiguous, so the strided byte view reinterprets as elements in place
        data = _dram_rows(dram, first, y, x * e, stride * e).view(kind.dram_dtype)
        data = data.reshape((y, x) + kind.elem_shape)
        traffic.add_read(mt, first, y, x * e, stride * e)
    if mt == MemType.UOP:
        if padded:
            block = np.zeros((h, w), dtype=np.uint32)
            _place(block, data, y0, y, x0, x, False)
            sp.write_uops(base, block.reshape(-1))
        elif moving:
            sp.write_uops(base, data.reshape(-1).astype(np.uint32))
        return Transfer(y if moving else 0, x * e if moving else 0, pad_bytes, 0)
    if kind.buffer == "wgt":
        sp.wgt_version += 1
    dst = sp.buffer(kind.buffer)[base:base + total].reshape((h, w) + kind.elem_shape)
    _place(dst, data, y0, y, x0, x, padded)  # ACC_8BIT: int8 -> int32 sign-extends here
    return Transfer(y if moving else 0, x * e if moving else 0, pad_bytes, 0)


def run_store(row, index: int, sp: Scratchpads, dram: np.ndarray, traffic: Traffic,
              cfg: BoardConfig) -> Transfer:
    """Execute one STORE from the output buffer to DRAM."""
    where = f"instruction {index} (STORE OUT)"
    y, x, stride = row.y_size, row.x_size, row.x_stride
    if y == 0 or x == 0:
        return Transfer(0, 0, 0, 0)
    base = row.sram_base
    sp.check_range("out", base, base + y * x - 1, where)
    e = cfg.out_elem_bytes
    _check_dram(dram, row.dram_base, y, x, stride, e, where)
    first = row.dram_base * e
    src = sp.out[base:base + y * x].view(np.uint8).reshape(y, x * e)
    if y > 1 and stride < x:  # rows overlap in DRAM: write in order, later rows win
        for r in range(y):
            dram[first + r * stride * e:first + r * stride * e + x * e] = src[r]
    else:
        _dram_rows(dram, first, y, x * e, stride * e)[...] = src
    traffic.add_write(first, y, x * e, stride * e)
    return Transfer(y, x * e, 0, 0)
