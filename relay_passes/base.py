"""Shared plumbing of the bctvm passes: the pass base class and error-preserving rewriting.

Python exceptions that cross TVM's FFI (a module pass run by TVM, a `rewrite_call` callback)
come back as plain RuntimeErrors; bctvm's typed errors (UnsupportedOpError -> exit 2) must
survive, so passes run in Python (`BctvmPass.__call__`) and rewriter callbacks park the
error and re-raise it after `rewrite_call` returns (`rewrite`). `as_tvm_pass()` still gives a
`tvm.ir.transform.Pass` for use inside a TVM Sequential.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import rewrite_call

from bctvm.errors import BctvmError


class BctvmPass:
    """A module-level pass: subclasses implement transform_module(mod) -> mod."""

    def transform_module(self, mod: tvm.IRModule, ctx=None) -> tvm.IRModule:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, mod: tvm.IRModule) -> tvm.IRModule:
        return self.transform_module(mod, None)

    def as_tvm_pass(self) -> tvm.ir.transform.Pass:
        """This pass as a tvm.ir.transform.ModulePass (typed errors become RuntimeError)."""
        return tvm.ir.transform.module_pass(lambda m, c: self.transform_module(m, c),
                                            opt_level=0, name=type(self).__name__)

    @property
    def name(self) -> str:
        return type(self).__name__


def rewrite(pattern, fn, func: relax.Function) -> relax.Function:
    """`rewrite_call(pattern, fn, func)` that re-raises a BctvmError raised inside `fn`."""
    errors: list[BctvmError] = []

    def guarded(expr, matches):
        if errors:
            return expr
        try:
            return fn(expr, matches)
        except BctvmError as err:
            errors.append(err)
            return expr

    out = rewrite_call(pattern, guarded, func)
    if errors:
        raise errors[0]
    return out


def relax_functions(mod: tvm.IRModule):
    """(GlobalVar, Function) pairs of the Relax functions of a module."""
    return [(gv, f) for gv, f in mod.functions.items() if isinstance(f, relax.Function)]


def replace_functions(mod: tvm.IRModule, new: dict) -> tvm.IRModule:
    """A copy of `mod` with some functions replaced (keyed by GlobalVar)."""
    out = tvm.IRModule({gv: new.get(gv, f) for gv, f in mod.functions.items()}, attrs=mod.attrs)
    return out
