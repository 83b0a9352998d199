"""bctvm.EmitProgram: walk a tagged, flattened group function and emit its VTA program.

Every loop around the `bctvm.kernel` nests has constant bounds, so the walk runs those loops at
compile time (an ahead-of-time interpreter of the control structure). At each kernel it
evaluates the nest's index expressions with NumPy (bctvm.lower.exprs) and emits:
- DMA kernels: LOAD/STORE instructions from bctvm.lower.dma (2-D fields, zero padding),
- GEMM/reset kernels: GEMM instructions from bctvm.lower.fold (iter_out/iter_in + micro-ops),
- ALU kernels: one ALU instruction (per fold piece) per spine step (bctvm.lower.alu),
with on-chip addresses from bctvm.lower.sram and DRAM addresses from the DramLayout.
Micro-op kernels are deduplicated by content and loaded into the micro-op buffer with LOAD UOP
when first needed (the buffer is refilled from the start when full). Then the program gets its
dependency tokens (bctvm.lower.tokens), a FINISH, its micro-op region, and a field check.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import tirx

from boards import BoardConfig
from bctvm import isa
from bctvm.errors import EncodingError
from bctvm.isa import AluOp, MemType
from schedules.intrinsics import ACC_SCOPE

from .alu import AluStep, SpineOp, alu_steps, spine
from .dma import XferLimits, plan_transfers
from .exprs import LoweringError, compile_expr, eval_on_nest, nest_env
from .fold import fold
from .hoist import hoist_loads
from .kernels import KERNEL_ATTR, dma_source, perfect_nest
from .program import DramLayout, VtaProgram
from .sram import SCOPE_KIND, SramPlanner, lanes_of
from .tokens import COMPUTE, Emitted, insert_tokens, module_of

_LOAD_MEMTYPE = {"load_inp": MemType.INP, "load_wgt": MemType.WGT, "load_acc": MemType.ACC,
                 "load_acc8": MemType.ACC_8BIT, "load_out_inp": MemType.OUT_INP}
_MEMTYPE_KEY = {MemType.INP: "inp", MemType.WGT: "wgt", MemType.ACC: "acc",
                MemType.ACC_8BIT: "acc8", MemType.OUT: "out", MemType.UOP: "uop"}


def param_kind(name: str) -> str:
    """DRAM region kind of a group parameter (by the naming of schedules.block_conv2d)."""
    if name == "out":
        return "output"
    if name == "data" or name.endswith("_residual"):
        return "input"
    return "weights"


def _lane_split(extents: list[int], lanes: int, what: str) -> int:
    """Number of innermost loops whose extents multiply to exactly `lanes`."""
    p, k = 1, 0
    for e in reversed(extents):
        if p == lanes:
            break
        p *= e
        k += 1
    if p != lanes:
        raise LoweringError(f"{what}: innermost loops {extents} do not cover one {lanes}-lane element")
    return k


def _elements(idx: np.ndarray, lanes: int, what: str, mask=None) -> np.ndarray:
    """Element index per (outer iteration) of a lane-contiguous scalar index array (..., lanes)."""
    first = idx[..., :1]
    ok = (idx == first + np.arange(lanes)) & (first % lanes == 0)
    if mask is not None:
        ok = ok | ~mask
    if not ok.all():
        raise LoweringError(f"{what}: accesses are not whole {lanes}-lane elements")
    return first[..., 0] // lanes


class ProgramEmitter:
    """Emits one VtaProgram from a tagged, flattened PrimFunc (see the module docstring)."""

    def __init__(self, cfg: BoardConfig, func, layout: DramLayout, params: dict, name: str,
                 hoist: bool = True, preload_uops: bool = True):
        self.cfg = cfg
        self.hoist = hoist
        self.preload_uops = preload_uops
        self.func = func
        self.layout = layout
        self.params = params  # TIR param name -> region name
        self.name = name
        attrs = func.attrs
        self.vthreads = int(attrs["bctvm.vthreads"]) if attrs and "bctvm.vthreads" in attrs else 1
        self.weight_copies = (int(attrs["bctvm.weight_copies"])
                              if attrs and "bctvm.weight_copies" in attrs else self.vthreads)
        self.layer_names = ({str(k): str(v) for k, v in attrs["bctvm.layers"].items()}
                            if attrs and "bctvm.layers" in attrs else {})
        self.prog: list[Emitted] = []
        self.global_region: dict = {}  # buffer var -> Region
        self.addr: dict = {}  # on-chip buffer var -> current element address
        self.visits: dict = {}
        self.kcache: dict = {}
        self.uop_words: list[np.ndarray] = []
        self.uop_dram: dict = {}  # content -> offset (micro-ops) in this program's uop region
        self.uop_n = 0
        self.uop_resident: dict = {}  # content -> (bgn, end)
        self.uop_ptr = 0
        self.lim = XferLimits.of(cfg)
        self.elem_bytes = cfg.memtype_elem_bytes()
        self.max_iter = 1 << cfg.loop_iter_bits
        self.stats = {"gemm_uop_execs": 0, "alu_uop_execs": 0, "uop_loads": 0}

    # ---- helpers --------------------------------------------------------------------------
    def _layer(self, buf) -> str:
        tag = str(buf.name).split("_", 1)[0]
        return self.layer_names.get(tag, tag)

    def _dram_elem_base(self, buf, memtype: MemType) -> int:
        reg = self.global_region.get(buf)
        if reg is None:
            raise LoweringError(f"buffer '{buf.name}' is not a group parameter")
        eb = self.elem_bytes[_MEMTYPE_KEY[memtype]]
        if reg.start % eb:
            raise LoweringError(f"region '{reg.name}' is not aligned to {eb}-byte elements")
        return reg.start // eb

    def _onchip(self, buf) -> int:
        try:
            return self.addr[buf]
        except KeyError:
            raise LoweringError(f"on-chip buffer '{buf.name}' used outside its allocation") from None

    def _emit(self, insn, reads=(), writes=(), layer="", what=""):
        self.prog.append(Emitted(insn, module_of(insn), tuple(reads), tuple(writes), layer, what))

    # ---- walk -----------------------------------------------------------------------------
    def run(self) -> VtaProgram:
        for p in self.func.params:
            pname = str(p.name)
            rname = self.params.get(pname, pname)
            if rname not in self.layout.regions:
                raise LoweringError(f"parameter '{pname}' has no DRAM region '{rname}'")
            self.global_region[p] = self.layout[rname]
        planner = SramPlanner(self.cfg, self.vthreads, self.layer_names, self.weight_copies)
        self.sites = planner.plan(self.func.body)
        self.stats["sram_peak"] = dict(planner.peak)  # elements per buffer (inp, wgt, acc)
        self._visit(self.func.body, {})
        self._emit(isa.Finish(), what="finish")
        return self._finish()

    def _visit(self, stmt, env: dict) -> None:
        if isinstance(stmt, tirx.SeqStmt):
            for s in stmt.seq:
                self._visit(s, env)
        elif isinstance(stmt, tirx.AttrStmt):
            if stmt.attr_key == KERNEL_ATTR:
                self._kernel(stmt, env)
            else:
                self._visit(stmt.body, env)
        elif isinstance(stmt, tirx.For):
            v, lo, n = stmt.loop_var, int(stmt.min), int(stmt.extent)
            for i in range(lo, lo + n):
                env[v] = i
                self._visit(stmt.body, env)
            env.pop(v, None)
        elif isinstance(stmt, tirx.AllocBuffer):
            buf = stmt.buffer
            site = self.sites[buf]
            k = self.visits.get(buf, 0)
            self.visits[buf] = k + 1
            self.addr[buf] = site.base + (k % site.slots) * site.elems
        elif isinstance(stmt, tirx.DeclBuffer):
            data = stmt.data
            src = data.args[0] if isinstance(data, tvm.ir.Call) else None
            if src is not None and src in self.global_region:
                self.global_region[stmt.buffer] = self.global_region[src]
        else:
            raise LoweringError(f"unsupported statement in a VTA group: {type(stmt).__name__}")

    # ---- kernels --------------------------------------------------------------------------
    def _kernel(self, attr, env: dict) -> None:
        kind = str(attr.value.value)
        info = self.kcache.get(attr)
        if info is None:
            loops, leaf = perfect_nest(attr.body)
            for lp in loops:
                if int(lp.min) != 0:
                    raise LoweringError(f"loop '{lp.loop_var.name}' does not start at 0")
            info = {"vars": [lp.loop_var for lp in loops],
                    "ext": [int(lp.extent) for lp in loops], "leaf": leaf}
            self.kcache[attr] = info
            getattr(self, f"_prep_{'dma' if kind.startswith(('load', 'store')) else kind}")(info, kind)
        nenv = nest_env(env, info["vars"], info["ext"])
        getattr(self, f"_do_{'dma' if kind.startswith(('load', 'store')) else kind}")(info, kind, nenv)

    # DMA ------------------------------------------------------------------------------------
    def _prep_dma(self, info, kind):
        leaf = info["leaf"]
        cond, load, _ = dma_source(leaf.value)
        info["dst_buf"], info["src_buf"] = leaf.buffer, load.source
        info["f_dst"] = compile_expr(leaf.indices[0])
        info["f_src"] = compile_expr(load.indices[0])
        info["f_cond"] = compile_expr(cond) if cond is not None else None
        onchip = load.source if kind == "store" else leaf.buffer
        lanes = lanes_of(self.cfg, SCOPE_KIND[onchip.scope()])
        info["lanes"] = lanes
        nl = _lane_split(info["ext"], lanes, f"copy into '{leaf.buffer.name}'")
        outer = info["ext"][:len(info["ext"]) - nl]
        info["row"] = outer[-1] if outer else 1
        info["plane"] = outer[-1] * outer[-2] if len(outer) > 1 else 0
        info["layer"] = self._layer(onchip)

    def _do_dma(self, info, kind, env):
        ext, lanes = info["ext"], info["lanes"]
        what = f"{kind} '{info['dst_buf'].name}'"
        D = eval_on_nest(info["f_dst"], env, ext).reshape(-1, lanes)
        S = eval_on_nest(info["f_src"], env, ext).reshape(-1, lanes)
        M = None
        if info["f_cond"] is not None:
            M = eval_on_nest(info["f_cond"], env, ext).astype(bool).reshape(-1, lanes)
            if not (M == M[:, :1]).all():
                raise LoweringError(f"{what}: padding condition differs inside an element")
        d = _elements(D, lanes, what)
        s = _elements(S, lanes, what, M)
        if M is not None:
            s = np.where(M[:, 0], s, -1)
        layer = info["layer"]
        if kind == "store":
            sram = self._onchip(info["src_buf"]) + s
            dram = self._dram_elem_base(info["dst_buf"], MemType.OUT) + d
            for x in plan_transfers(sram, dram, info["row"], self.lim, pads=False, what=what,
                                    plane=info["plane"]):
                insn = isa.Store(memory_type=MemType.OUT, sram_base=x.sram_base,
                                 dram_base=x.src_base, y_size=x.y_size, x_size=x.x_size,
                                 x_stride=x.x_stride)
                self._emit(insn, reads=[("acc", x.sram_base, x.sram_base + x.data_elems)],
                           layer=layer, what=kind)
            return
        mt = _LOAD_MEMTYPE[kind]
        sram = self._onchip(info["dst_buf"]) + d
        if mt == MemType.OUT_INP:
            base = self._onchip(info["src_buf"])
        else:
            base = self._dram_elem_base(info["src_buf"], mt)
        src = np.where(s >= 0, base + s, -1)
        dkind = SCOPE_KIND[info["dst_buf"].scope()]
        for x in plan_transfers(sram, src, info["row"], self.lim, pads=True, what=what,
                                plane=info["plane"]):
            insn = isa.Load(memory_type=mt, sram_base=x.sram_base, dram_base=x.src_base,
                            y_size=x.y_size, x_size=x.x_size, x_stride=x.x_stride,
                            y_pad_0=x.y_pad_0, y_pad_1=x.y_pad_1, x_pad_0=x.x_pad_0,
                            x_pad_1=x.x_pad_1)
            reads = [("acc",) + x.src_span()] if mt == MemType.OUT_INP else []
            self._emit(insn, reads=reads, writes=[(dkind, x.sram_base, x.sram_base + x.sram_elems)],
                       layer=layer, what=kind)

    def _prep_fill_inp(self, info, kind):
        leaf = info["leaf"]
        info["dst_buf"] = leaf.buffer
        info["f_dst"] = compile_expr(leaf.indices[0])
        info["lanes"] = lanes_of(self.cfg, "inp")
        _lane_split(info["ext"], info["lanes"], f"zero fill of '{leaf.buffer.name}'")
        info["layer"] = self._layer(leaf.buffer)

    def _do_fill_inp(self, info, kind, env):
        """LOADs (INP) of padding only: y_size 0, one row of x_size zero elements each
        (vta-spec: the SRAM side is (y_pad_0 + y_size + y_pad_1) rows of x_size elements)."""
        what = f"zero fill of '{info['dst_buf'].name}'"
        lanes = info["lanes"]
        D = eval_on_nest(info["f_dst"], env, info["ext"]).reshape(-1, lanes)
        sram = self._onchip(info["dst_buf"]) + np.unique(_elements(D, lanes, what))
        for run in np.split(sram, np.flatnonzero(np.diff(sram) != 1) + 1):
            for lo in range(0, run.size, self.lim.max_size - 1):
                n = min(run.size - lo, self.lim.max_size - 1)
                base = int(run[lo])
                insn = isa.Load(memory_type=MemType.INP, sram_base=base, dram_base=0,
                                y_size=0, x_size=n, x_stride=n, y_pad_0=1, y_pad_1=0,
                                x_pad_0=0, x_pad_1=0)
                self._emit(insn, writes=[("inp", base, base + n)], layer=info["layer"],
                           what=kind)

    # GEMM -----------------------------------------------------------------------------------
    def _prep_gemm(self, info, kind):
        args = info["leaf"].value.args
        info["bufs"] = [args[1].args[0], args[3].args[0], args[5].args[0]]
        info["f"] = [compile_expr(args[2]), compile_expr(args[4]), compile_expr(args[6])]
        info["lanes"] = [lanes_of(self.cfg, k) for k in ("acc", "inp", "wgt")]
        info["layer"] = self._layer(info["bufs"][0])

    def _prep_reset(self, info, kind):
        args = info["leaf"].value.args
        info["bufs"] = [args[1].args[0]]
        info["f"] = [compile_expr(args[2])]
        info["lanes"] = [lanes_of(self.cfg, "acc")]
        info["layer"] = self._layer(info["bufs"][0])

    def _gemm_fields(self, info, env):
        out = []
        for buf, f, lanes in zip(info["bufs"], info["f"], info["lanes"]):
            off = eval_on_nest(f, env, info["ext"])
            if (off % lanes).any():
                raise LoweringError(f"GEMM access to '{buf.name}' is not element aligned")
            out.append(self._onchip(buf) + off // lanes)
        return out

    def _do_gemm(self, info, kind, env):
        dst, src, wgt = self._gemm_fields(info, env)
        self._gemm(np.stack([dst, src, wgt], -1), False, info["layer"])

    def _do_reset(self, info, kind, env):
        (dst,) = self._gemm_fields(info, env)
        z = np.zeros_like(dst)
        self._gemm(np.stack([dst, z, z], -1), True, info["layer"])

    def _gemm(self, T, reset: bool, layer: str):
        cfg = self.cfg
        lim = (1 << cfg.log_acc_depth, 1 << cfg.log_inp_depth, 1 << cfg.log_wgt_depth)
        for f in fold(T, cfg.uop_depth, self.max_iter, lim):
            bgn, end = self._uops(f.uops, layer)
            insn = isa.Gemm(reset_reg=reset, uop_bgn=bgn, uop_end=end, iter_out=f.iter_out,
                            iter_in=f.iter_in, dst_factor_out=f.f_out[0], dst_factor_in=f.f_in[0],
                            src_factor_out=f.f_out[1], src_factor_in=f.f_in[1],
                            wgt_factor_out=f.f_out[2], wgt_factor_in=f.f_in[2])
            reads = [] if reset else [("inp",) + f.touched(1), ("wgt",) + f.touched(2)]
            self._emit(insn, reads=reads, writes=[("acc",) + f.touched(0)], layer=layer,
                       what="reset" if reset else "gemm")
            if not reset:
                self.stats["gemm_uop_execs"] += f.iter_out * f.iter_in * len(f.uops)

    # ALU ------------------------------------------------------------------------------------
    def _prep_alu(self, info, kind):
        leaf = info["leaf"]
        dst = leaf.buffer
        what = f"epilogue of '{dst.name}'"

        def is_tile(ld):
            return ld.source.scope() == ACC_SCOPE

        root, ops = spine(leaf.value, is_tile, prefer=dst)
        # not in place: copy the leaf first (acc = acc * 0; acc += leaf); a bare in-place copy
        # still needs one ALU op so that the output buffer shows the value (ADD 0)
        info["copy"] = None if root.source.same_as(dst) else root
        if info["copy"] is None and not ops:
            ops = [SpineOp(AluOp.ADD, imm=0)]
        lanes = lanes_of(self.cfg, "acc")
        info["lanes"] = lanes
        info["nl"] = _lane_split(info["ext"], lanes, what)
        info["f_dst"] = compile_expr(leaf.indices[0])
        info["f_leaf"] = compile_expr(root.indices[0])
        steps = alu_steps(ops, self.cfg.alu_imm_bits)
        if info["copy"] is not None:
            steps = [AluStep(AluOp.MUL, imm=0), AluStep(AluOp.ADD, tile=root)] + steps
        info["steps"] = [(s, None if s.tile is None else (s.tile.source, compile_expr(s.tile.indices[0])))
                         for s in steps]
        info["dst"] = dst
        info["layer"] = self._layer(dst)
        info["what"] = what

    def _do_alu(self, info, kind, env):
        ext, lanes, what = info["ext"], info["lanes"], info["what"]
        outer = tuple(ext[:len(ext) - info["nl"]])
        shape = outer + (lanes,)
        D = eval_on_nest(info["f_dst"], env, ext).reshape(shape)
        if info["copy"] is None:
            L = eval_on_nest(info["f_leaf"], env, ext).reshape(shape)
            if not np.array_equal(D, L):
                raise LoweringError(f"{what}: result is not written where its input is read")
        base = self._onchip(info["dst"])
        d = base + _elements(D, lanes, what)
        cfg = self.cfg
        lim = (1 << cfg.log_acc_depth, 1 << cfg.log_acc_depth)
        for step, tile in info["steps"]:
            if tile is None:
                s = np.zeros_like(d)
            else:
                tb, tf = tile
                s = self._onchip(tb) + _elements(eval_on_nest(tf, env, ext).reshape(shape), lanes, what)
            T = np.stack([d, s], -1)
            for f in fold(T, cfg.uop_depth, self.max_iter, lim):
                u = np.concatenate([f.uops, np.zeros((len(f.uops), 1), dtype=np.int64)], 1)
                bgn, end = self._uops(u, info["layer"])
                insn = isa.Alu(uop_bgn=bgn, uop_end=end, iter_out=f.iter_out, iter_in=f.iter_in,
                               dst_factor_out=f.f_out[0], dst_factor_in=f.f_in[0],
                               src_factor_out=f.f_out[1], src_factor_in=f.f_in[1],
                               alu_opcode=step.op, use_imm=tile is None,
                               imm=step.imm if tile is None else 0)
                reads = [] if tile is None else [("acc",) + f.touched(1)]
                self._emit(insn, reads=reads, writes=[("acc",) + f.touched(0)],
                           layer=info["layer"], what=f"alu {step.op.name}")
                self.stats["alu_uop_execs"] += f.iter_out * f.iter_in * len(f.uops)

    # micro-ops ------------------------------------------------------------------------------
    def _encode_uops(self, u: np.ndarray, layer: str) -> np.ndarray:
        cfg = self.cfg
        bits = (cfg.uop_dst_bits, cfg.uop_src_bits, cfg.uop_wgt_bits)
        for k, (name, b) in enumerate(zip(("dst", "src", "wgt"), bits)):
            if (u[:, k] < 0).any() or (u[:, k] >= (1 << b)).any():
                raise EncodingError(f"layer '{layer}': micro-op field '{name}' = "
                                    f"{int(u[:, k].max())} does not fit {b} bits")
        w = u[:, 0] | (u[:, 1] << bits[0]) | (u[:, 2] << (bits[0] + bits[1]))
        return w.astype(np.uint32)

    def _uops(self, u: np.ndarray, layer: str) -> tuple[int, int]:
        words = self._encode_uops(u, layer)
        key = words.tobytes()
        hit = self.uop_resident.get(key)
        if hit is not None:
            return hit
        n = words.size
        depth = self.cfg.uop_depth
        if n > depth:
            raise LoweringError(f"layer '{layer}': a kernel of {n} micro-ops exceeds the "
                                f"micro-op buffer ({depth})")
        if self.uop_ptr + n > depth:
            self.uop_resident.clear()
            self.uop_ptr = 0
        off = self.uop_dram.get(key)
        if off is None:
            off = self.uop_n
            self.uop_dram[key] = off
            self.uop_words.append(words)
            self.uop_n += n
        bgn = self.uop_ptr
        self._emit(isa.Load(memory_type=MemType.UOP, sram_base=bgn, dram_base=off, y_size=1,
                            x_size=n, x_stride=n), layer=layer, what="uop")
        self.stats["uop_loads"] += 1
        self.uop_ptr += n
        self.uop_resident[key] = (bgn, bgn + n)
        return bgn, bgn + n

    def _preload_uops(self) -> None:
        """When every micro-op of the program fits the micro-op buffer at once (no refill
        happened, so each kernel's on-chip range equals its offset in the uop region), load
        them all where the first kernel needed its own and drop the other LOAD UOPs. A LOAD
        UOP is a compute-module instruction that waits for the DRAM port: one per kernel
        (per GEMM pass, per chunk's epilogue) stalls the compute module behind streamed
        weight transfers."""
        loads = [k for k, e in enumerate(self.prog)
                 if isinstance(e.insn, isa.Load) and e.insn.memory_type == MemType.UOP]
        if len(loads) < 2 or any(self.prog[k].insn.sram_base != self.prog[k].insn.dram_base
                                 for k in loads):
            return
        step = self.lim.max_size - 1
        first = self.prog[loads[0]]
        whole = [Emitted(isa.Load(memory_type=MemType.UOP, sram_base=b, dram_base=b, y_size=1,
                                  x_size=min(step, self.uop_n - b),
                                  x_stride=min(step, self.uop_n - b)),
                         first.module, (), (), first.layer, "uop")
                 for b in range(0, self.uop_n, step)]
        drop = set(loads)
        self.prog = (self.prog[:loads[0]] + whole
                     + [e for k, e in enumerate(self.prog) if k > loads[0] and k not in drop])
        self.stats["uop_loads"] = len(whole)

    # ---- finish ---------------------------------------------------------------------------
    def _finish(self) -> VtaProgram:
        words = (np.concatenate(self.uop_words) if self.uop_words
                 else np.zeros(1, dtype=np.uint32))
        if self.preload_uops:
            self._preload_uops()
        uname = f"uops:{self.name}"
        reg = self.layout.add(uname, "uops", words.shape, "uint32")
        ubase = reg.start // self.elem_bytes["uop"]
        for e in self.prog:
            if isinstance(e.insn, isa.Load) and e.insn.memory_type == MemType.UOP:
                e.insn = e.insn.replace(dram_base=e.insn.dram_base + ubase)
        if self.hoist:
            self.prog = hoist_loads(self.prog)
        insns = insert_tokens(self.prog)
        for k, (insn, e) in enumerate(zip(insns, self.prog)):
            try:
                isa.encode(insn, self.cfg)
            except EncodingError as err:
                raise EncodingError(f"layer '{e.layer}', instruction {k} ({e.what}): {err}") from None
        counts: dict[str, int] = {}
        for e in self.prog:
            counts[e.what.split()[0]] = counts.get(e.what.split()[0], 0) + 1
        self.stats.update(instructions=len(insns), micro_ops=int(words.size), by_kind=counts,
                          compute_insns=sum(1 for e in self.prog if e.module == COMPUTE))
        return VtaProgram(self.name, self.cfg.name, insns, words, uname, self.layout,
                          dict(self.params), sorted(set(self.layer_names.values())), self.stats)


def emit_program(cfg: BoardConfig, func, layout: DramLayout | None = None,
                 params: dict | None = None, name: str = "main", hoist: bool = True,
                 preload_uops: bool = True) -> VtaProgram:
    """VtaProgram of a tagged, flattened group function.

    layout: the DRAM layout to place tensors in (a new one with one region per parameter when
    None); params: TIR parameter name -> region name (default: same name); hoist: issue DRAM
    loads as early as their data allow (bctvm.lower.hoist; False: in schedule order);
    preload_uops: load all micro-ops with one LOAD UOP when they fit the buffer at once
    (False: each kernel's on first use)."""
    if layout is None:
        layout = DramLayout(cfg)
        for p in func.params:
            layout.add(str(p.name), param_kind(str(p.name)), [int(s) for s in p.shape], str(p.dtype))
    params = dict(params or {})
    full = {str(p.name): params.get(str(p.name), str(p.name)) for p in func.params}
    return ProgramEmitter(cfg, func, layout, full, name, hoist, preload_uops).run()
