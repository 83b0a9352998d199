"""Build a Relax module for `llvm` and run `main` on the Relax VM (tests and pass checks).

`run_module(mod, x)` passes the parameters kept as inputs (the "params" attribute of
`main`, TVM's keep_params_as_input convention) after the user inputs and returns the
outputs as NumPy arrays (a list, one per tuple field).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def build(mod: tvm.IRModule):
    """Compile for the host CPU; returns a Relax VM over it."""
    ex = tvm.compile(mod, target="llvm")
    return relax.VirtualMachine(ex, tvm.cpu())


def _to_numpy(value) -> list[np.ndarray]:
    if isinstance(value, tvm.runtime.Tensor):
        return [value.numpy()]
    if hasattr(value, "numpy"):
        return [value.numpy()]
    out = []
    for v in value:
        out.extend(_to_numpy(v))
    return out


def run_module(mod: tvm.IRModule, *inputs, vm=None) -> list[np.ndarray]:
    """Run `main` on NumPy/torch inputs; returns every output as a NumPy array."""
    vm = vm or build(mod)
    args = [tvm.runtime.tensor(np.ascontiguousarray(np.asarray(x))) for x in inputs]
    attrs = mod["main"].attrs
    if attrs is not None and "params" in attrs.keys():
        args += list(attrs["params"])
    return _to_numpy(vm["main"](*args))
