"""One test per instruction behaviour (in the spirit of VTA's test_vta_insn.py), each checked
against a numpy / pure-Python reference. Programs are written with bctvm.isa records."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from boards import load_board
from bctvm.isa import Alu, AluOp, Finish, Gemm, MemType, Store, Uop
from bctvm.sim import Simulator

from .helpers import (
    DramBuilder,
    dump_acc,
    load,
    loops_program,
    low8,
    ref_alu,
    undump_acc,
    wrap32,
)

PYNQ = load_board("pynq")
ZCU = load_board("zcu102")
BATCH2 = dataclasses.replace(PYNQ, name="pynq-batch2", log_batch=1)  # BATCH = 2
RNG = np.random.default_rng(1234)


def rand_acc(cfg, n, rng=RNG):
    """n accumulator tiles of int32 covering the extremes."""
    a = rng.integers(-(1 << 31), 1 << 31, (n, cfg.batch, cfg.block_out), dtype=np.int64)
    a.reshape(-1)[:4] = [-(1 << 31), (1 << 31) - 1, 0, -1]
    return a.astype(np.int32)


def rand_i8(shape, rng=RNG):
    return rng.integers(-128, 128, shape, dtype=np.int8)


# ---- reference loop (sequential, pure Python integers) --------------------------------------


def ref_loop(insn, uops, acc, inp=None, wgt=None):
    """Run one GEMM/ALU loop sequentially on int64 copies; returns the new acc."""
    acc = acc.astype(np.int64).copy()
    for i in range(insn.iter_out):
        for j in range(insn.iter_in):
            for k in range(insn.uop_bgn, insn.uop_end):
                u = uops[k]
                d = u.dst + i * insn.dst_factor_out + j * insn.dst_factor_in
                s = u.src + i * insn.src_factor_out + j * insn.src_factor_in
                if isinstance(insn, Gemm):
                    if insn.reset_reg:
                        acc[d] = 0
                        continue
                    w = u.wgt + i * insn.wgt_factor_out + j * insn.wgt_factor_in
                    prod = inp[s].astype(np.int64) @ wgt[w].astype(np.int64).T
                    acc[d] = wrap32(acc[d] + prod)
                else:
                    b = insn.imm if insn.use_imm else acc[s]
                    acc[d] = ref_alu(insn.alu_opcode, acc[d], b)
    return acc


# ---- store-after-load, padded loads -------------------------------------------------------


def test_store_after_load_of_output_buffer():
    """LOAD ACC, ALU ADD 0 (which writes out = low 8 bits of acc), STORE: DRAM gets low8(acc)."""
    cfg, n = PYNQ, 12
    acc = rand_acc(cfg, n)
    d = DramBuilder(cfg)
    u = d.uops("uops", [Uop(dst=0)])
    a = d.put("acc", acc, "acc")
    o = d.reserve("out", n, "out")
    prog = [load(MemType.UOP, 0, u), load(MemType.ACC, 0, a, x=n),
            Alu(alu_opcode=AluOp.ADD, use_imm=True, imm=0, uop_bgn=0, uop_end=1, iter_out=n,
                dst_factor_out=1, push_next=True),
            Store(sram_base=0, dram_base=o, y_size=1, x_size=n, x_stride=n, pop_prev=True,
                  push_prev=True),
            Finish(pop_next=True)]
    res = Simulator(cfg).run(prog, d.image())
    got = d.read(res.dram, "out", np.int8, (n, cfg.batch, cfg.block_out))
    np.testing.assert_array_equal(got, low8(acc))
    assert res.counters["dram_read_bytes"]["acc"] == n * cfg.acc_elem_bytes
    assert res.counters["dram_write_bytes"] == n * cfg.out_elem_bytes


def identity_weights(cfg):
    w = np.zeros((1, cfg.block_out, cfg.block_in), dtype=np.int8)
    w[0] = np.eye(cfg.block_out, cfg.block_in, dtype=np.int8)
    return w


def copy_through_gemm(cfg, n_elems, sram_base=0):
    """GEMM reset + identity GEMM over inp[sram_base : +n] -> acc[0:n], so out = inp."""
    return [
        Gemm(reset_reg=True, uop_bgn=0, uop_end=1, iter_out=n_elems, dst_factor_out=1,
             pop_prev=True),
        Gemm(uop_bgn=1, uop_end=2, iter_out=n_elems, dst_factor_out=1, src_factor_out=1,
             push_next=True),
    ], [Uop(dst=0, src=0, wgt=0), Uop(dst=0, src=sram_base, wgt=0)]


@pytest.mark.parametrize("pads,stride_extra,offset", [
    ((0, 0, 0, 0), 0, (0, 0)),
    ((1, 0, 0, 0), 3, (1, 2)),
    ((0, 2, 0, 0), 1, (0, 1)),
    ((0, 0, 3, 0), 2, (2, 0)),
    ((0, 0, 0, 1), 0, (1, 1)),
    ((2, 1, 1, 3), 5, (3, 2)),
    ((15, 15, 15, 15), 0, (0, 0)),
])
def test_padded_2d_load(pads, stride_extra, offset):
    """LOAD INP of a y x x window of a strided 2-D map, zero-padded on the four sides."""
    cfg = PYNQ
    y0, y1, x0, x1 = pads
    y, x = 3, 4
    rows, cols = y + offset[0] + 1, x + offset[1] + stride_extra
    fmap = rand_i8((rows, cols, cfg.batch, cfg.block_in))
    h, w = y0 + y + y1, x0 + x + x1
    d = DramBuilder(cfg)
    gemms, uops = copy_through_gemm(cfg, h * w, sram_base=5)
    u = d.uops("uops", uops)
    wg = d.put("wgt", identity_weights(cfg), "wgt")
    f = d.put("fmap", fmap, "inp")
    junk = d.put("junk", rand_i8((h * w, cfg.batch, cfg.block_in)), "inp")
    o = d.reserve("out", h * w, "out")
    prog = [load(MemType.UOP, 0, u, x=2),
            load(MemType.WGT, 0, wg),
            load(MemType.INP, 5, junk, x=h * w),  # the padded load must overwrite all of it
            load(MemType.INP, 5, f + offset[0] * cols + offset[1], y=y, x=x, stride=cols,
                 y_pad_0=y0, y_pad_1=y1, x_pad_0=x0, x_pad_1=x1, push_next=True),
            *gemms,
            Store(sram_base=0, dram_base=o, y_size=1, x_size=h * w, x_stride=h * w,
                  pop_prev=True, push_prev=True),
            Finish(pop_next=True)]
    res = Simulator(cfg).run(prog, d.image())
    window = fmap[offset[0]:offset[0] + y, offset[1]:offset[1] + x]
    expected = np.pad(window, ((y0, y1), (x0, x1), (0, 0), (0, 0)))
    got = d.read(res.dram, "out", np.int8, (h, w, cfg.batch, cfg.block_out))
    np.testing.assert_array_equal(got, expected)
    # padding is made on chip: only the window's bytes come from DRAM
    assert res.counters["dram_read_bytes"]["inp"] == (h * w + y * x) * cfg.inp_elem_bytes


def test_padded_acc_load_and_strided_store():
    """LOAD ACC with padding, then a STORE with a row stride: pads read back as zeros."""
    cfg = PYNQ
    y, x, stride = 2, 3, 5
    acc = rand_acc(cfg, y * stride)
    h, w = y + 2, x + 1
    d = DramBuilder(cfg)
    u = d.uops("uops", [Uop(dst=0)])
    a = d.put("acc", acc, "acc")
    junk = d.put("junk", rand_acc(cfg, h * w), "acc")
    o = d.reserve("out", h * 7, "out")
    prog = [load(MemType.UOP, 0, u), load(MemType.ACC, 0, junk, x=h * w),
            load(MemType.ACC, 0, a, y=y, x=x, stride=stride, y_pad_0=1, y_pad_1=1, x_pad_0=1),
            Alu(alu_opcode=AluOp.ADD, use_imm=True, imm=0, uop_bgn=0, uop_end=1,
                iter_out=h * w, dst_factor_out=1, push_next=True),
            Store(sram_base=0, dram_base=o, y_size=h, x_size=w, x_stride=7, pop_prev=True,
                  push_prev=True),
            Finish(pop_next=True)]
    res = Simulator(cfg).run(prog, d.image())
    exp_tiles = np.pad(acc.reshape(y, stride, cfg.batch, cfg.block_out)[:, :x],
                       ((1, 1), (1, 0), (0, 0), (0, 0)))
    got = d.read(res.dram, "out", np.int8, (h, 7, cfg.batch, cfg.block_out))[:, :w]
    np.testing.assert_array_equal(got, low8(exp_tiles))
    assert not d.read(res.dram, "out", np.int8, (h, 7, cfg.batch, cfg.block_out))[:, w:].any()


# ---- GEMM ---------------------------------------------------------------------------------


def run_gemm_case(cfg, uops, insns, n_inp, n_wgt, n_acc, rng=RNG):
    """Preload random acc/inp/wgt, run the GEMMs, return (simulated acc, reference acc)."""
    inp = rand_i8((n_inp, cfg.batch, cfg.block_in), rng)
    wgt = rand_i8((n_wgt, cfg.block_out, cfg.block_in), rng)
    acc = rand_acc(cfg, n_acc, rng)
    prog, d = loops_program(cfg, uops, insns, inp, wgt, acc, n_acc)
    all_uops = list(uops) + [Uop(dst=0)]
    res = Simulator(cfg).run(prog, d.image())
    got = undump_acc(d.read(res.dram, "out", np.int8, (4, n_acc, cfg.batch, cfg.block_out)))
    ref = acc.astype(np.int64)
    for g in insns:
        ref = ref_loop(g, all_uops, ref, inp, wgt)
    return got, ref, res


@pytest.mark.parametrize("cfg", [PYNQ, ZCU, BATCH2], ids=["pynq", "zcu102", "batch2"])
def test_gemm_conv_like_shared_weights(cfg):
    """Uops = (kh, kw, cin) taps into one dst; iter_out/iter_in walk output rows/cols."""
    taps = [(kh, kw, c) for kh in range(3) for kw in range(3) for c in range(2)]
    w_in = 6  # padded input row length
    uops = [Uop(dst=0, src=c * 36 + kh * w_in + kw, wgt=(kh * 3 + kw) * 2 + c) for kh, kw, c in taps]
    g = Gemm(uop_bgn=0, uop_end=len(uops), iter_out=4, iter_in=4, dst_factor_out=4,
             dst_factor_in=1, src_factor_out=w_in, src_factor_in=1)
    got, ref, res = run_gemm_case(cfg, uops, [g], 72, 18, 16)
    np.testing.assert_array_equal(got, ref)
    assert res.counters["gemm_uops"] == 16 * len(uops)
    assert res.counters["macs"] == 16 * len(uops) * cfg.gemm_macs_per_cycle


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cfg", [PYNQ, BATCH2], ids=["pynq", "batch2"])
def test_gemm_random_loops_with_repeated_dst(seed, cfg):
    """Random micro-ops (repeated dst within and across iterations) and loop factors."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 9))
    uops = [Uop(dst=int(rng.integers(0, 4)), src=int(rng.integers(0, 8)),
                wgt=int(rng.integers(0, 4))) for _ in range(k)]
    g = Gemm(uop_bgn=0, uop_end=k, iter_out=int(rng.integers(1, 4)), iter_in=int(rng.integers(1, 4)),
             dst_factor_out=int(rng.integers(0, 3)), dst_factor_in=int(rng.integers(0, 3)),
             src_factor_out=int(rng.integers(0, 3)), src_factor_in=int(rng.integers(0, 3)),
             wgt_factor_out=int(rng.integers(0, 3)), wgt_factor_in=int(rng.integers(0, 3)))
    got, ref, _ = run_gemm_case(cfg, uops, [g], 16, 12, 12, rng)
    np.testing.assert_array_equal(got, ref)


def test_gemm_same_dst_accumulates_not_overwrites():
    """Two micro-ops with one dst in one instruction: acc gets the sum of both products."""
    cfg = PYNQ
    uops = [Uop(dst=1, src=0, wgt=0), Uop(dst=1, src=1, wgt=1), Uop(dst=1, src=2, wgt=0)]
    g = Gemm(uop_bgn=0, uop_end=3, iter_out=2, iter_in=1)  # every iteration adds again
    got, ref, _ = run_gemm_case(cfg, uops, [g], 3, 2, 2)
    np.testing.assert_array_equal(got, ref)


def test_gemm_weights_varying_per_position():
    """Weight index moves with a kept axis (per-micro-op path, few distinct tiles)."""
    cfg = PYNQ
    uops = [Uop(dst=d, src=d, wgt=d % 2) for d in range(4)]
    g = Gemm(uop_bgn=0, uop_end=4, iter_out=8, iter_in=8, dst_factor_out=4, dst_factor_in=0,
             src_factor_out=4, src_factor_in=0, wgt_factor_out=0, wgt_factor_in=1)
    got, ref, _ = run_gemm_case(cfg, uops, [g], 32, 12, 32)
    np.testing.assert_array_equal(got, ref)


def test_gemm_reset_then_accumulate():
    """reset_reg zeroes exactly the dst elements of its loop; a following GEMM accumulates."""
    cfg = PYNQ
    uops = [Uop(dst=2, src=0, wgt=0), Uop(dst=0, src=1, wgt=1)]
    insns = [Gemm(reset_reg=True, uop_bgn=0, uop_end=1, iter_out=3, dst_factor_out=1),
             Gemm(uop_bgn=0, uop_end=2, iter_out=2, dst_factor_out=1, src_factor_out=2)]
    got, ref, res = run_gemm_case(cfg, uops, insns, 6, 2, 8)
    np.testing.assert_array_equal(got, ref)
    assert res.counters["macs"] == 4 * cfg.gemm_macs_per_cycle  # the reset does no MACs
    assert res.counters["gemm_uops"] == 3 + 4


def test_gemm_int32_wraps():
    """Products added to accumulators near INT32_MAX wrap around (two's complement)."""
    cfg = PYNQ
    d = DramBuilder(cfg)
    u = d.uops("uops", [Uop(dst=0, src=0, wgt=0)])
    i_ = d.put("inp", np.full((1, cfg.batch, cfg.block_in), 127, np.int8), "inp")
    w_ = d.put("wgt", np.full((1, cfg.block_out, cfg.block_in), 127, np.int8), "wgt")
    a_ = d.put("acc", np.full((1, cfg.batch, cfg.block_out), (1 << 31) - 5, np.int32), "acc")
    o_ = d.reserve("out", 4, "out")
    prog = [load(MemType.INP, 0, i_), load(MemType.WGT, 0, w_, push_next=True),
            load(MemType.UOP, 0, u), load(MemType.ACC, 0, a_),
            Gemm(uop_bgn=0, uop_end=1, iter_out=4, pop_prev=True),
            *dump_acc(cfg, 0, 1, o_, 0), Finish(pop_next=True)]
    res = Simulator(cfg).run(prog, d.image())
    got = undump_acc(d.read(res.dram, "out", np.int8, (4, 1, cfg.batch, cfg.block_out)))
    total = (1 << 31) - 5 + 4 * cfg.block_in * 127 * 127
    assert total > (1 << 31) - 1
    assert (got == total - (1 << 32)).all()


# ---- ALU ----------------------------------------------------------------------------------


def run_alu_case(cfg, insns, acc, uops, n_dump):
    d = DramBuilder(cfg)
    u = d.uops("uops", list(uops) + [Uop(dst=0)])
    a = d.put("acc", acc, "acc")
    o = d.reserve("out", 4 * n_dump, "out")
    prog = [load(MemType.UOP, 0, u, x=len(uops) + 1), load(MemType.ACC, 0, a, x=acc.shape[0])]
    prog += list(insns) + dump_acc(cfg, 0, n_dump, o, len(uops)) + [Finish(pop_next=True)]
    res = Simulator(cfg).run(prog, d.image())
    got = undump_acc(d.read(res.dram, "out", np.int8, (4, n_dump, cfg.batch, cfg.block_out)))
    return got, res


ALU_IMMS = {AluOp.MIN: [-5, 0, 77], AluOp.MAX: [-5, 0, 77], AluOp.ADD: [-32768, 3, 32767],
            AluOp.SHR: [-40, -3, 0, 5, 31, 40], AluOp.MUL: [-32768, -3, 7, 32767]}


@pytest.mark.parametrize("op", list(AluOp), ids=lambda o: o.name)
@pytest.mark.parametrize("use_imm", [True, False], ids=["imm", "tile"])
def test_alu_op(op, use_imm):
    """Each ALU op, with an immediate and with an accumulator-tile operand, vs Python ints."""
    cfg, n = PYNQ, 6
    rng = np.random.default_rng(int(op) * 2 + use_imm)
    acc = rand_acc(cfg, 2 * n, rng)
    if op == AluOp.SHR and not use_imm:  # shift amounts, both signs, some past 31
        acc[n:] = rng.integers(-40, 41, acc[n:].shape)
    uops = [Uop(dst=0, src=n)]
    imms = ALU_IMMS[op] if use_imm else [0]
    insns, ref = [], acc.astype(np.int64)
    for imm in imms:
        insn = Alu(alu_opcode=op, use_imm=use_imm, imm=imm, uop_bgn=0, uop_end=1, iter_out=n,
                   dst_factor_out=1, src_factor_out=1)
        insns.append(insn)
        ref = ref_loop(insn, uops + [Uop(dst=0)], ref)
    got, res = run_alu_case(cfg, insns, acc, uops, n)
    np.testing.assert_array_equal(got, ref[:n])
    assert res.counters["alu_uops"] == n * len(imms) + 4 * n


def test_relu():
    """MAX with 0 is ReLU: negatives become 0, the rest unchanged; out = low 8 bits."""
    cfg, n = PYNQ, 8
    acc = rand_acc(cfg, n)
    got, _ = run_alu_case(cfg, [Alu(alu_opcode=AluOp.MAX, use_imm=True, imm=0, uop_bgn=0,
                                    uop_end=1, iter_out=n, dst_factor_out=1)], acc, [Uop()], n)
    np.testing.assert_array_equal(got, np.maximum(acc, 0))


def test_shift_and_scale_requantize():
    """SHR then MIN/MAX clip: the stored int8 equals clip(acc >> s, -128, 127) exactly."""
    cfg, n, s = PYNQ, 10, 9
    acc = rand_acc(cfg, n)
    acc[1:] //= 1 << 6  # keep most values in a range where the clip is partial
    d = DramBuilder(cfg)
    u = d.uops("uops", [Uop(dst=0)])
    a = d.put("acc", acc, "acc")
    o = d.reserve("out", n, "out")

    def alu(op, imm, **kw):
        return Alu(alu_opcode=op, use_imm=True, imm=imm, uop_bgn=0, uop_end=1, iter_out=n,
                   dst_factor_out=1, **kw)

    prog = [load(MemType.UOP, 0, u), load(MemType.ACC, 0, a, x=n),
            alu(AluOp.SHR, s), alu(AluOp.MIN, 127), alu(AluOp.MAX, -128, push_next=True),
            Store(sram_base=0, dram_base=o, y_size=1, x_size=n, x_stride=n, pop_prev=True,
                  push_prev=True),
            Finish(pop_next=True)]
    res = Simulator(cfg).run(prog, d.image())
    expected = np.clip(acc.astype(np.int64) >> s, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(d.read(res.dram, "out", np.int8, acc.shape), expected)
    assert res.counters["alu_uops"] == 3 * n


def test_residual_add_with_acc8_load():
    """LOAD ACC_8BIT sign-extends int8 into acc; ALU ADD of two tiles; clip; store."""
    cfg, n = PYNQ, 8
    main = rand_acc(cfg, n) // (1 << 24)  # small int32 values
    skip = rand_i8((n, cfg.batch, cfg.block_out))
    d = DramBuilder(cfg)
    u = d.uops("uops", [Uop(dst=0, src=n), Uop(dst=n)])
    a = d.put("main", main, "acc")
    r = d.put("skip", skip, "acc8")
    o = d.reserve("out", 4 * n, "out")
    o2 = d.reserve("sum", n, "out")

    def alu(op, imm=0, use_imm=True, **kw):
        return Alu(alu_opcode=op, use_imm=use_imm, imm=imm, uop_bgn=0, uop_end=1, iter_out=n,
                   dst_factor_out=1, src_factor_out=1, **kw)

    prog = [load(MemType.UOP, 0, u, x=2), load(MemType.ACC, 0, a, x=n),
            load(MemType.ACC_8BIT, n, r, x=n),
            alu(AluOp.ADD, use_imm=False), alu(AluOp.MAX, -128), alu(AluOp.MIN, 127, push_next=True),
            Store(sram_base=0, dram_base=o2, y_size=1, x_size=n, x_stride=n, pop_prev=True,
                  push_prev=True),
            *[i.replace(pop_next=True) if k == 0 else i
              for k, i in enumerate(dump_acc(cfg, n, n, o, 1))],
            Finish(pop_next=True)]
    res = Simulator(cfg).run(prog, d.image())
    expected = np.clip(main.astype(np.int64) + skip, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(d.read(res.dram, "sum", np.int8, main.shape), expected)
    # the skip tiles arrived sign-extended to int32
    planes = d.read(res.dram, "out", np.int8, (4, n, cfg.batch, cfg.block_out))
    np.testing.assert_array_equal(undump_acc(planes), skip.astype(np.int64))
    assert res.counters["dram_read_bytes"]["acc8"] == n * cfg.out_elem_bytes


def test_alu_repeated_dst_and_read_after_write_are_sequential():
    """uop 0 writes acc[1]; uop 1 reads acc[1] as src; uop 2 writes acc[1] again."""
    cfg = PYNQ
    acc = rand_acc(cfg, 4) // 4
    uops = [Uop(dst=1, src=2), Uop(dst=3, src=1), Uop(dst=1, src=3), Uop(dst=0, src=0)]
    insns = [Alu(alu_opcode=AluOp.ADD, uop_bgn=0, uop_end=4, iter_out=2),
             Alu(alu_opcode=AluOp.ADD, use_imm=True, imm=5, uop_bgn=0, uop_end=3, iter_out=3)]
    got, _ = run_alu_case(cfg, insns, acc, uops, 4)
    ref = acc.astype(np.int64)
    for insn in insns:
        ref = ref_loop(insn, uops, ref)
    np.testing.assert_array_equal(got, ref)


# ---- onchip reuse --------------------------------------------------------------------------


def onchip_program(cfg):
    """ACC -> ALU (fills out) -> LOAD OUT_INP (strided, padded) -> identity GEMM -> STORE."""
    y, x, stride = 2, 3, 4
    h, w = y + 1, x + 2
    acc = rand_acc(cfg, y * stride) // (1 << 20)
    d = DramBuilder(cfg)
    gemms, uops = copy_through_gemm(cfg, h * w, sram_base=0)
    u = d.uops("uops", uops + [Uop(dst=100)])
    wg = d.put("wgt", identity_weights(cfg), "wgt")
    a = d.put("acc", acc, "acc")
    o = d.reserve("out", h * w, "out")
    n = y * stride
    prog = [load(MemType.UOP, 0, u, x=3), load(MemType.ACC, 100, a, x=n),
            Alu(alu_opcode=AluOp.ADD, use_imm=True, imm=0, uop_bgn=2, uop_end=3, iter_out=n,
                dst_factor_out=1, push_prev=True),
            load(MemType.WGT, 0, wg, pop_next=True),
            load(MemType.OUT_INP, 0, 100, y=y, x=x, stride=stride, y_pad_0=1, x_pad_0=1,
                 x_pad_1=1, push_next=True),
            *gemms,
            Store(sram_base=0, dram_base=o, y_size=1, x_size=h * w, x_stride=h * w,
                  pop_prev=True, push_prev=True),
            Finish(pop_next=True)]
    window = low8(acc).reshape(y, stride, cfg.batch, cfg.block_out)[:, :x]
    expected = np.pad(window, ((1, 0), (1, 1), (0, 0), (0, 0)))
    return prog, d, expected, (h, w), y * x


def test_onchip_reuse_out_to_inp():
    """OUT_INP copies output-buffer tiles into the input buffer, padded, with no DRAM read."""
    cfg = ZCU
    prog, d, expected, (h, w), moved = onchip_program(cfg)
    res = Simulator(cfg).run(prog, d.image())
    got = d.read(res.dram, "out", np.int8, (h, w, cfg.batch, cfg.block_out))
    np.testing.assert_array_equal(got, expected)
    assert res.counters["onchip_reuse_bytes"] == moved * cfg.out_elem_bytes
    assert res.counters["dram_read_bytes"]["inp"] == 0


def test_onchip_reuse_illegal_without_the_capability():
    from bctvm.errors import IllegalInstructionError

    prog, d, *_ = onchip_program(ZCU)
    with pytest.raises(IllegalInstructionError, match=r"instruction 4: .*onchip_reuse"):
        Simulator(PYNQ).run(prog, DramBuilder(PYNQ).image())


def test_gemm_sees_reloaded_weights_and_uops():
    """The same GEMM shape run after a new LOAD WGT / LOAD UOP uses the new contents."""
    cfg, n = PYNQ, 4
    inp = rand_i8((n, cfg.batch, cfg.block_in))
    w1, w2 = rand_i8((2, 1, cfg.block_out, cfg.block_in))
    d = DramBuilder(cfg)
    u1 = d.uops("uops1", [Uop(dst=0, src=0, wgt=0)])
    u2 = d.uops("uops2", [Uop(dst=0, src=1, wgt=0)])
    i_ = d.put("inp", inp, "inp")
    a_ = d.put("w1", w1, "wgt")
    b_ = d.put("w2", w2, "wgt")
    o_ = d.reserve("out", 3 * n, "out")
    loop = dict(uop_bgn=0, uop_end=1, iter_out=n - 1, dst_factor_out=1, src_factor_out=1)
    prog = [load(MemType.INP, 0, i_, x=n), load(MemType.WGT, 0, a_, push_next=True),
            load(MemType.UOP, 0, u1),
            Gemm(reset_reg=True, pop_prev=True, **loop), Gemm(push_prev=True, **loop),
            Alu(use_imm=True, imm=0, push_next=True, **loop),
            Store(sram_base=0, dram_base=o_, y_size=1, x_size=n - 1, x_stride=n - 1,
                  pop_prev=True, push_prev=True),
            load(MemType.WGT, 0, b_, pop_next=True, push_next=True),
            Gemm(reset_reg=True, pop_prev=True, pop_next=True, **loop), Gemm(**loop),
            Alu(use_imm=True, imm=0, push_next=True, **loop),
            Store(sram_base=0, dram_base=o_ + n, y_size=1, x_size=n - 1, x_stride=n - 1,
                  pop_prev=True, push_prev=True),
            load(MemType.UOP, 0, u2, pop_next=True),
            Gemm(reset_reg=True, **loop), Gemm(**loop),
            Alu(use_imm=True, imm=0, push_next=True, **loop),
            Store(sram_base=0, dram_base=o_ + 2 * n, y_size=1, x_size=n - 1, x_stride=n - 1,
                  pop_prev=True, push_prev=True),
            Finish(pop_next=True)]
    res = Simulator(cfg).run(prog, d.image())
    got = d.read(res.dram, "out", np.int8, (3, n, cfg.batch, cfg.block_out))[:, :n - 1]
    x = inp.astype(np.int64)
    np.testing.assert_array_equal(got[0], low8(x[:n - 1] @ w1[0].T.astype(np.int64)))
    np.testing.assert_array_equal(got[1], low8(x[:n - 1] @ w2[0].T.astype(np.int64)))
    np.testing.assert_array_equal(got[2], low8(x[1:] @ w2[0].T.astype(np.int64)))
