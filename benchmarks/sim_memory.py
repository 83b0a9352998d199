"""Simulator peak memory on the largest GEMM/ALU micro-op loops a board allows.

Each case is one program: LOAD UOP/INP/WGT/ACC, one GEMM or ALU loop, FINISH. It runs once
under tracemalloc (numpy reports its buffers to it) and prints the micro-op count, the peak
bytes the simulation allocated, the bytes one flat index grid of the loop would have taken
(what the simulator allocated before the loops were bounded) and the seconds.

    python benchmarks/sim_memory.py [--board pynq]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from bctvm import isa
from bctvm.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Uop


def program(cfg, loop, n_uops: int):
    """(instructions, DRAM image): every buffer filled with random data, then `loop`."""
    rng = np.random.default_rng(0)
    e = cfg.memtype_elem_bytes()
    parts, base = [], {}
    uops = [Uop(dst=k, src=k, wgt=k) for k in range(n_uops)]
    blobs = {"uop": isa.encode_uops(uops, cfg).view(np.uint8),
             "inp": rng.integers(0, 256, cfg.inp_depth * e["inp"], dtype=np.uint8),
             "wgt": rng.integers(0, 256, cfg.wgt_depth * e["wgt"], dtype=np.uint8),
             "acc": rng.integers(0, 256, cfg.acc_depth * e["acc"], dtype=np.uint8)}
    offset = 0
    for name, blob in blobs.items():
        offset = -(-offset // e[name]) * e[name]
        base[name] = offset // e[name]
        parts.append((offset, blob))
        offset += blob.size
    dram = np.zeros(offset, dtype=np.uint8)
    for start, blob in parts:
        dram[start:start + blob.size] = blob

    def load(mt, name, n, **kw):
        return Load(memory_type=mt, sram_base=0, dram_base=base[name], y_size=1, x_size=n,
                    x_stride=n, **kw)

    insns = [load(MemType.INP, "inp", cfg.inp_depth),
             load(MemType.WGT, "wgt", cfg.wgt_depth, push_next=True),
             load(MemType.UOP, "uop", n_uops), load(MemType.ACC, "acc", cfg.acc_depth),
             loop.replace(pop_prev=True), Finish()]
    return insns, dram


def cases(cfg):
    e = (1 << cfg.loop_iter_bits) - 1
    side = min(cfg.acc_depth, cfg.inp_depth) // 2 - 8
    k = 8
    return [
        ("GEMM, max extents, nothing moves", Gemm(uop_bgn=0, uop_end=1, iter_out=e, iter_in=e), 1),
        ("ALU ADD imm, max extents", Alu(alu_opcode=AluOp.ADD, use_imm=True, imm=3, uop_bgn=0,
                                         uop_end=1, iter_out=e, iter_in=e), 1),
        ("ALU MUL imm, max extents", Alu(alu_opcode=AluOp.MUL, use_imm=True, imm=3, uop_bgn=0,
                                         uop_end=1, iter_out=e, iter_in=e), 1),
        (f"GEMM {side}x{side}x{k}, dst and src moving",
         Gemm(uop_bgn=0, uop_end=k, iter_out=side, iter_in=side, dst_factor_out=1,
              src_factor_in=1), k),
        (f"ALU ADD imm {side}x{side}x{k}, dst moving on both axes",
         Alu(alu_opcode=AluOp.ADD, use_imm=True, imm=-3, uop_bgn=0, uop_end=k, iter_out=side,
             iter_in=side, dst_factor_out=1, dst_factor_in=1), k),
        (f"ALU ADD register {e}x64, dst and src repeating",
         Alu(alu_opcode=AluOp.ADD, use_imm=False, uop_bgn=0, uop_end=1, iter_out=e, iter_in=64,
             dst_factor_in=1, src_factor_in=1), 1),
    ]


def main() -> None:
    from boards import load_board
    from bctvm.sim import Simulator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="pynq")
    args = ap.parse_args()
    cfg = load_board(args.board)
    print(f"board {cfg.name}: loop fields of {cfg.loop_iter_bits} bits, acc depth "
          f"{cfg.acc_depth}, micro-op depth {cfg.uop_depth}")
    print(f"{'loop':<50} {'micro-ops':>15} {'peak MiB':>9} {'flat grid MiB':>14} {'s':>7}")
    for name, loop, n_uops in cases(cfg):
        insns, dram = program(cfg, loop, n_uops)
        n = loop.iter_out * loop.iter_in * n_uops
        tracemalloc.start()
        t0 = time.perf_counter()
        Simulator(cfg).run(insns, dram)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{name:<50} {n:>15,} {peak / 2**20:>9.1f} {n * 8 / 2**20:>14,.0f} {seconds:>7.2f}")


if __name__ == "__main__":
    main()
