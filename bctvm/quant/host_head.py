"""The float32 host head: the ops after the boundary tensor, as plain data, and their runner.

Built from the host chain of the folded float Relax graph (graph.py); each op becomes a
HostOp with JSON params and float32 weights, so the head serialises with the rest of the
QuantizedNet. A Linear is the graph's matmul by a constant (transposed weight) and the
constant add after it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bctvm.errors import UnsupportedOpError

from .qnet import HostOp

__all__ = ["host_plan", "add_bias", "to_host_op", "run_head"]


def _ints(v) -> list[int]:
    return [int(i) for i in v]


def host_plan(g, kind: str, var, value):
    """HostPlan of one host-chain binding (kind from graph._kind without 'host:')."""
    from .graph import HostPlan, _name, const_value

    where = f"op '{g.op_label(var)}' at {g.where(var)}"
    a = value.attrs
    name = _name(g, var)
    if kind == "relu":
        return HostPlan("relu", name, var)
    if kind == "clamp":
        lo, hi = (float(x.value) for x in value.args[1:3])
        return HostPlan("clamp", name, var, {"min": lo, "max": hi})
    if kind == "linear":
        w = const_value(value.args[1], g.values)
        if w is None or w.ndim != 2 or len(value.args[0].ty.shape) != 2:
            raise UnsupportedOpError(f"{where}: only a matmul of (N, F) by a constant "
                                     "weight (a Linear) is supported on the host")
        return HostPlan("linear", name, var,
                        weights={"weight": np.ascontiguousarray(w.T, dtype=np.float32)})
    if kind == "adaptive_avg_pool2d":
        if str(a["layout"]) != "NCHW":
            raise UnsupportedOpError(f"{where}: layout {a['layout']}")
        return HostPlan(kind, name, var, {"output_size": _ints(a["output_size"])})
    if kind == "avgpool":
        pad = _ints(a["padding"])
        if pad[0] != pad[2] or pad[1] != pad[3] or _ints(a["dilation"]) != [1, 1]:
            raise UnsupportedOpError(f"{where}: asymmetric padding or dilation")
        return HostPlan("avg_pool2d", name, var, {
            "kernel": _ints(a["pool_size"]), "stride": _ints(a["strides"]),
            "padding": pad[:2], "ceil_mode": bool(a["ceil_mode"]),
            "count_include_pad": bool(a["count_include_pad"]), "divisor_override": None})
    if kind == "flatten":
        in_shape = _ints(value.args[0].ty.shape)
        out_shape = _ints(value.ty.shape)
        if len(out_shape) != 2 or out_shape[0] != in_shape[0]:
            raise UnsupportedOpError(
                f"{where}: reshape {in_shape} -> {out_shape} keeps only a flatten of each "
                "image ((N, ...) -> (N, F), e.g. x.view(x.size(0), -1) or x.view(-1, F))")
        return HostPlan("flatten", name, var, {"start_dim": 1, "end_dim": -1})
    if kind in ("softmax", "log_softmax"):
        return HostPlan(kind, name, var, {"dim": int(a["axis"])})
    if kind == "mean":
        axes = a["axis"]
        if axes is None or 0 in _ints(axes):
            raise UnsupportedOpError(f"{where}: mean over the batch dimension")
        return HostPlan("mean", name, var, {"dim": _ints(axes), "keepdim": bool(a["keepdims"])})
    raise UnsupportedOpError(f"{where}: {kind} is not supported in the host head")


def add_bias(plan, g, value) -> None:
    """Fold `linear_out + constant` into the Linear's bias."""
    from .graph import const_value

    src = g.sources.get(value_var_name(g, value))
    if src and src[0]:
        plan.name = src[0]  # the Linear's module path
    c = [const_value(x, g.values) for x in value.args]
    bias = next(x for x in c if x is not None)
    out = plan.weights["weight"].shape[0]
    plan.weights["bias"] = np.array(np.broadcast_to(bias, (1, out)).reshape(out),
                                    dtype=np.float32)


def value_var_name(g, value) -> str:
    """Name of the var bound to `value` in the graph ("" when unbound)."""
    return next((v.name for v, val in g.binds if val.same_as(value)), "")


def to_host_op(plan) -> HostOp:
    """The HostOp (plain data) of a HostPlan."""
    return HostOp(name=plan.name, kind=plan.kind, params=dict(plan.params),
                  weights=dict(plan.weights))


def run_head(head: list[HostOp], x: torch.Tensor) -> torch.Tensor:
    """Run the host head on a float32 tensor (the dequantized boundary)."""
    for op in head:
        p = op.params
        if op.kind == "relu":
            x = F.relu(x)
        elif op.kind == "clamp":
            x = torch.clamp(x, p["min"], p["max"])
        elif op.kind == "linear":
            w = torch.from_numpy(op.weights["weight"])
            b = torch.from_numpy(op.weights["bias"]) if "bias" in op.weights else None
            x = F.linear(x, w, b)
        elif op.kind == "adaptive_avg_pool2d":
            x = F.adaptive_avg_pool2d(x, p["output_size"])
        elif op.kind == "avg_pool2d":
            x = F.avg_pool2d(x, p["kernel"], p["stride"], p["padding"], p["ceil_mode"],
                             p["count_include_pad"], p["divisor_override"])
        elif op.kind == "flatten":
            x = torch.flatten(x, p["start_dim"], p["end_dim"])
        elif op.kind == "softmax":
            x = F.softmax(x, dim=p["dim"])
        elif op.kind == "log_softmax":
            x = F.log_softmax(x, dim=p["dim"])
        elif op.kind == "mean":
            x = torch.mean(x, dim=p["dim"], keepdim=p["keepdim"])
        else:  # pragma: no cover - HostOp validates kinds
            raise UnsupportedOpError(f"host op {op.name!r}: unknown kind {op.kind!r}")
    return x
