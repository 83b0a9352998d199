"""The host side of a compiled model: `main` with every VTA group as an external call.

    host = dispatch_groups(partitioned_mod, {"vta_group_0": "bctvm.vta.<key>.g0", ...})

Each call `vta_group_i(args)` of the partitioned module (relay_passes.Partition) becomes
`R.call_dps_packed("bctvm.vta.<key>.g<i>", args, out)`: the Relax VM looks the function up by
name at run time, and the runtime (bctvm.runtime.executor) registers it to run the group's
ahead-of-time VTA program on a board. The group functions themselves are dropped, so the host
library holds only host ops (input quantize/pack, a host stem, unpack/dequantize, pooling,
classifier). `main` also returns the int8 boundary tensor (NCHW) for validation.
"""

from __future__ import annotations

import tvm
from tvm import relax

from relay_passes.graph import rebuild, replace_main
from relay_passes.partition import vta_groups
from relay_passes.vm_run import with_boundary_output


def dispatch_groups(mod: tvm.IRModule, names: dict[str, str]) -> tvm.IRModule:
    """`mod` with calls of the named group functions replaced by call_dps_packed (see module
    docstring); groups not in `names` stay Relax functions compiled for the host."""
    groups = dict(vta_groups(mod))
    func = mod["main"]

    def handle(bb, var, value, env):
        if isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar) and \
                value.op.name_hint in names:
            args = [env.get(a, a) for a in value.args]
            ret = groups[value.op.name_hint].ret_ty
            call = relax.call_dps_packed(names[value.op.name_hint], args, ret)
            return bb.emit(call, name_hint=var.name)
        return None

    out = replace_main(mod, rebuild(func, handle))
    host_funcs = {g: f for g, f in out.functions.items() if g.name_hint not in names}
    return with_boundary_output(tvm.IRModule(host_funcs, attrs=out.attrs))


def group_signature(mod: tvm.IRModule, name: str) -> dict:
    """{"inputs": [(shape, dtype)], "output": (shape, dtype)} of a group function."""
    f = dict(vta_groups(mod))[name]

    def sig(ty):
        return [int(s) for s in ty.shape], str(ty.dtype)

    return {"inputs": [sig(p.ty) for p in f.params], "output": sig(f.ret_ty)}

