"""bctvm.TagKernels: find the loop nests that become VTA instructions and say what they are.

Matches (flattened TIR): a perfect loop nest whose innermost statement is
- `T.call_extern("bctvm.gemm", ...)` / `("bctvm.gemm_reset", ...)`   -> "gemm" / "reset"
- a store into "local.inp_buffer" of a DRAM load (optionally `if_then_else(pad, load, 0)`)
                                                                   -> "load_inp"  (LOAD INP)
- the same with `int8(acc-buffer load)` as the source              -> "load_out_inp" (OUT_INP)
- a store of the constant 0 into "local.inp_buffer"               -> "fill_inp"  (LOAD INP of
  padding only: the zero fill of a padded block collecting several producer blocks)
- a store into "local.wgt_buffer" of a DRAM load                   -> "load_wgt"  (LOAD WGT)
- a store into "local.acc_buffer" of an int32 DRAM load            -> "load_acc"  (LOAD ACC)
  ... of `int32(int8 DRAM load)`                                   -> "load_acc8" (ACC_8BIT)
  ... of an element-wise accumulator expression                    -> "alu"
- a store into a DRAM buffer of `int8(acc-buffer load)`            -> "store" (STORE from OUT)
Produces: each such nest wrapped in `T.attr(<dst buffer>, "bctvm.kernel", kind)`.
Anything else at a leaf raises LoweringError naming the buffer (an op the schedule left
un-lowered, e.g. a scalar host computation).
"""

from __future__ import annotations

import tvm
from tvm import tirx

from schedules.intrinsics import ACC_SCOPE, GEMM_MARKER, INP_SCOPE, RESET_MARKER, WGT_SCOPE

from .exprs import LoweringError

KERNEL_ATTR = "bctvm.kernel"


def perfect_nest(stmt):
    """(list of For, innermost statement) of a perfect loop nest."""
    loops = []
    while isinstance(stmt, tirx.For):
        loops.append(stmt)
        stmt = stmt.body
    return loops, stmt


def _scope(buf) -> str:
    return buf.scope()


def _strip_pad(v):
    """(condition or None, value) of `if_then_else(cond, value, 0)`."""
    if isinstance(v, tvm.ir.Call) and getattr(v.op, "name", "") == "prim.if_then_else":
        fill = v.args[2]
        if not (isinstance(fill, tirx.IntImm) and int(fill.value) == 0):
            raise LoweringError(f"padding value {fill} is not zero")
        return v.args[0], v.args[1]
    return None, v


def dma_source(value):
    """(pad condition or None, source TensorLoad, cast dtype or None) of a copy's value."""
    cond, v = _strip_pad(value)
    cast = None
    if isinstance(v, tirx.Cast):
        cast, v = str(v.ty), v.value
    if not isinstance(v, tvm.ir.TensorLoad):
        return None
    return cond, v, cast


def classify(leaf) -> tuple[str, object]:
    """(kind, destination buffer var) of a kernel leaf statement, or (None, None)."""
    if isinstance(leaf, tirx.Evaluate) and isinstance(leaf.value, tvm.ir.Call):
        args = leaf.value.args
        name = str(args[0].value) if args and isinstance(args[0], tvm.ir.StringImm) else ""
        if name == GEMM_MARKER:
            return "gemm", args[1].args[0]
        if name == RESET_MARKER:
            return "reset", args[1].args[0]
        return None, None
    if not isinstance(leaf, tirx.BufferStore):
        return None, None
    dst = leaf.buffer
    ds = _scope(dst)
    src = dma_source(leaf.value)
    if src is not None:
        cond, load, cast = src
        ss = _scope(load.source)
        if ds == INP_SCOPE and ss == "global" and cast is None:
            return "load_inp", dst
        if ds == INP_SCOPE and ss == ACC_SCOPE and cast == "int8":
            return "load_out_inp", dst
        if ds == WGT_SCOPE and ss == "global" and cast is None and cond is None:
            return "load_wgt", dst
        if ds == ACC_SCOPE and ss == "global" and cond is None:
            if cast is None and str(load.source.dtype) == "int32":
                return "load_acc", dst
            if cast == "int32" and str(load.source.dtype) == "int8":
                return "load_acc8", dst
        if ds == "global" and ss == ACC_SCOPE and cast == "int8" and cond is None:
            return "store", dst
    if ds == INP_SCOPE and isinstance(leaf.value, tirx.IntImm) and int(leaf.value.value) == 0:
        return "fill_inp", dst
    if ds == ACC_SCOPE:
        return "alu", dst
    return None, None


def _tag(stmt):
    if isinstance(stmt, tirx.For):
        loops, leaf = perfect_nest(stmt)
        kind, dst = classify(leaf)
        if kind is not None:
            return tirx.AttrStmt(dst, KERNEL_ATTR, tvm.ir.StringImm(kind), stmt)
        if isinstance(leaf, (tirx.BufferStore, tirx.Evaluate)):
            raise LoweringError(f"loop nest over '{loops[-1].loop_var.name}' computing {leaf} "
                                f"is not a VTA operation")
        return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, _tag(stmt.body),
                        stmt.thread_binding, stmt.annotations)
    if isinstance(stmt, tirx.SeqStmt):
        return tirx.SeqStmt([_tag(s) for s in stmt.seq])
    if isinstance(stmt, tirx.AttrStmt):
        return tirx.AttrStmt(stmt.node, stmt.attr_key, stmt.value, _tag(stmt.body))
    if isinstance(stmt, (tirx.BufferStore, tirx.Evaluate)):
        kind, dst = classify(stmt)
        if kind is None:
            raise LoweringError(f"statement {stmt} is not a VTA operation")
        return tirx.AttrStmt(dst, KERNEL_ATTR, tvm.ir.StringImm(kind), stmt)
    return stmt


@tirx.transform.prim_func_pass(opt_level=0, name="bctvm.TagKernels")
def TagKernels(func, mod, ctx):  # noqa: N802 - TVM pass naming
    """Wrap every DMA / GEMM / ALU loop nest in a `bctvm.kernel` attribute (module docstring)."""
    return func.with_body(_tag(func.body))
