"""BindParams: parameters kept as function inputs -> constants (undo keep_params_as_input).

Matches:  `main` with the "params" attribute (values of the trailing parameters) and
          "num_input" (how many leading parameters are user inputs), as ImportModel makes it.
Produces: `main(x)` with every parameter replaced by a constant; "bctvm.param_fqn" (only
          LegalizeBlockConv needs it) is dropped, other attributes are kept. A module
          without "params" is returned unchanged.
Requires: nothing else.
"""

from __future__ import annotations

import tvm
from tvm import relax

from .base import BctvmPass


class BindParams(BctvmPass):
    """Bind `main`'s "params" attribute to its parameter Vars (see module docstring)."""

    def transform_module(self, mod: tvm.IRModule, ctx=None) -> tvm.IRModule:
        func = mod["main"]
        attrs = func.attrs
        if attrs is None or "params" not in attrs.keys():
            return mod
        n_in = int(attrs["num_input"])
        values = list(attrs["params"])
        binding = {var: relax.const(val) for var, val in zip(func.params[n_in:], values)}
        new = func.bind_params(binding)
        for key in ("params", "num_input", "bctvm.param_fqn"):
            if new.attrs is not None and key in new.attrs.keys():
                new = new.without_attr(key)
        out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
        out["main"] = new
        return out
