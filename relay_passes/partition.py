"""Partition: every fused group becomes one call of a `vta_group_<i>` Relax function.

Matches:  the packed VTA layers of the module, grouped by the FusedPlan that
          PlanFusedGroups stored in the "bctvm.fused_plan" module attribute.
Produces: for each group a Relax function `vta_group_<i>(inputs...) -> output | (outputs...)`
          whose body is the group's packed integer ops, with function attributes
            bctvm.vta_group = i, bctvm.layers = [names], bctvm.grid = [nh, nw],
            bctvm.board = board key, bctvm.weights_resident, bctvm.inputs / bctvm.outputs
          (tensor names of the plan). `main` keeps the host side (quantize/pack, the stem
          when it stays on the host, unpack/dequantize, global pooling, classifier, softmax:
          everything VTA does not run) and calls each group where its first layer was.
          This is the placeholder issue 6 lowers to VTA programs; on the llvm path each
          group still computes with its integer TE definitions, so the module runs and stays
          bit-exact.
Requires: PlanFusedGroups (the plan attribute).
"""

from __future__ import annotations

import tvm
from tvm import relax

from bctvm.errors import BadInputError

from . import ops
from .base import BctvmPass
from .graph import bindings, rebuild, substitute
from .plan_fused_groups import PLAN_ATTR, plan_of

SKIP = object()
GROUP_PREFIX = "vta_group_"


def vta_groups(mod: tvm.IRModule) -> list[tuple[str, relax.Function]]:
    """(name, function) of the VTA group functions of a partitioned module, in order."""
    out = []
    for gv, f in mod.functions.items():
        if isinstance(f, relax.Function) and f.attrs is not None and \
                "bctvm.vta_group" in f.attrs.keys():
            out.append((gv.name_hint, f))
    return sorted(out, key=lambda p: int(p[1].attrs["bctvm.vta_group"]))


class Partition(BctvmPass):
    """Fused groups -> vta_group_<i> functions called from main (see module docstring)."""

    def transform_module(self, mod: tvm.IRModule, ctx=None) -> tvm.IRModule:
        plan = plan_of(mod)
        func = mod["main"]
        binds = bindings(func)
        layer_var = {}
        for var, value in binds:
            if ops.op_name(value) in ops.VTA_OPS:
                a = ops.attrs_dict(value)
                if ops.is_packed(a["layout"]):
                    layer_var[a["layer"]] = var
        value_of = dict(binds)
        tensor_var = {}  # plan tensor name -> old var
        for var, value in binds:
            for arg in relax.analysis.free_vars(value):
                tensor_var.setdefault(arg.name, arg)
        for name, var in layer_var.items():
            tensor_var[name] = var

        bb = relax.BlockBuilder()
        group_gv = {}
        for g in plan.groups:
            group_gv[g.index] = self._group_function(bb, g, plan, layer_var, value_of,
                                                     tensor_var)

        member_of = {layer_var[n]: g for g in plan.groups for n in g.layers}
        params = set(func.params)
        pending: dict = {}  # group index -> group whose inputs are not all defined yet
        emitted: set = set()

        def ready(g, env) -> bool:
            return all(tensor_var[t] in env or tensor_var[t] in params for t in g.inputs)

        def emit_group(bb_, g, env) -> None:
            args = [env.get(tensor_var[t], tensor_var[t]) for t in g.inputs]
            call = bb_.emit(relax.Call(group_gv[g.index], args),
                            name_hint=f"{GROUP_PREFIX}{g.index}")
            outs = [layer_var[o] for o in g.outputs]
            if len(outs) == 1:
                env[outs[0]] = call
            else:
                for k, ov in enumerate(outs):
                    env[ov] = bb_.emit(relax.TupleGetItem(call, k), name_hint=ov.name)
            emitted.add(g.index)

        def handle(bb_, var, value, env):
            # a group is called at its first layer, or later once all its inputs exist
            progress = True
            while progress:  # one group's outputs may complete another's inputs
                progress = False
                for gi in list(pending):
                    if ready(pending[gi], env):
                        emit_group(bb_, pending.pop(gi), env)
                        progress = True
            if var in member_of:
                g = member_of[var]
                if g.index not in emitted and g.index not in pending:
                    if ready(g, env):
                        emit_group(bb_, g, env)
                    else:
                        pending[g.index] = g
                return env[var] if var in env else SKIP
            waiting = [gi for gi, g in pending.items()
                       if any(layer_var[o] in relax.analysis.free_vars(value) for o in g.outputs)]
            if waiting:
                raise BadInputError(f"group {waiting[0]}: an output is used before all of "
                                    f"the group's inputs exist (binding {var.name})")
            return None

        rebuild(func, handle, builder=bb, skip=SKIP)
        out = bb.get()
        taken = {x.name_hint for x in out.get_global_vars()}
        for gv, f in mod.functions.items():
            if gv.name_hint != "main" and gv.name_hint not in taken:
                out[gv] = f
        attrs = {k: mod.attrs[k] for k in mod.attrs.keys()} if mod.attrs is not None else {}
        for k, v in attrs.items():
            out = out.with_attr(k, v)
        return out

    def _group_function(self, bb, g, plan, layer_var, value_of, tensor_var):
        params = []
        env = {}
        for t in g.inputs:
            old = tensor_var[t]
            p = relax.Var(_ident(t), old.ty)
            params.append(p)
            env[old] = p
        attrs = {"bctvm.vta_group": g.index, "bctvm.layers": list(g.layers),
                 "bctvm.grid": list(g.grid), "bctvm.board": plan.board_key,
                 "bctvm.weights_resident": g.weights_resident,
                 "bctvm.inputs": list(g.inputs), "bctvm.outputs": list(g.outputs)}
        name = f"{GROUP_PREFIX}{g.index}"
        with bb.function(name, params, attrs=attrs):
            with bb.dataflow():
                for layer in g.layers:
                    old = layer_var[layer]
                    env[old] = bb.emit(substitute(value_of[old], env), name_hint=_ident(layer))
                outs = [env[layer_var[o]] for o in g.outputs]
                result = outs[0] if len(outs) == 1 else relax.Tuple(outs)
                gv_out = bb.emit_output(result)
            bb.emit_func_output(gv_out)
        return bb.get().get_global_var(name)


def _ident(name: str) -> str:
    return name.replace(".", "_")


def has_plan(mod: tvm.IRModule) -> bool:
    return mod.attrs is not None and PLAN_ATTR in mod.attrs.keys()
