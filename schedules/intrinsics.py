"""Tensor intrinsics of the VTA GEMM core, registered per board with s_tir.TensorIntrin.

- `gemm`:  C[b, o] += int32(A[b, i]) * int32(W[o, i]) over i, one BATCH x BLOCK_IN x BLOCK_OUT
  tile product; A in "local.inp_buffer", W in "local.wgt_buffer", C in "local.acc_buffer".
- `reset`: C[b, o] = 0 (the GEMM reset_reg form), C in "local.acc_buffer".

The implementations are markers, `T.call_extern("bctvm.gemm", C.data, C.elem_offset, A.data,
A.elem_offset, W.data, W.elem_offset)` and `T.call_extern("bctvm.gemm_reset", C.data,
C.elem_offset)`, over 1-D flat buffers; bctvm.lower folds the loops around them into GEMM
instructions and micro-ops. With BATCH == 1 the batch axis is dropped from the tiles (s_tir
folds unit loops away, and the description has to match the remaining loops).
"""

from __future__ import annotations

from tvm import s_tir
from tvm.script import tirx as T

from boards import BoardConfig

INP_SCOPE = "local.inp_buffer"
WGT_SCOPE = "local.wgt_buffer"
ACC_SCOPE = "local.acc_buffer"
GEMM_MARKER = "bctvm.gemm"
RESET_MARKER = "bctvm.gemm_reset"


def _gemm_funcs_b1(bi: int, bo: int):
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, w: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (bi,), "int8", offset_factor=1, scope=INP_SCOPE)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1, scope=WGT_SCOPE)
        C = T.match_buffer(c, (bo,), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:bo], A[0:bi], W[0:bo, 0:bi])
            T.writes(C[0:bo])
            for j, k in T.grid(bo, bi):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    C[vj] = C[vj] + T.Cast("int32", A[vk]) * T.Cast("int32", W[vj, vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, w: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (bi,), "int8", offset_factor=1, scope=INP_SCOPE)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1, scope=WGT_SCOPE)
        C = T.match_buffer(c, (bo,), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:bo], A[0:bi], W[0:bo, 0:bi])
            T.writes(C[0:bo])
            T.evaluate(T.call_extern("int32", GEMM_MARKER, C.data, C.elem_offset, A.data,
                                     A.elem_offset, W.data, W.elem_offset))

    @T.prim_func(s_tir=True)
    def reset_desc(c: T.handle) -> None:
        C = T.match_buffer(c, (bo,), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:bo])
            for j in T.serial(bo):
                with T.sblock("init"):
                    vj = T.axis.remap("S", [j])
                    C[vj] = 0

    @T.prim_func(s_tir=True)
    def reset_impl(c: T.handle) -> None:
        C = T.match_buffer(c, (bo,), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:bo])
            T.evaluate(T.call_extern("int32", RESET_MARKER, C.data, C.elem_offset))

    return desc, impl, reset_desc, reset_impl


def _gemm_funcs_bn(nb: int, bi: int, bo: int):
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, w: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (nb, bi), "int8", offset_factor=1, scope=INP_SCOPE)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1, scope=WGT_SCOPE)
        C = T.match_buffer(c, (nb, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:nb, 0:bo], A[0:nb, 0:bi], W[0:bo, 0:bi])
            T.writes(C[0:nb, 0:bo])
            for i, j, k in T.grid(nb, bo, bi):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + T.Cast("int32", A[vi, vk]) * T.Cast("int32", W[vj, vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, w: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (nb, bi), "int8", offset_factor=1, scope=INP_SCOPE)
        W = T.match_buffer(w, (bo, bi), "int8", offset_factor=1, scope=WGT_SCOPE)
        C = T.match_buffer(c, (nb, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:nb, 0:bo], A[0:nb, 0:bi], W[0:bo, 0:bi])
            T.writes(C[0:nb, 0:bo])
            T.evaluate(T.call_extern("int32", GEMM_MARKER, C.data, C.elem_offset, A.data,
                                     A.elem_offset, W.data, W.elem_offset))

    @T.prim_func(s_tir=True)
    def reset_desc(c: T.handle) -> None:
        C = T.match_buffer(c, (nb, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:nb, 0:bo])
            for i, j in T.grid(nb, bo):
                with T.sblock("init"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    C[vi, vj] = 0

    @T.prim_func(s_tir=True)
    def reset_impl(c: T.handle) -> None:
        C = T.match_buffer(c, (nb, bo), "int32", offset_factor=1, scope=ACC_SCOPE)
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:nb, 0:bo])
            T.evaluate(T.call_extern("int32", RESET_MARKER, C.data, C.elem_offset))

    return desc, impl, reset_desc, reset_impl


def gemm_intrin_names(cfg: BoardConfig) -> tuple[str, str]:
    """(gemm, reset) intrinsic names for a board, registering them on first use."""
    gemm, reset = f"bctvm_gemm_{cfg.key}", f"bctvm_gemm_reset_{cfg.key}"
    if s_tir.TensorIntrin.get(gemm, allow_missing=True) is None:
        if cfg.batch == 1:
            desc, impl, rdesc, rimpl = _gemm_funcs_b1(cfg.block_in, cfg.block_out)
        else:
            desc, impl, rdesc, rimpl = _gemm_funcs_bn(cfg.batch, cfg.block_in, cfg.block_out)
        s_tir.TensorIntrin.register(gemm, desc, impl)
        s_tir.TensorIntrin.register(reset, rdesc, rimpl)
    return gemm, reset
