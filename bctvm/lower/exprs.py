"""Evaluate TIR index expressions with NumPy, vectorised over a loop nest.

`compile_expr(e)` turns an integer PrimExpr (loop variables, constants, + - * floordiv floormod
min max, comparisons, and/or/not, select/if_then_else, casts) into a Python closure
`f(env) -> np.ndarray | int` where `env` maps tirx Vars to ints or broadcastable int64 arrays.
The lowering uses it to enumerate, ahead of time, every address a DMA copy, GEMM or ALU loop
touches. Buffer loads are not index expressions: they raise LoweringError.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import tirx

from bctvm.errors import BadInputError


class LoweringError(BadInputError):
    """The TIR of a group cannot be turned into VTA instructions (names layer/buffer/loop)."""


_BIN = {
    tirx.Add: np.add,
    tirx.Sub: np.subtract,
    tirx.Mul: np.multiply,
    tirx.FloorDiv: np.floor_divide,
    tirx.FloorMod: np.mod,
    tirx.Min: np.minimum,
    tirx.Max: np.maximum,
    tirx.EQ: np.equal,
    tirx.NE: np.not_equal,
    tirx.LT: np.less,
    tirx.LE: np.less_equal,
    tirx.GT: np.greater,
    tirx.GE: np.greater_equal,
    tirx.And: np.logical_and,
    tirx.Or: np.logical_or,
}


def _trunc_div(a, b):
    q = np.floor_divide(a, b)
    return np.where((np.mod(a, b) != 0) & ((np.asarray(a) < 0) != (np.asarray(b) < 0)), q + 1, q)


def compile_expr(e):
    """Closure evaluating integer PrimExpr `e` on an environment of loop-variable values."""
    if isinstance(e, (int, np.integer)):
        v = int(e)
        return lambda env: v
    if isinstance(e, tirx.IntImm):
        v = int(e.value)
        return lambda env: v
    if isinstance(e, tirx.Var):
        def var(env, _v=e):
            try:
                return env[_v]
            except KeyError:
                raise LoweringError(f"index expression uses unbound variable '{_v.name}'") from None
        return var
    op = _BIN.get(type(e))
    if op is not None:
        fa, fb = compile_expr(e.a), compile_expr(e.b)
        return lambda env: op(fa(env), fb(env))
    if isinstance(e, tirx.Div):
        fa, fb = compile_expr(e.a), compile_expr(e.b)
        return lambda env: _trunc_div(fa(env), fb(env))
    if isinstance(e, tirx.Mod):
        fa, fb = compile_expr(e.a), compile_expr(e.b)
        return lambda env: fa(env) - _trunc_div(fa(env), fb(env)) * fb(env)
    if isinstance(e, tirx.Not):
        fa = compile_expr(e.a)
        return lambda env: np.logical_not(fa(env))
    if isinstance(e, tirx.Cast):
        fa = compile_expr(e.value)
        return fa
    if isinstance(e, tirx.Select):
        fc, ft, ff = compile_expr(e.condition), compile_expr(e.true_value), compile_expr(e.false_value)
        return lambda env: np.where(fc(env), ft(env), ff(env))
    if isinstance(e, tvm.ir.Call) and getattr(e.op, "name", "") == "prim.if_then_else":
        fc, ft, ff = (compile_expr(a) for a in e.args)
        return lambda env: np.where(fc(env), ft(env), ff(env))
    if isinstance(e, tvm.ir.Call) and getattr(e.op, "name", "") == "prim.likely":
        return compile_expr(e.args[0])
    raise LoweringError(f"cannot evaluate index expression {e} ({type(e).__name__})")


def nest_env(outer: dict, loop_vars, extents) -> dict:
    """`outer` plus each loop variable as an int64 array broadcast over the nest grid."""
    env = dict(outer)
    k = len(loop_vars)
    for axis, (v, n) in enumerate(zip(loop_vars, extents)):
        shape = [1] * k
        shape[axis] = n
        env[v] = np.arange(n, dtype=np.int64).reshape(shape)
    return env


def eval_on_nest(f, env: dict, extents) -> np.ndarray:
    """Evaluate closure `f` and broadcast the result to the full nest shape (int64)."""
    return np.broadcast_to(np.asarray(f(env), dtype=np.int64), tuple(extents))
