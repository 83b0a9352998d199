"""Simulator self-test: a real 3x3 conv layer as a VTA program, checked against numpy.

The layer: int8 input [BATCH, Ci, H, W] (Ci = in_blocks x BLOCK_IN), int8 weights
[Co, Ci, 3, 3] (Co = out_blocks x BLOCK_OUT), zero padding 1, stride 1, int32 bias, then the
requantising epilogue y = relu(clip((((acc + bias) * MUL) + 2**(SHIFT-1)) >> SHIFT, -128, 127))
narrowed to int8.

The program splits the output rows into `row_tiles` tiles and pipelines them:
- load module: the padded input rows of a tile (halo rows from DRAM, zero rows/columns from
  the LOAD padding fields) into one of two input-buffer slots; the weights once;
- compute module: micro-ops (LOAD UOP) and bias (LOAD ACC) once; per tile a GEMM reset, the
  conv as one GEMM over (out block, in block, kh, kw) micro-ops looping over rows and columns,
  and the ALU epilogue (ADD bias, MUL, ADD round, SHR, MIN, MAX, MAX 0 = ReLU) into one of two
  accumulator slots;
- store module: the tile's output rows back to DRAM.
Tokens: load -> compute when a tile is loaded; compute -> load when an input slot is free
again; compute -> store when a tile is computed; store -> compute when an accumulator slot
may be overwritten, and once more before FINISH.

DRAM layouts: input NCHW1nXc as tiles [(c block, h, w), BATCH, BLOCK_IN]; weights
OIHWxoxi as tiles [(o block, i block, kh, kw), BLOCK_OUT, BLOCK_IN]; output like the input
with BLOCK_OUT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from boards import BoardConfig, load_board
from bctvm.errors import BadInputError, ValidationMismatch
from bctvm.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store, Uop
from bctvm.program import DramImage, nchw_to_tiles, oihw_to_tiles, tiles_to_nchw

KERNEL = 3  # the self-test layer is a 3x3 conv with padding 1
PAD = 1
MUL = 3  # requantisation multiplier of the epilogue (ALU MUL immediate)


@dataclass
class SelftestProgram:
    """Everything the self-test runs and checks."""

    cfg: BoardConfig
    insns: list
    image: DramImage
    expected: np.ndarray  # int8 [BATCH, Co, H, W]: the numpy reference output
    shift: int
    shape: dict = field(default_factory=dict)  # layer dimensions, for the report

    @property
    def dram(self) -> np.ndarray:
        return self.image.to_array()

    @property
    def regions(self) -> dict:
        return self.image.regions

    def output(self, dram: np.ndarray) -> np.ndarray:
        """int8 [BATCH, Co, H, W] read back from a final DRAM image."""
        s = self.shape
        return tiles_to_nchw(self.image.read("output", dram),
                             (s["batch"], s["out_channels"], s["height"], s["width"]))


def conv_acc(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Accumulator of the layer in plain numpy (NCHW, int64): conv3x3 pad 1 + bias, [N, Co, H, W]."""
    n, ci, h, wd = x.shape
    xp = np.zeros((n, ci, h + 2 * PAD, wd + 2 * PAD), np.int64)
    xp[:, :, PAD:PAD + h, PAD:PAD + wd] = x
    acc = np.zeros((n, w.shape[0], h, wd), np.int64)
    for kh in range(KERNEL):
        for kw in range(KERNEL):
            patch = xp[:, :, kh:kh + h, kw:kw + wd]
            acc += np.einsum("nchw,oc->nohw", patch, w[:, :, kh, kw].astype(np.int64))
    return acc + bias.astype(np.int64)[None, :, None, None]


def requantize(acc: np.ndarray, shift: int) -> np.ndarray:
    """The epilogue in numpy: relu(clip(((acc * MUL) + 2**(shift-1)) >> shift)) as int8."""
    y = (acc * MUL + (1 << (shift - 1))) >> shift
    return np.maximum(np.clip(y, -128, 127), 0).astype(np.int8)


def pick_shift(acc: np.ndarray) -> int:
    """Smallest shift that clips at most 5% of outputs at 127 (so MIN/MAX really act)."""
    for shift in range(1, 31):
        if np.mean(requantize(acc, shift) == 127) <= 0.05:
            return shift
    return 30


def build_selftest(cfg: BoardConfig, seed: int = 0, height: int = 8, width: int = 8,
                   row_tiles: int = 2, in_blocks: int = 2, out_blocks: int = 2) -> SelftestProgram:
    """Build the self-test program and DRAM image for a board (see module docstring)."""
    if height % row_tiles:
        raise BadInputError(f"self-test: height {height} is not a multiple of row_tiles {row_tiles}")
    bi, bo, nb = cfg.block_in, cfg.block_out, cfg.batch
    rows = height // row_tiles
    prow, pcol = rows + 2 * PAD, width + 2 * PAD  # padded input tile: rows x cols
    taps = KERNEL * KERNEL

    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(nb, in_blocks * bi, height, width), dtype=np.int64)
    w = rng.integers(-128, 128, size=(out_blocks * bo, in_blocks * bi, KERNEL, KERNEL), dtype=np.int64)
    bias = rng.integers(-(1 << 15), 1 << 15, size=out_blocks * bo, dtype=np.int64)
    bound = (np.abs(bias).max() + in_blocks * bi * taps * 128 * 128) * MUL + (1 << 30)
    if bound >= 1 << 31:
        raise BadInputError(f"self-test: layer too large for int32 accumulation (bound {bound})")
    acc = conv_acc(x, w, bias)
    shift = pick_shift(acc)
    expected = requantize(acc, shift)

    # ---- on-chip layout (element indices) -------------------------------------------------
    inp_slot = in_blocks * prow * pcol  # elements per input slot
    acc_slot = out_blocks * rows * width  # elements per accumulator slot
    inp_base = [0, inp_slot]
    acc_base = [0, acc_slot]
    bias_base = 2 * acc_slot
    need = {
        "inp": (2 * inp_slot, cfg.inp_depth),
        "acc": (bias_base + out_blocks, cfg.acc_depth),
        "wgt": (out_blocks * in_blocks * taps, cfg.wgt_depth),
    }
    for buf, (used, depth) in need.items():
        if used > depth:
            raise BadInputError(f"self-test: needs {used} {buf} elements, board '{cfg.name}' has {depth}")

    # ---- micro-ops: per slot, [reset/imm (1)] [conv (ob*ib*taps)] [bias (1)] ----------------
    uops: list[Uop] = []
    kernels = []  # per slot: dict of (uop_bgn, uop_end)
    for s in range(2):
        k = {}
        k["whole"] = (len(uops), len(uops) + 1)
        uops.append(Uop(dst=acc_base[s], src=acc_base[s], wgt=0))
        k["conv"] = (len(uops), len(uops) + out_blocks * in_blocks * taps)
        for o in range(out_blocks):
            for i in range(in_blocks):
                for kh in range(KERNEL):
                    for kw in range(KERNEL):
                        uops.append(Uop(
                            dst=acc_base[s] + o * rows * width,
                            src=inp_base[s] + i * prow * pcol + kh * pcol + kw,
                            wgt=((o * in_blocks + i) * KERNEL + kh) * KERNEL + kw,
                        ))
        k["bias"] = (len(uops), len(uops) + 1)
        uops.append(Uop(dst=acc_base[s], src=bias_base, wgt=0))
        kernels.append(k)
    if len(uops) > cfg.uop_depth:
        raise BadInputError(f"self-test: {len(uops)} micro-ops exceed the uop buffer ({cfg.uop_depth})")

    # ---- DRAM image ---------------------------------------------------------------------------
    img = DramImage(cfg)
    img.put_uops("uops", uops)
    img.put_inp("input", nchw_to_tiles(x, nb, bi))
    img.put_wgt("weights", oihw_to_tiles(w, bo, bi))
    b_tiles = np.broadcast_to(bias.reshape(out_blocks, 1, bo), (out_blocks, nb, bo))
    img.put_acc("bias", b_tiles)
    out = img.alloc_out("output", out_blocks * height * width)
    r_inp, r_wgt = img.region("input"), img.region("weights")

    # ---- instruction stream ---------------------------------------------------------------------
    insns: list = [
        Load(memory_type=MemType.UOP, sram_base=0, dram_base=img.region("uops").dram_base,
             y_size=1, x_size=len(uops), x_stride=len(uops)),
        Load(memory_type=MemType.ACC, sram_base=bias_base, dram_base=img.region("bias").dram_base,
             y_size=1, x_size=out_blocks, x_stride=out_blocks),
    ]
    whole = dict(iter_out=1, iter_in=acc_slot, dst_factor_in=1)  # every element of a slot
    for t in range(row_tiles):
        s, r0 = t % 2, t * rows
        # load module: padded input rows of this tile (halo from DRAM, zeros at the border)
        y_pad_0 = PAD if r0 == 0 else 0
        y_pad_1 = PAD if r0 + rows == height else 0
        first_row = r0 - PAD + y_pad_0
        loads = []
        for i in range(in_blocks):
            loads.append(Load(
                memory_type=MemType.INP, sram_base=inp_base[s] + i * prow * pcol,
                dram_base=r_inp.dram_base + (i * height + first_row) * width,
                y_size=prow - y_pad_0 - y_pad_1, x_size=width, x_stride=width,
                y_pad_0=y_pad_0, y_pad_1=y_pad_1, x_pad_0=PAD, x_pad_1=PAD,
            ))
        if t == 0:
            loads.insert(0, Load(memory_type=MemType.WGT, sram_base=0, dram_base=r_wgt.dram_base,
                                 y_size=1, x_size=r_wgt.n_elems, x_stride=r_wgt.n_elems))
        if t >= 2:  # the input slot must have been consumed by tile t-2's GEMM
            loads[0] = loads[0].replace(pop_next=True)
        loads[-1] = loads[-1].replace(push_next=True)
        insns += loads

        # compute module
        k = kernels[s]
        insns.append(Gemm(reset_reg=True, uop_bgn=k["whole"][0], uop_end=k["whole"][1],
                          pop_next=t >= 2, **whole))  # wait for the store of tile t-2
        insns.append(Gemm(
            uop_bgn=k["conv"][0], uop_end=k["conv"][1], iter_out=rows, iter_in=width,
            dst_factor_out=width, dst_factor_in=1, src_factor_out=pcol, src_factor_in=1,
            pop_prev=True, push_prev=t + 2 < row_tiles,
        ))
        insns.append(Alu(alu_opcode=AluOp.ADD, uop_bgn=k["bias"][0], uop_end=k["bias"][1],
                         iter_out=out_blocks, iter_in=rows * width, dst_factor_out=rows * width,
                         dst_factor_in=1, src_factor_out=1, src_factor_in=0))
        epilogue = [(AluOp.MUL, MUL), (AluOp.ADD, 1 << (shift - 1)), (AluOp.SHR, shift),
                    (AluOp.MIN, 127), (AluOp.MAX, -128), (AluOp.MAX, 0)]
        for op, imm in epilogue:
            insns.append(Alu(alu_opcode=op, use_imm=True, imm=imm, uop_bgn=k["whole"][0],
                             uop_end=k["whole"][1], **whole))
        insns[-1] = insns[-1].replace(push_next=True)

        # store module: one 2-D STORE per output channel block
        stores = [
            Store(sram_base=acc_base[s] + o * rows * width,
                  dram_base=out.dram_base + (o * height + r0) * width,
                  y_size=rows, x_size=width, x_stride=width)
            for o in range(out_blocks)
        ]
        stores[0] = stores[0].replace(pop_prev=True)
        # tile t's slot is reused by tile t+2; the last tile's token releases FINISH
        stores[-1] = stores[-1].replace(push_prev=t + 2 < row_tiles or t == row_tiles - 1)
        insns += stores
    insns.append(Finish(pop_next=True))

    shape = dict(batch=nb, in_channels=in_blocks * bi, out_channels=out_blocks * bo,
                 height=height, width=width, kernel=KERNEL, row_tiles=row_tiles,
                 in_blocks=in_blocks, out_blocks=out_blocks)
    return SelftestProgram(cfg, insns, img, expected, shift, shape)


def check_output(prog: SelftestProgram, final_dram: np.ndarray) -> dict:
    """Compare a final DRAM image with the reference; dict with bit_exact and max_abs_err."""
    got = prog.output(final_dram).astype(np.int64)
    diff = np.abs(got - prog.expected.astype(np.int64))
    return {
        "reference": "numpy-int64",
        "bit_exact": bool(diff.max() == 0),
        "max_abs_err": int(diff.max()),
        "mismatches": int(np.count_nonzero(diff)),
        "elements": int(diff.size),
    }


def run_selftest(board: str | BoardConfig = "pynq", seed: int = 0, strict: bool = True,
                 **layer) -> tuple[dict, SelftestProgram]:
    """Build, simulate and check the self-test. Returns (report, program).

    The report is the simulator's JSON report plus "selftest" (layer shape, shift, counts) and
    "validation". With `strict`, raises ValidationMismatch when the output differs from the
    reference (else see report["validation"]["bit_exact"]).
    """
    from bctvm.sim import Simulator

    cfg = load_board(board)
    prog = build_selftest(cfg, seed=seed, **layer)
    t0 = time.perf_counter()
    res = Simulator(cfg).run(prog.insns, prog.dram, regions=prog.regions)
    wall = time.perf_counter() - t0
    report = dict(res.to_report())
    report["selftest"] = {**prog.shape, "shift": prog.shift, "mul": MUL, "seed": seed,
                          "instructions": len(prog.insns), "uops": prog.image.region("uops").n_elems,
                          "sim_wall_s": round(wall, 4)}
    report["validation"] = check_output(prog, res.dram)
    if strict:
        raise_on_mismatch(report)
    return report, prog


def raise_on_mismatch(report: dict) -> None:
    """ValidationMismatch (exit code 1) if a self-test report's output was not bit-exact."""
    v = report["validation"]
    if not v["bit_exact"]:
        raise ValidationMismatch(
            f"self-test on '{report.get('board')}': {v['mismatches']} of {v['elements']} outputs "
            f"differ from the numpy reference (max abs error {v['max_abs_err']})"
        )


def format_report(report: dict) -> str:
    """A few human-readable lines summarising a simulator/self-test report."""
    c = report.get("counters", {})
    lines = [
        f"board {report.get('board')}  cycles {report.get('cycles')}  "
        f"latency {report.get('latency_ms', 0):.4f} ms @ {report.get('clock_mhz')} MHz",
    ]
    if c:
        reads = c.get("dram_read_bytes", {})
        lines.append("DRAM read  " + "  ".join(f"{k} {v} B" for k, v in reads.items())
                     + f"  | written {c.get('dram_write_bytes')} B  instructions {c.get('insn_bytes')} B")
        insns = c.get("instructions", {})
        lines.append(f"GEMM uops {c.get('gemm_uops')}  ALU uops {c.get('alu_uops')}  MACs {c.get('macs')}  "
                     f"on-chip reuse {c.get('onchip_reuse_bytes', 0)} B  | instructions "
                     + " ".join(f"{k} {v}" for k, v in insns.items()))
    if "selftest" in report:
        s = report["selftest"]
        lines.append(f"self-test conv3x3 {s['in_channels']}->{s['out_channels']} ch on "
                     f"{s['height']}x{s['width']} (batch {s['batch']}, {s['row_tiles']} row tiles), "
                     f"shift {s['shift']}")
    if "validation" in report:
        v = report["validation"]
        lines.append(f"validation vs {v['reference']}: "
                     + ("bit-exact" if v["bit_exact"] else f"MISMATCH (max abs err {v['max_abs_err']})"))
    return "\n".join(lines)
