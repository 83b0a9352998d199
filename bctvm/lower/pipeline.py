"""The bctvm TIR pipeline: scheduled group function -> tagged flat TIR -> VtaProgram.

Order (one list, `bctvm_passes`):
1. bctvm.InplaceEpilogue   element-wise accumulator stages computed in place (s_tir level)
2. s_tir lowering          init blocks, buffer placement/compaction, match buffers, opaque
                           blocks, flattening (TVM's own passes)
3. bctvm.TagKernels        mark the DMA / GEMM / ALU loop nests
then bctvm.EmitProgram (bctvm.lower.emit), which interprets the remaining static loops and
emits instructions, folding GEMM/ALU loops into micro-op loops (FoldUopLoop, bctvm.lower.fold),
2-D DMA transfers (bctvm.lower.dma), SRAM addresses (bctvm.lower.sram), dependency tokens
(InsertTokens, bctvm.lower.tokens) and a field check against the board.

`register_tir_pipeline("bctvm", ...)` makes the same list available to `tvm.compile(...,
tir_pipeline="bctvm")`: there EmitProgram stores the program in `PROGRAMS` (key in the function
attribute "bctvm.program") and replaces the body by a call of the packed function
"bctvm.run_program", so the built host module runs the VTA program on the simulator.
"""

from __future__ import annotations

import itertools

import tvm
from tvm import s_tir, tirx
from tvm.s_tir import pipeline as s_tir_pipeline
from tvm.tirx import compilation_pipeline

from boards import BoardConfig, load_board

from .emit import emit_program
from .inplace import InplaceEpilogue
from .kernels import TagKernels
from .program import DramLayout, VtaProgram


def s_tir_lowering() -> list:
    """TVM's passes that turn a scheduled s_tir function into flat TIR with plain loops."""
    return [
        s_tir.transform.LowerInitBlock(),
        s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir.transform.ConvertBlocksToOpaque(),
        s_tir.transform.CompactBufferAllocation(),
        s_tir.transform.LowerMatchBuffer(),
        s_tir.transform.StmtSimplify(),
        s_tir.transform.LowerOpaqueBlock(),
        tirx.transform.FlattenBuffer(),
        tirx.transform.StmtSimplify(),
    ]


def bctvm_passes() -> list:
    """The TIR -> TIR part of the pipeline (before EmitProgram)."""
    return [InplaceEpilogue] + s_tir_lowering() + [TagKernels]


def lower_to_kernels(mod: tvm.IRModule) -> tvm.IRModule:
    """Scheduled group module -> flat TIR with every VTA operation tagged."""
    return tvm.transform.Sequential(bctvm_passes())(mod)


def build_program(cfg: BoardConfig, mod: tvm.IRModule, layout: DramLayout | None = None,
                  params: dict | None = None, name: str = "main") -> VtaProgram:
    """VtaProgram of a scheduled group module (see bctvm.lower.emit.emit_program)."""
    low = lower_to_kernels(mod)
    return emit_program(cfg, low["main"], layout, params, name)


# ---- tvm.compile integration ----------------------------------------------------------------

PROGRAMS: dict[str, VtaProgram] = {}
_ids = itertools.count()


def _emit_pass(board: str | None):
    @tirx.transform.prim_func_pass(opt_level=0, name="bctvm.EmitProgram")
    def emit(func, mod, ctx):
        if "bctvm.board" not in (func.attrs or {}):
            return func
        cfg = load_board(board or str(func.attrs["bctvm.board"]))
        key = f"prog{next(_ids)}"
        PROGRAMS[key] = emit_program(cfg, func, name=key)
        call = tvm.tirx.call_packed("bctvm.run_program", tvm.ir.StringImm(key),
                                    *[p for p in func.params])
        return func.with_body(tirx.Evaluate(call)).with_attr("bctvm.program", key)

    return emit


def run_program(key: str, *tensors) -> None:
    """Packed function behind "bctvm.run_program": run a stored program on the simulator with
    the call's tensors (packed layouts, in parameter order) and write its output back."""
    from bctvm.sim import Simulator

    prog = PROGRAMS[str(key)]
    cfg = load_board(prog.board)
    names = list(prog.params)
    arrays = {prog.params[n]: t.numpy() for n, t in zip(names, tensors) if n != "out"}
    arrays.update(prog.static_arrays())
    img = prog.layout.image(arrays)
    res = Simulator(cfg).run(prog.instructions, img, regions=prog.layout.region_map())
    out = tensors[names.index("out")]
    out.copyfrom(prog.layout.read(res.dram, prog.params["out"]))


tvm.register_global_func("bctvm.run_program", run_program, override=True)


def bctvm_pipeline(board: str | None = None):
    """Factory for register_tir_pipeline: (pipeline, host finalize, device finalize)."""
    default, host, device = s_tir_pipeline.default_s_tir_pipeline()

    @tvm.transform.module_pass(opt_level=0, name="bctvm.Pipeline")
    def _pipeline(mod, ctx):
        mod = tvm.transform.Sequential(bctvm_passes() + [_emit_pass(board)])(mod)
        return default(mod)

    return _pipeline, host, device


compilation_pipeline.register_tir_pipeline("bctvm", bctvm_pipeline)
