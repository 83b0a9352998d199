"""Small helpers to walk and rebuild a Relax function binding by binding.

The bctvm passes that change many bindings at once (Quantize, PackLayout, Partition) rebuild
`main` in order: every binding is either handled by the pass (which emits replacement
bindings) or copied with its variables substituted.
"""

from __future__ import annotations

from typing import Callable

import tvm
from tvm import relax

Env = dict  # old Var -> new Expr


def bindings(func: relax.Function) -> list[tuple[relax.Var, relax.Expr]]:
    """(var, value) of every binding of the function body, in order."""
    out = []
    for block in func.body.blocks:
        for b in block.bindings:
            out.append((b.var, b.value))
    return out


def users(func: relax.Function) -> dict:
    """Var -> list of Vars whose binding uses it ('@return' for the function result)."""
    use: dict = {}
    for var, value in bindings(func):
        for v in relax.analysis.free_vars(value):
            use.setdefault(v, []).append(var)
    for v in relax.analysis.free_vars(func.body.body):
        use.setdefault(v, []).append("@return")
    return use


def substitute(expr, env: Env):
    """`expr` with variables replaced through `env` (Calls, Tuples, TupleGetItems rebuilt)."""
    if isinstance(expr, relax.Var):
        return env.get(expr, expr)
    if isinstance(expr, relax.Call):
        args = [substitute(a, env) for a in expr.args]
        op = substitute(expr.op, env) if isinstance(expr.op, relax.Var) else expr.op
        return relax.Call(op, args, expr.attrs, list(expr.ty_args) if expr.ty_args else None)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([substitute(f, env) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(substitute(expr.tuple_value, env), expr.index)
    return expr


Handler = Callable[[relax.BlockBuilder, relax.Var, relax.Expr, Env], "relax.Expr | None"]


def rebuild(func: relax.Function, handle: Handler, name: str = "main",
            finish: Callable[[relax.BlockBuilder, relax.Expr, Env], relax.Expr] | None = None,
            builder: relax.BlockBuilder | None = None, skip: object = None):
    """Rebuild `func` binding by binding.

    `handle(bb, var, value, env)` returns the new expression for `var` (already emitted),
    None to copy the binding, or the `skip` sentinel to drop it (nothing may use it then).
    `finish(bb, out, env)` may post-process the substituted result.
    Returns the new Function (or, with `builder`, emits into that builder's module and
    returns the GlobalVar)."""
    bb = builder or relax.BlockBuilder()
    attrs = {k: func.attrs[k] for k in func.attrs.keys()} if func.attrs is not None else {}
    attrs.pop("global_symbol", None)
    with bb.function(name, list(func.params), attrs=attrs or None):
        with bb.dataflow():
            env: Env = {}
            result = func.body.body
            gv = None
            for var, value in bindings(func):
                new = handle(bb, var, value, env)
                if skip is not None and new is skip:
                    continue
                if new is None and var.same_as(result):
                    out = substitute(value, env)  # the result binding: emit it as the output
                    if finish is not None:
                        out = finish(bb, out, env)
                    new = gv = bb.emit_output(out, name_hint=var.name)
                elif new is None:
                    new = bb.emit(substitute(value, env), name_hint=var.name)
                env[var] = new
            if gv is None:
                out = substitute(result, env)
                if finish is not None:
                    out = finish(bb, out, env)
                gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    if builder is not None:
        return bb.get().get_global_var(name)
    return bb.get()[name]


def replace_main(mod: tvm.IRModule, func: relax.Function) -> tvm.IRModule:
    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    out["main"] = func
    return out
