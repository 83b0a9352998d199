"""Capture a float model with torch.fx and plan its integer layers (the fusion rules).

- trace with BlockConv2d as a leaf module (module paths survive as node targets);
- drop identities (nn.Identity, nn.Dropout, F.dropout: inference only);
- split the graph at the first op VTA does not do (avg pool, flatten, Linear, softmax...):
  everything from there on is the float host head, a chain fed by one boundary tensor;
- group the VTA side into integer layers:
      conv [-> BN] [-> + shortcut] [-> ReLU]   (a stride-2 BlockConv2d carries its max-pool)
      add [-> ReLU]       (an add not fused into a conv)
      maxpool, relu       (standalone, on int8)
  An add of two conv branches fuses into the conv computed later; the other operand is the
  residual input. Anything else raises UnsupportedOpError naming the op and module path.
"""

from __future__ import annotations

import operator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from bctvm.errors import UnsupportedOpError
from bctvm.models.block_conv import BlockConv2d

__all__ = ["LayerPlan", "HostPlan", "NetPlan", "trace_model", "plan_network", "node_args",
           "eval_mode"]

CONV_MODULES = (BlockConv2d, nn.Conv2d)
ALIAS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d)
HOST_MODULES = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Flatten, nn.Linear, nn.Softmax,
                nn.LogSoftmax)

_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu_}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}
_MAXPOOL_FUNCS = {F.max_pool2d, torch.max_pool2d}
_ALIAS_FUNCS = {F.dropout, F.dropout2d, torch.dropout}
_HOST_FUNCS = {
    torch.flatten: "flatten", F.adaptive_avg_pool2d: "adaptive_avg_pool2d",
    torch._C._nn.adaptive_avg_pool2d: "adaptive_avg_pool2d", F.avg_pool2d: "avg_pool2d",
    F.softmax: "softmax", torch.softmax: "softmax", F.log_softmax: "log_softmax",
    torch.log_softmax: "log_softmax", torch.mean: "mean",
}
_HOST_METHODS = {"flatten": "flatten", "view": "reshape", "reshape": "reshape",
                 "softmax": "softmax", "log_softmax": "log_softmax", "mean": "mean"}


@contextmanager
def eval_mode(module: nn.Module):
    """Put `module` in eval mode for the block; restore every submodule's own flag after."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


class _BlockTracer(fx.Tracer):
    """FX tracer that keeps BlockConv2d as one call_module node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, BlockConv2d) or super().is_leaf_module(m, module_qualified_name)


def trace_model(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace `model` (in eval mode) with BlockConv2d as a leaf; identities removed.

    The GraphModule shares the model's submodules (so module paths and weights are the
    model's). Raises UnsupportedOpError when FX cannot trace the model.
    """
    tracer = _BlockTracer()
    with eval_mode(model):
        try:
            graph = tracer.trace(model)
        except Exception as err:  # FX raises many kinds (TraceError, TypeError on proxies...)
            raise UnsupportedOpError(
                f"{type(model).__name__}: torch.fx cannot trace the model ({err}); "
                "data-dependent control flow is not supported"
            ) from err
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    gm.training = model.training
    _drop_aliases(gm)
    return gm


def _module(gm: fx.GraphModule, node: fx.Node) -> Optional[nn.Module]:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_alias(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(_module(gm, node), ALIAS_MODULES)
    if node.op == "call_function":
        return node.target in _ALIAS_FUNCS
    return False


def _drop_aliases(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if _is_alias(gm, node):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.recompile()


def where(node: fx.Node) -> str:
    """How error messages name a node: its module path or its FX node name."""
    if node.op == "call_module":
        return f"module {node.target!r}"
    if node.op == "call_function":
        fn = getattr(node.target, "__name__", str(node.target))
        return f"function {fn!r} (node {node.name!r})"
    return f"{node.op} {node.target!r} (node {node.name!r})"


def node_args(node: fx.Node, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    """Bind a call's positional and keyword arguments to `names` (first = the input)."""
    bound = dict(defaults)
    for name, value in zip(names, node.args):
        bound[name] = value
    for name, value in node.kwargs.items():
        bound[name] = value
    return bound


def op_kind(gm: fx.GraphModule, node: fx.Node) -> str:
    """'input', 'output', 'conv', 'bn', 'relu', 'maxpool', 'add', 'size', 'host:<kind>'.

    Raises UnsupportedOpError for every other op.
    """
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "call_module":
        m = _module(gm, node)
        if isinstance(m, CONV_MODULES):
            return "conv"
        if isinstance(m, nn.BatchNorm2d):
            return "bn"
        if isinstance(m, nn.ReLU):
            return "relu"
        if isinstance(m, nn.MaxPool2d):
            return "maxpool"
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return "host:adaptive_avg_pool2d"
        if isinstance(m, nn.AvgPool2d):
            return "host:avg_pool2d"
        if isinstance(m, nn.Flatten):
            return "host:flatten"
        if isinstance(m, nn.Linear):
            return "host:linear"
        if isinstance(m, nn.Softmax):
            return "host:softmax"
        if isinstance(m, nn.LogSoftmax):
            return "host:log_softmax"
        raise UnsupportedOpError(
            f"{where(node)}: {type(m).__name__} is not supported by the int8 flow"
        )
    if node.op == "call_function":
        t = node.target
        if t in _RELU_FUNCS:
            return "relu"
        if t in _ADD_FUNCS:
            return "add"
        if t in _MAXPOOL_FUNCS:
            return "maxpool"
        if t in _HOST_FUNCS:
            return "host:" + _HOST_FUNCS[t]
    if node.op == "call_method":
        if node.target in ("relu", "relu_"):
            return "relu"
        if node.target in ("add", "add_"):
            return "add"
        if node.target == "size":
            return "size"
        if node.target in _HOST_METHODS:
            return "host:" + _HOST_METHODS[node.target]
    raise UnsupportedOpError(f"{where(node)}: not supported by the int8 flow")


@dataclass
class LayerPlan:
    """One future integer layer: kind, its FX nodes by role, its tensor inputs and output."""

    kind: str  # conv | add | maxpool | relu
    name: str
    nodes: dict[str, fx.Node]
    inputs: list[fx.Node]
    output: fx.Node
    residual: Optional[fx.Node] = None


@dataclass
class HostPlan:
    """One host-head op: its kind and FX node."""

    kind: str
    node: fx.Node


@dataclass
class NetPlan:
    """The planned network: graph, input node, integer layers (in execution order), the
    boundary node feeding the host head, and the host chain."""

    gm: fx.GraphModule
    input: fx.Node
    layers: list[LayerPlan]
    boundary: fx.Node
    host: list[HostPlan] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)

    def tensor_nodes(self) -> list[fx.Node]:
        """Nodes whose values become int8 tensors: the input and every layer output."""
        return [self.input] + [lp.output for lp in self.layers]


def _tensor_inputs(node: fx.Node) -> list[fx.Node]:
    return list(node.all_input_nodes)


def _single_user(node: fx.Node) -> Optional[fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def plan_network(gm: fx.GraphModule) -> NetPlan:
    """Classify every node, find the host boundary and group the VTA side into layers."""
    nodes = list(gm.graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    kinds = {n: op_kind(gm, n) for n in nodes}
    inputs = [n for n in nodes if kinds[n] == "input"]
    if len(inputs) != 1:
        raise UnsupportedOpError(
            f"the model takes {len(inputs)} inputs; the int8 flow needs exactly one NCHW image"
        )
    out_node = next(n for n in nodes if kinds[n] == "output")
    if not isinstance(out_node.args[0], fx.Node):
        raise UnsupportedOpError("the model must return one tensor (tuple/dict outputs found)")

    # host region: host ops and everything computed from them
    host: set[fx.Node] = set()
    for n in nodes:
        k = kinds[n]
        if k.startswith("host:") or (k not in ("input", "output", "size")
                                     and any(a in host for a in _tensor_inputs(n))):
            host.add(n)
    for n in nodes:
        if n in host and kinds[n] in ("conv", "bn", "maxpool", "add"):
            raise UnsupportedOpError(
                f"{where(n)}: {kinds[n]} after the host head started (the first avg-pool / "
                "flatten / Linear); VTA layers must all come before the host head"
            )
    _check_inplace(gm, nodes, order)
    boundary = _find_boundary(nodes, kinds, host, out_node)
    host_chain = _host_chain(nodes, kinds, host, boundary, out_node)
    layers = _plan_layers(gm, nodes, order, kinds, host)
    return NetPlan(gm, inputs[0], layers, boundary, host_chain,
                   {n.name: k for n, k in kinds.items()})


def _is_inplace(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return bool(getattr(_module(gm, node), "inplace", False))
    if node.op == "call_method":
        return str(node.target).endswith("_")
    if node.op == "call_function":
        return (node.target in (operator.iadd, torch.relu_, F.relu_)
                or bool(node.kwargs.get("inplace", False)))
    return False


def _check_inplace(gm: fx.GraphModule, nodes, order) -> None:
    """An in-place op whose input is read again later would change what that reader sees;
    the integer graph has no mutation, so such graphs are rejected."""
    for n in nodes:
        if not n.args or not isinstance(n.args[0], fx.Node) or not _is_inplace(gm, n):
            continue
        later = [u for u in n.args[0].users if u is not n and order[u] > order[n]]
        if later:
            raise UnsupportedOpError(
                f"{where(n)}: in-place op on {n.args[0].name!r}, which {later[0].name!r} reads "
                "afterwards; use the out-of-place form (inplace=False)"
            )


def _find_boundary(nodes, kinds, host, out_node) -> fx.Node:
    feeding = []
    for n in nodes:
        if n in host or kinds[n] in ("output", "size"):
            continue
        if any((u in host and kinds[u] != "size") or u is out_node for u in n.users):
            feeding.append(n)
    if len(feeding) != 1:
        names = ", ".join(n.name for n in feeding) or "none"
        raise UnsupportedOpError(
            f"the host head must be fed by exactly one int8 tensor; found {len(feeding)} "
            f"({names})"
        )
    return feeding[0]


def _host_chain(nodes, kinds, host, boundary, out_node) -> list[HostPlan]:
    chain: list[HostPlan] = []
    prev = boundary
    for n in nodes:
        if n not in host:
            continue
        tensor_ins = [a for a in _tensor_inputs(n) if kinds.get(a) != "size"]
        if tensor_ins != [prev]:
            raise UnsupportedOpError(
                f"{where(n)}: the host head must be a chain of single-input ops; this op reads "
                f"{', '.join(a.name for a in tensor_ins)}"
            )
        kind = kinds[n]
        chain.append(HostPlan(kind[5:] if kind.startswith("host:") else kind, n))
        prev = n
    if out_node.args[0] is not prev:
        raise UnsupportedOpError(
            f"the model output {out_node.args[0].name!r} is not the end of the host head"
        )
    return chain


def _conv_chain_end(n: fx.Node, kinds) -> tuple[dict[str, fx.Node], fx.Node]:
    roles = {"conv": n}
    cur = n
    user = _single_user(cur)
    if user is not None and kinds[user] == "bn" and user.args[0] is cur:
        roles["bn"] = user
        cur = user
    return roles, cur


def _plan_layers(gm, nodes, order, kinds, host) -> list[LayerPlan]:
    vta = [n for n in nodes if n not in host and kinds[n] not in ("input", "output", "size")]
    chains = {}  # chain end node -> (roles)
    for n in vta:
        if kinds[n] == "conv":
            roles, end = _conv_chain_end(n, kinds)
            chains[end] = roles
    # assign every add of two conv branches to the branch whose conv runs later
    fused_add: dict[fx.Node, fx.Node] = {}  # add -> chain end it fuses into
    for n in vta:
        if kinds[n] != "add":
            continue
        a, b = _add_operands(n)
        cands = [o for o in (a, b) if o in chains and _single_user(o) is n and a is not b]
        if cands:
            best = max(cands, key=lambda o: order[chains[o]["conv"]])
            fused_add[n] = best
    consumed: set[fx.Node] = set()
    plans: list[LayerPlan] = []
    for end, roles in chains.items():
        conv = roles["conv"]
        cur, residual = end, None
        user = _single_user(cur)
        if user is not None and fused_add.get(user) is cur:
            a, b = _add_operands(user)
            residual = b if a is cur else a
            roles["add"] = user
            cur = user
        user = _single_user(cur)
        if user is not None and kinds[user] == "relu":
            roles["relu"] = user
            cur = user
        consumed.update(roles.values())
        ins = [conv.args[0]] + ([residual] if residual is not None else [])
        plans.append(LayerPlan("conv", _name(gm, conv), roles, ins, cur, residual))
    for n in vta:
        if n in consumed:
            continue
        k = kinds[n]
        if k == "add":
            a, b = _add_operands(n)
            roles, cur = {"add": n}, n
            user = _single_user(n)
            if user is not None and kinds[user] == "relu":
                roles["relu"] = user
                cur = user
            consumed.update(roles.values())
            plans.append(LayerPlan("add", _name(gm, n), roles, [a, b], cur))
        elif k in ("relu", "maxpool"):
            consumed.add(n)
            plans.append(LayerPlan(k, _name(gm, n), {k: n}, [n.args[0]], n))
        elif k == "bn":
            raise UnsupportedOpError(
                f"{where(n)}: BatchNorm2d must directly follow a conv whose output feeds "
                "nothing else (it is folded into that conv)"
            )
        else:  # pragma: no cover - every VTA kind is handled above
            raise UnsupportedOpError(f"{where(n)}: unexpected op kind {k!r}")
    plans.sort(key=lambda p: order[p.output])
    _unique_names(plans)
    return plans


def _add_operands(n: fx.Node) -> tuple[fx.Node, fx.Node]:
    args = list(n.args)
    other = args[1] if len(args) > 1 else n.kwargs.get("other")
    alpha = n.kwargs.get("alpha", 1)
    if len(args) > 2 or alpha != 1:
        raise UnsupportedOpError(f"{where(n)}: add with alpha is not supported")
    if not isinstance(args[0], fx.Node) or not isinstance(other, fx.Node):
        raise UnsupportedOpError(
            f"{where(n)}: only the add of two tensors is supported (found a constant operand)"
        )
    return args[0], other


def _name(gm: fx.GraphModule, node: fx.Node) -> str:
    return str(node.target) if node.op == "call_module" else node.name


def _unique_names(plans: list[LayerPlan]) -> None:
    seen: dict[str, int] = {"input": 1}
    for p in plans:
        base = p.name
        if base in seen:
            seen[base] += 1
            p.name = f"{base}@{seen[base] - 1}"
        else:
            seen[base] = 1
