"""Epilogue expressions as VTA ALU programs: the "spine" of an element-wise accumulator stage.

A stage `dst[i] = e` is ALU-able when `e` is a spine: a chain v = op(v, operand) that starts
at one accumulator-tile load (the leaf, computed in place: dst must be the leaf's location) and
whose other operands are immediates or accumulator tiles:

    op       ALU                      op          ALU
    v + t    ADD (tile or imm)        max(v, t)   MAX (tile or imm)
    v * t    MUL (tile or imm)        min(v, t)   MIN (tile or imm)
    v >> k   SHR imm k                v << k      SHR imm -k

`alu_steps` expands the spine into ALU steps (op, immediate or tile) in execution order and makes
immediates fit the board's signed immediate field: the rounding shift (v + 2^(s-1)) >> s with a
constant too wide for the field becomes (((v >> t) + 2^(s-1-t)) >> (s-t)), which is exact for
any 0 <= t < s (the dropped low bits cannot carry into the kept sum).
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import tirx

from bctvm.isa import AluOp

from .exprs import LoweringError

_COMMUTATIVE = {tirx.Add: AluOp.ADD, tirx.Mul: AluOp.MUL, tirx.Max: AluOp.MAX, tirx.Min: AluOp.MIN}


@dataclass(frozen=True)
class SpineOp:
    """One step of a spine: `op` with an immediate (`imm`) or an accumulator tile (`tile`)."""

    op: AluOp
    imm: int | None = None
    tile: object = None  # a TensorLoad of an accumulator buffer


def _is_load(e) -> bool:
    return isinstance(e, tvm.ir.TensorLoad)


def _call_name(e) -> str:
    return getattr(getattr(e, "op", None), "name", "") if isinstance(e, tvm.ir.Call) else ""


def _contains_load_of(e, buf) -> bool:
    if _is_load(e):
        return buf is None or e.source.same_as(buf)
    for k in ("a", "b", "value"):
        if hasattr(e, k) and _contains_load_of(getattr(e, k), buf):
            return True
    return any(_contains_load_of(a, buf) for a in getattr(e, "args", []) or [])


def spine(e, is_tile, prefer=None):
    """(leaf TensorLoad, [SpineOp] innermost first) of expression `e`, or raise LoweringError.

    `is_tile(load)` says whether a load reads an accumulator buffer; `prefer` (a buffer Var)
    picks the side holding that buffer as the spine of a commutative op when both could be."""

    def walk(x):
        if _is_load(x) and is_tile(x):
            return x, []
        kind = _COMMUTATIVE.get(type(x))
        if kind is not None:
            sides = [(x.a, x.b), (x.b, x.a)]
            if prefer is not None and _contains_load_of(x.b, prefer) and not _contains_load_of(x.a, prefer):
                sides.reverse()
            for s, o in sides:
                operand = _operand(o)
                if operand is None:
                    continue
                try:
                    leaf, ops = walk(s)
                except LoweringError:
                    continue
                return leaf, ops + [SpineOp(kind, *operand)]
            raise LoweringError(f"epilogue op {x} has no accumulator spine")
        if isinstance(x, (tirx.RShift, tirx.LShift)) or _call_name(x) in ("tirx.shift_right",
                                                                          "tirx.shift_left"):
            a, b = (x.a, x.b) if hasattr(x, "a") else (x.args[0], x.args[1])
            if not isinstance(b, tirx.IntImm):
                raise LoweringError(f"shift by a non-constant amount in {x}")
            left = isinstance(x, tirx.LShift) or _call_name(x) == "tirx.shift_left"
            leaf, ops = walk(a)
            return leaf, ops + [SpineOp(AluOp.SHR, imm=-int(b.value) if left else int(b.value))]
        raise LoweringError(f"epilogue expression {x} ({type(x).__name__}) is not an ALU op")

    def _operand(o):
        if isinstance(o, tirx.IntImm):
            return (int(o.value), None)
        if _is_load(o) and is_tile(o):
            return (None, o)
        return None

    return walk(e)


@dataclass(frozen=True)
class AluStep:
    """An ALU instruction's operation: tile operand (a TensorLoad) or a fitted immediate."""

    op: AluOp
    imm: int | None = None
    tile: object = None


def alu_steps(ops: list[SpineOp], imm_bits: int) -> list[AluStep]:
    """SpineOps -> AluSteps with every immediate inside the signed `imm_bits` field."""
    lo, hi = -(1 << (imm_bits - 1)), (1 << (imm_bits - 1)) - 1
    out: list[AluStep] = []
    i = 0
    while i < len(ops):
        o = ops[i]
        if o.tile is not None:
            out.append(AluStep(o.op, tile=o.tile))
            i += 1
            continue
        if lo <= o.imm <= hi:
            out.append(AluStep(o.op, imm=o.imm))
            i += 1
            continue
        nxt = ops[i + 1] if i + 1 < len(ops) else None
        if (o.op == AluOp.ADD and nxt is not None and nxt.op == AluOp.SHR and nxt.tile is None
                and nxt.imm > 0 and o.imm == 1 << (nxt.imm - 1)):
            s = nxt.imm
            t = s - imm_bits + 1  # so that 2^(s-1-t) = 2^(imm_bits-2) fits
            out += [AluStep(AluOp.SHR, imm=t), AluStep(AluOp.ADD, imm=1 << (s - 1 - t)),
                    AluStep(AluOp.SHR, imm=s - t)]
            i += 2
            continue
        raise LoweringError(f"ALU immediate {o.imm} of {o.op.name} does not fit {imm_bits} bits")
    return out
