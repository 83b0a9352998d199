"""Build a Relax module for `llvm` and run `main` on the Relax VM (tests and pass checks).

`run_module(mod, x)` passes the parameters kept as inputs (the "params" attribute of
`main`, TVM's keep_params_as_input convention) after the user inputs and returns the
outputs as NumPy arrays (a list, one per tuple field). Verification builds default to LLVM
opt-level 0: a module checked once compiles about 4x faster (a 32x32 ResNet-18 in 1.5 s
instead of 6 s) and the unoptimised code is still fast enough to run once.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def build(mod: tvm.IRModule, opt_level: int = 0):
    """Compile for the host CPU at LLVM `opt_level` (0..3); returns a Relax VM over it."""
    target = tvm.target.Target({"kind": "llvm", "opt-level": int(opt_level)})
    ex = tvm.compile(mod, target=target)
    return relax.VirtualMachine(ex, tvm.cpu())


def to_numpy(value) -> list[np.ndarray]:
    if isinstance(value, tvm.runtime.Tensor):
        return [value.numpy()]
    if hasattr(value, "numpy"):
        return [value.numpy()]
    out = []
    for v in value:
        out.extend(to_numpy(v))
    return out


def run_module(mod: tvm.IRModule, *inputs, vm=None, opt_level: int = 0) -> list[np.ndarray]:
    """Run `main` on NumPy/torch inputs; returns every output as a NumPy array."""
    vm = vm or build(mod, opt_level)
    args = [tvm.runtime.tensor(np.ascontiguousarray(np.asarray(x))) for x in inputs]
    attrs = mod["main"].attrs
    if attrs is not None and "params" in attrs.keys():
        args += list(attrs["params"])
    return to_numpy(vm["main"](*args))


def with_boundary_output(mod: tvm.IRModule) -> tvm.IRModule:
    """A copy of `mod` whose `main` also returns the int8 tensor(s) entering every
    bctvm.dequantize (the boundary, NCHW): result = (original outputs..., boundary...)."""
    from . import ops
    from .graph import bindings

    boundary = [value.args[0] for _, value in bindings(mod["main"])
                if ops.op_name(value) == ops.DEQUANTIZE]
    return with_outputs(mod, boundary)


def with_outputs(mod: tvm.IRModule, taps: list) -> tvm.IRModule:
    """A copy of `mod` whose main returns (original outputs..., value of every var in taps)."""
    from .graph import rebuild, replace_main

    def finish(bb, out, env):
        fields = list(out.fields) if isinstance(out, relax.Tuple) else [out]
        if not isinstance(out, relax.Tuple) and isinstance(out.ty, relax.TupleType):
            fields = [relax.TupleGetItem(out, i) for i in range(len(out.ty.fields))]
        return relax.Tuple(fields + [env.get(v, v) for v in taps])

    return replace_main(mod, rebuild(mod["main"], lambda *a: None, finish=finish))


def with_layer_outputs(mod: tvm.IRModule) -> tuple[tvm.IRModule, list[str]]:
    """A copy of `mod` whose `main` also returns the int8 output of every integer layer
    (bctvm.q* ops of main, unpacked to NCHW when packed), and the layer names in that order.
    For layer-by-layer comparison with IntegerReference.run(x).tensors."""
    from . import ops
    from .graph import bindings, rebuild, replace_main

    func = mod["main"]
    layers = [(var, value) for var, value in bindings(func) if ops.op_name(value) in ops.VTA_OPS]
    names = [ops.attrs_dict(v)["layer"] for _, v in layers]

    def finish(bb, out, env):
        fields = list(out.fields) if isinstance(out, relax.Tuple) else [out]
        for var, value in layers:
            a = ops.attrs_dict(value)
            new = env[var]
            if ops.is_packed(a["layout"]):
                n, c = _logical(value, a)
                new = bb.emit(ops.unpack(new, channels=c, batch_size=n))
            fields.append(new)
        return relax.Tuple(fields)

    return replace_main(mod, rebuild(func, lambda *a: None, finish=finish)), names


def _logical(call, a) -> tuple[int, int]:
    """(N, C) of a packed op's output (PackLayout records both as attributes)."""
    return int(a["batch_size"]), int(a["channels"])
