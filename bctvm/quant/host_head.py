"""The float32 host head: the ops after the boundary tensor, as plain data, and their runner.

Built from the traced model's host chain (graph.py); each op becomes a HostOp with JSON
params and float32 weights, so the head serialises with the rest of the QuantizedNet.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from bctvm.errors import UnsupportedOpError

from .graph import node_args, where
from .qnet import HostOp

__all__ = ["host_op_from_node", "run_head"]


def _json(v):
    if isinstance(v, (tuple, list)):
        return [_json(i) for i in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise UnsupportedOpError(f"host op parameter {v!r} is not a constant")


def _weights(m: nn.Linear) -> dict[str, np.ndarray]:
    out = {"weight": m.weight.detach().to(torch.float32).cpu().numpy().copy()}
    if m.bias is not None:
        out["bias"] = m.bias.detach().to(torch.float32).cpu().numpy().copy()
    return out


def host_op_from_node(gm: fx.GraphModule, kind: str, node: fx.Node) -> HostOp:
    """HostOp for one host-chain node (kind from graph.op_kind without the 'host:' prefix)."""
    name = str(node.target) if node.op == "call_module" else node.name
    m = gm.get_submodule(node.target) if node.op == "call_module" else None
    if kind == "relu":
        return HostOp(name=name, kind="relu")
    if kind == "linear":
        return HostOp(name=name, kind="linear", weights=_weights(m))
    if kind == "adaptive_avg_pool2d":
        size = m.output_size if m is not None else node_args(
            node, ("input", "output_size"), {})["output_size"]
        return HostOp(name=name, kind=kind, params={"output_size": _json(size)})
    if kind == "avg_pool2d":
        if m is not None:
            p = dict(kernel=m.kernel_size, stride=m.stride, padding=m.padding,
                     ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                     divisor_override=m.divisor_override)
        else:
            a = node_args(node, ("input", "kernel_size", "stride", "padding", "ceil_mode",
                                 "count_include_pad", "divisor_override"),
                          {"stride": None, "padding": 0, "ceil_mode": False,
                           "count_include_pad": True, "divisor_override": None})
            p = dict(kernel=a["kernel_size"], stride=a["stride"], padding=a["padding"],
                     ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"],
                     divisor_override=a["divisor_override"])
        return HostOp(name=name, kind=kind, params={k: _json(v) for k, v in p.items()})
    if kind == "flatten":
        if m is not None:
            p = {"start_dim": m.start_dim, "end_dim": m.end_dim}
        else:
            a = node_args(node, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
            p = {"start_dim": a["start_dim"], "end_dim": a["end_dim"]}
        return HostOp(name=name, kind="flatten", params=_json_dict(p, node))
    if kind == "reshape":
        return HostOp(name=name, kind="flatten", params=_reshape_as_flatten(node))
    if kind in ("softmax", "log_softmax"):
        dim = m.dim if m is not None else node_args(node, ("input", "dim"), {"dim": None})["dim"]
        if dim is None:
            raise UnsupportedOpError(f"{where(node)}: {kind} needs an explicit dim")
        return HostOp(name=name, kind=kind, params={"dim": int(dim)})
    if kind == "mean":
        a = node_args(node, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
        if a["dim"] is None:
            raise UnsupportedOpError(f"{where(node)}: mean over every dim (batch included)")
        return HostOp(name=name, kind="mean", params=_json_dict(
            {"dim": a["dim"], "keepdim": bool(a["keepdim"])}, node))
    raise UnsupportedOpError(f"{where(node)}: {kind} is not supported in the host head")


def _json_dict(p: dict, node: fx.Node) -> dict:
    try:
        return {k: _json(v) for k, v in p.items()}
    except UnsupportedOpError:
        raise UnsupportedOpError(f"{where(node)}: parameters must be constants") from None


def _reshape_as_flatten(node: fx.Node) -> dict:
    """x.view(x.size(0), -1) / x.reshape(N, -1) -> flatten(start_dim=1)."""
    shape = list(node.args[1:])
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = list(shape[0])
    ok = len(shape) == 2 and shape[1] == -1 and (
        (isinstance(shape[0], fx.Node) and shape[0].op == "call_method"
         and shape[0].target == "size" and tuple(shape[0].args[1:]) == (0,))
    )
    if not ok:
        raise UnsupportedOpError(
            f"{where(node)}: only view/reshape(x.size(0), -1) (a flatten) is supported"
        )
    return {"start_dim": 1, "end_dim": -1}


def run_head(head: list[HostOp], x: torch.Tensor) -> torch.Tensor:
    """Run the host head on a float32 tensor (the dequantized boundary)."""
    for op in head:
        p = op.params
        if op.kind == "relu":
            x = F.relu(x)
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
