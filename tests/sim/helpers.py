"""Small builders shared by the simulator tests: DRAM images, micro-ops, numpy references."""

from __future__ import annotations

import numpy as np

from bctvm import isa
from bctvm.isa import Alu, AluOp, Load, MemType, Store

INT32_MIN, INT32_SPAN = -(1 << 31), 1 << 32


class DramBuilder:
    """A flat DRAM image assembled from named arrays, each aligned to its element size."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.buf = bytearray()
        self.regions = {}
        self.elem = cfg.memtype_elem_bytes()

    def _align(self, elem_bytes: int) -> None:
        self.buf.extend(b"\0" * (-len(self.buf) % elem_bytes))

    def put(self, name: str, arr: np.ndarray, kind: str) -> int:
        """Append arr's bytes as memory type `kind`; returns its element index (dram_base)."""
        e = self.elem[kind]
        self._align(e)
        start = len(self.buf)
        data = np.ascontiguousarray(arr).tobytes()
        assert len(data) % e == 0, (name, len(data), e)
        self.buf.extend(data)
        self.regions[name] = (start, len(self.buf))
        return start // e

    def reserve(self, name: str, n_elems: int, kind: str) -> int:
        e = self.elem[kind]
        return self.put(name, np.zeros(n_elems * e, dtype=np.uint8), kind)

    def uops(self, name: str, uops) -> int:
        return self.put(name, isa.encode_uops(uops, self.cfg), "uop")

    def image(self) -> np.ndarray:
        return np.frombuffer(bytes(self.buf), dtype=np.uint8).copy()

    def read(self, dram: np.ndarray, name: str, dtype, shape) -> np.ndarray:
        lo, hi = self.regions[name]
        return dram[lo:hi].view(dtype).reshape(shape)


def wrap32(x):
    """Two's-complement int32 wrap of (arrays of) Python/numpy integers, as int64."""
    x = np.asarray(x, dtype=object)
    return np.array(((x - INT32_MIN) % INT32_SPAN) + INT32_MIN, dtype=np.int64)


def ref_alu(op: AluOp, a: np.ndarray, b) -> np.ndarray:
    """Reference ALU on int32 values computed with Python integers (independent of the sim)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.broadcast_to(np.asarray(b, dtype=np.int64), a.shape)
    out = np.empty(a.shape, dtype=np.int64)
    for idx in np.ndindex(a.shape):
        x, y = int(a[idx]), int(b[idx])
        if op == AluOp.MIN:
            r = min(x, y)
        elif op == AluOp.MAX:
            r = max(x, y)
        elif op == AluOp.ADD:
            r = x + y
        elif op == AluOp.MUL:
            r = x * y
        else:  # SHR: arithmetic right by y, left by -y when negative
            r = x >> y if y >= 0 else x << -y
        out[idx] = int(wrap32(r))
    return out


def low8(x) -> np.ndarray:
    """Low 8 bits of int32 values as int8 (the out-buffer narrowing)."""
    return (np.asarray(x, dtype=np.int64) & 0xFF).astype(np.uint8).view(np.int8)


def dump_acc(cfg, sram_base: int, n: int, dram_base_out: int, uop_index: int,
             first_pop_prev: bool = False) -> list:
    """Instructions that write acc[sram_base : sram_base + n] to DRAM as 4 byte planes.

    Each plane: ALU SHR (0 first, then 8) refreshes out = low 8 bits, STORE writes n out
    elements at dram_base_out + plane*n. Needs a loaded micro-op at uop_index with
    dst = sram_base. Decode with `undump_acc`. Tokens: compute->store before each STORE,
    store->compute after (end the program with Finish(pop_next=True))."""
    prog = []
    for plane in range(4):
        prog.append(Alu(alu_opcode=AluOp.SHR, use_imm=True, imm=0 if plane == 0 else 8,
                        uop_bgn=uop_index, uop_end=uop_index + 1, iter_out=n, iter_in=1,
                        dst_factor_out=1, pop_prev=first_pop_prev and plane == 0,
                        pop_next=plane > 0, push_next=True))
        prog.append(Store(memory_type=MemType.OUT, sram_base=sram_base,
                          dram_base=dram_base_out + plane * n, y_size=1, x_size=n, x_stride=n,
                          pop_prev=True, push_prev=True))
    return prog


def undump_acc(planes: np.ndarray) -> np.ndarray:
    """int32 accumulator values from the 4 byte planes written by dump_acc ([4, n, ...] int8)."""
    b = planes.view(np.uint8).astype(np.int64)
    v = b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)
    return wrap32(v)


def load(mt: MemType, sram: int, dram: int, y: int = 1, x: int = 1, stride: int | None = None,
         **kw) -> Load:
    """LOAD with y rows of x elements (stride defaults to x)."""
    return Load(memory_type=mt, sram_base=sram, dram_base=dram, y_size=y, x_size=x,
                x_stride=x if stride is None else stride, **kw)


def loops_program(cfg, uops, insns, inp, wgt, acc, n_dump: int):
    """(program, DramBuilder): load inp/wgt/acc tiles and the micro-ops (+ one for dump_acc),
    run the GEMM/ALU `insns` (the first pops the load->compute token), then write
    acc[0:n_dump] to region "out" as dump_acc planes (read back with undump_acc)."""
    from bctvm.isa import Finish, Uop

    dump_uop = len(uops)
    all_uops = list(uops) + [Uop(dst=0)]
    d = DramBuilder(cfg)
    u = d.uops("uops", all_uops)
    i_ = d.put("inp", inp, "inp")
    w_ = d.put("wgt", wgt, "wgt")
    a_ = d.put("acc", acc, "acc")
    o_ = d.reserve("out", 4 * n_dump, "out")
    prog = [load(MemType.INP, 0, i_, x=len(inp)),
            load(MemType.WGT, 0, w_, x=len(wgt), push_next=True),
            load(MemType.UOP, 0, u, x=len(all_uops)), load(MemType.ACC, 0, a_, x=len(acc))]
    prog += [g.replace(pop_prev=(k == 0)) for k, g in enumerate(insns)]
    prog += dump_acc(cfg, 0, n_dump, o_, dump_uop) + [Finish(pop_next=True)]
    return prog, d
