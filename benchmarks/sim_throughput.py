"""Simulator throughput on a GEMM-heavy program: one 3x3 conv layer as VTA instructions.

Builds a padded 3x3, stride-1 conv (default: 64 -> 64 channels on a 56x56 map, ResNet-18's
first stage, 115.6 M MACs) the way a VTA schedule would: output tiles of a few rows; per
tile, 2-D padded LOAD INPs, per output-channel block one GEMM whose micro-op loop covers
(kh, kw, input-channel block) with iter_out/iter_in over the tile's rows/columns, an ALU
epilogue (SHR, ReLU, clip) and STOREs, with load/compute/store token handshakes. Runs it
once, checks the result against numpy, and prints MAC/s and micro-ops/s.

    python benchmarks/sim_throughput.py [--board pynq] [--size 56] [--channels 64] [--tile-rows 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bctvm import isa
from bctvm.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store, Uop


def build_conv_program(cfg, size: int, cin: int, cout: int, tile_rows: int, shift: int = 8,
                       seed: int = 0) -> dict:
    """A padded 3x3 conv layer (int8 NCHW1n16c-style tiles) as a VTA program + DRAM image.

    Returns {program, dram, regions, out_slice (bytes of the output), expected (int8 output
    [cout_blocks, size, size, batch, block_out]), macs}."""
    b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
    if cin % bi or cout % bo:
        raise ValueError(f"channels must be multiples of the block ({bi}/{bo})")
    if size % tile_rows:
        raise ValueError("size must be a multiple of tile_rows")
    cb, ob, h, w, th = cin // bi, cout // bo, size, size, tile_rows
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (cb, h, w, b, bi), dtype=np.int8)
    k = rng.integers(-128, 128, (ob, 3, 3, cb, bo, bi), dtype=np.int8)

    # numpy reference: zero-padded conv, int32 wrap, SHR, ReLU, clip to 127, truncate
    xp = np.zeros((cb, h + 2, w + 2, b, bi), dtype=np.int64)
    xp[:, 1:-1, 1:-1] = x
    acc = np.zeros((ob, h, w, b, bo), dtype=np.int64)
    for kh in range(3):
        for kw in range(3):
            win = xp[:, kh:kh + h, kw:kw + w]  # cb, h, w, b, bi
            acc += np.einsum("chwbi,ocji->ohwbj", win, k[:, kh, kw].astype(np.int64))
    acc = acc.astype(np.int32) >> shift
    expected = np.minimum(np.maximum(acc, 0), 127).astype(np.int8)

    e = cfg.memtype_elem_bytes()
    uops = [Uop(dst=o * th * w, src=c * (th + 2) * (w + 2) + kh * (w + 2) + kw,
                wgt=((o * 3 + kh) * 3 + kw) * cb + c)
            for o in range(ob) for kh in range(3) for kw in range(3) for c in range(cb)]
    per_oc = 9 * cb
    epi = len(uops)
    uops.append(Uop(dst=0, src=0, wgt=0))  # reset / epilogue walker
    words = isa.encode_uops(uops, cfg)

    def align(n, a):
        return -(-n // a) * a

    uop_at = 0
    wgt_at = align(uop_at + words.nbytes, e["wgt"])
    inp_at = align(wgt_at + k.nbytes, e["inp"])
    out_at = align(inp_at + x.nbytes, e["out"])
    dram = np.zeros(out_at + ob * h * w * e["out"], dtype=np.uint8)
    dram[uop_at:uop_at + words.nbytes] = words.view(np.uint8)
    dram[wgt_at:wgt_at + k.nbytes] = k.reshape(-1).view(np.uint8)
    dram[inp_at:inp_at + x.nbytes] = x.reshape(-1).view(np.uint8)
    regions = {"uops": (uop_at, uop_at + words.nbytes), "weights": (wgt_at, wgt_at + k.nbytes),
               "input": (inp_at, inp_at + x.nbytes), "output": (out_at, dram.size)}

    prog = [Load(memory_type=MemType.UOP, sram_base=0, dram_base=uop_at // e["uop"],
                 y_size=1, x_size=len(uops), x_stride=len(uops)),
            Load(memory_type=MemType.WGT, sram_base=0, dram_base=wgt_at // e["wgt"],
                 y_size=1, x_size=k.shape[0] * 9 * cb, x_stride=k.shape[0] * 9 * cb)]
    tiles = h // th
    tile_elems = (th + 2) * (w + 2)
    for t in range(tiles):
        r0 = t * th
        yp0, yp1 = int(r0 == 0), int(r0 + th == h)
        for c in range(cb):
            prog.append(Load(memory_type=MemType.INP, sram_base=c * tile_elems,
                             dram_base=inp_at // e["inp"] + c * h * w + (r0 - 1 + yp0) * w,
                             y_size=th + 2 - yp0 - yp1, x_size=w, x_stride=w,
                             y_pad_0=yp0, y_pad_1=yp1, x_pad_0=1, x_pad_1=1,
                             pop_next=(t > 0 and c == 0), push_next=(c == cb - 1)))
        prog.append(Gemm(reset_reg=True, uop_bgn=epi, uop_end=epi + 1, iter_out=ob * th,
                         iter_in=w, dst_factor_out=w, dst_factor_in=1,
                         pop_prev=True, pop_next=t > 0))
        for o in range(ob):
            prog.append(Gemm(uop_bgn=o * per_oc, uop_end=(o + 1) * per_oc, iter_out=th,
                             iter_in=w, dst_factor_out=w, dst_factor_in=1,
                             src_factor_out=w + 2, src_factor_in=1,
                             push_prev=(o == ob - 1 and t < tiles - 1)))
        for j, (op, imm) in enumerate(((AluOp.SHR, shift), (AluOp.MAX, 0), (AluOp.MIN, 127))):
            prog.append(Alu(alu_opcode=op, use_imm=True, imm=imm, uop_bgn=epi, uop_end=epi + 1,
                            iter_out=ob * th, iter_in=w, dst_factor_out=w, dst_factor_in=1,
                            push_next=(j == 2)))
        for o in range(ob):
            prog.append(Store(sram_base=o * th * w,
                              dram_base=out_at // e["out"] + o * h * w + r0 * w,
                              y_size=th, x_size=w, x_stride=w,
                              pop_prev=(o == 0), push_prev=(o == ob - 1)))
    prog.append(Finish(pop_next=True))
    return {"program": prog, "dram": dram, "regions": regions,
            "out_slice": slice(out_at, dram.size), "expected": expected,
            "macs": 9 * cin * cout * h * w * b}


def main() -> None:
    from boards import load_board
    from bctvm.sim import Simulator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="pynq")
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--tile-rows", type=int, default=4)
    ap.add_argument("--encoded", action="store_true", help="run the encoded .bin bytes")
    args = ap.parse_args()
    cfg = load_board(args.board)
    case = build_conv_program(cfg, args.size, args.channels, args.channels, args.tile_rows)
    program = isa.encode_program(case["program"], cfg) if args.encoded else case["program"]
    sim = Simulator(cfg)
    t0 = time.perf_counter()
    res = sim.run(program, case["dram"], regions=case["regions"])
    dt = time.perf_counter() - t0
    got = res.dram[case["out_slice"]].view(np.int8).reshape(case["expected"].shape)
    ok = bool((got == case["expected"]).all())
    c = res.counters
    uops = c["gemm_uops"] + c["alu_uops"]
    print(f"board {cfg.name}: 3x3 conv {args.channels}->{args.channels} on {args.size}x{args.size}, "
          f"{len(case['program'])} instructions, {c['macs'] / 1e6:.1f} M MACs, "
          f"{uops / 1e6:.3f} M micro-ops")
    print(f"wall {dt:.3f} s  ->  {c['macs'] / dt / 1e6:.0f} M MAC/s, {uops / dt / 1e6:.2f} M micro-ops/s, "
          f"{len(case['program']) / dt:.0f} instructions/s")
    print(f"simulated {res.cycles} cycles = {res.latency_ms:.3f} ms at {cfg.clock_mhz:g} MHz; "
          f"matches numpy: {ok}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
