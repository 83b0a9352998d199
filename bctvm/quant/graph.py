"""Capture a float model (torch.export -> Relax) and plan its integer layers (the fusion rules).

One capture: the model enters through `relay_passes.ImportModel` (torch.export), block convs
are recognised by what they compute (`LegalizeBlockConv`), parameters are bound and BatchNorm
is folded (`BindParams`, `FoldBN`). The integer layers are planned on that folded float Relax
graph, so whatever Python control flow the model's forward has on shapes (resolved by
torch.export), the int8 flow sees the same graph the compiler compiles.

- split the graph at the first op VTA does not do (adaptive avg pool, mean, flatten/reshape,
  Linear, softmax; an avg pool whose result no conv / max-pool reads): everything from there
  on is the float host head, a chain fed by one boundary tensor;
- group the integer side into layers:
      conv [-> sign] [-> + shortcut] [-> ReLU | clamp]   (sign: FoldBN's +-1 after a pool)
      add [-> ReLU | clamp]      (an add not fused into a conv)
      maxpool, avgpool, relu     (standalone, on int8)
  An add of two conv branches fuses into the conv computed later; the other operand is the
  residual input. Anything else raises UnsupportedOpError naming the op and module path.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import tvm
from torch import nn
from tvm import relax

from bctvm.errors import BadInputError, UnsupportedOpError

__all__ = ["LayerPlan", "HostPlan", "NetPlan", "capture_graph", "plan_graph", "eval_mode",
           "const_value", "OWN_MODULES"]

#: module classes whose op is the whole module: a standalone layer takes the module's path
OWN_MODULES = ("ReLU", "ReLU6", "Hardtanh", "MaxPool2d", "AvgPool2d")

_HOST_OPS = {
    "relax.nn.adaptive_avg_pool2d": "adaptive_avg_pool2d", "relax.mean": "mean",
    "relax.reshape": "flatten", "relax.flatten": "flatten", "relax.matmul": "linear",
    "relax.nn.softmax": "softmax", "relax.nn.log_softmax": "log_softmax",
}
_INT_OPS = {"relax.nn.relu": "relu", "relax.clip": "clamp", "relax.nn.max_pool2d": "maxpool",
            "relax.nn.avg_pool2d": "avgpool"}


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


@dataclass
class LayerPlan:
    """One future integer layer: kind, its Relax vars by role, its tensor inputs and output.

    clip: (lo, hi) float bounds of a fused clamp / ReLU6 (None: plain or no ReLU)."""

    kind: str  # conv | add | maxpool | relu | avgpool
    name: str
    vars: dict[str, relax.Var]
    inputs: list[relax.Var]
    output: relax.Var
    residual: Optional[relax.Var] = None
    clip: Optional[tuple[float, float]] = None


@dataclass
class HostPlan:
    """One host-head op: kind (qnet.HOST_KINDS), JSON params, float32 weights, its var."""

    kind: str
    name: str
    var: relax.Var
    params: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)


@dataclass
class NetPlan:
    """The planned network over the folded float Relax module `mod` (batch of the example
    input): input var, integer layers in execution order, the boundary var feeding the host
    head, the host chain, every binding's value and per-image shapes."""

    mod: tvm.IRModule
    input: relax.Var
    layers: list[LayerPlan]
    boundary: relax.Var
    host: list[HostPlan]
    values: dict
    sources: dict
    exported: Optional[torch.export.ExportedProgram] = None

    def tensor_vars(self) -> list[relax.Var]:
        """Vars whose values become int8 tensors: the input and every layer output."""
        return [self.input] + [lp.output for lp in self.layers]

    def shape(self, var) -> tuple[int, ...]:
        """Per-image shape (C, H, W) / (F,) of a tensor var."""
        return tuple(int(s) for s in list(var.ty.shape)[1:])

    def where(self, var) -> str:
        """How messages name the op behind `var`: "layer 'a.b' (file.py:12)" when known."""
        src = self.sources.get(var.name)
        return src[3] if src else f"Relax var {var.name!r}"


def capture_graph(model: nn.Module, example_input: torch.Tensor
                  ) -> tuple[tvm.IRModule, torch.export.ExportedProgram]:
    """The folded float Relax module of `model` (eval mode, restored after) and the exported
    program it came from: torch.export -> ImportModel -> LegalizeBlockConv -> BindParams ->
    FoldBN."""
    from relay_passes.bind_params import BindParams
    from relay_passes.fold_bn import FoldBN
    from relay_passes.import_model import ImportModel
    from relay_passes.legalize_block_conv import LegalizeBlockConv

    if not isinstance(model, nn.Module):
        raise BadInputError(f"expected an nn.Module, got {type(model).__name__}")
    with eval_mode(model):
        imported = ImportModel()(model, example_input)
    return FoldBN()(BindParams()(LegalizeBlockConv()(imported.mod))), imported.exported


def const_value(expr, values: dict) -> Optional[np.ndarray]:
    """NumPy value of a constant expression (a constant, a var bound to one, its reshape or
    2-D transpose); None when `expr` depends on a tensor."""
    from relay_passes import ops

    if isinstance(expr, relax.Var):
        return const_value(values[expr], values) if expr in values else None
    if isinstance(expr, tvm.ir.GenericConst):
        return expr.value.numpy()
    name = ops.op_name(expr)
    if name == "relax.reshape":
        inner = const_value(expr.args[0], values)
        return None if inner is None else inner.reshape(ops.static_shape(expr))
    if name == "relax.permute_dims":
        inner = const_value(expr.args[0], values)
        axes = expr.attrs["axes"]
        if inner is None:
            return None
        return inner.T if axes is None else inner.transpose([int(a) for a in axes])
    return None


class _Graph:
    """Bindings of main with their kinds, users and order."""

    def __init__(self, mod: tvm.IRModule):
        from relay_passes.graph import bindings, users
        from relay_passes.import_model import VAR_SOURCE_ATTR

        self.func = mod["main"]
        attrs = self.func.attrs
        src = attrs[VAR_SOURCE_ATTR] if attrs is not None and VAR_SOURCE_ATTR in attrs.keys() \
            else {}
        self.sources = {str(k): [str(x) for x in v] for k, v in src.items()}
        self.binds = bindings(self.func)
        self.values = dict(self.binds)
        self.order = {v: i for i, (v, _) in enumerate(self.binds)}
        self.users = users(self.func)
        self.input = self.func.params[0]
        self.consts = {v for v, val in self.binds if const_value(val, self.values) is not None}

    def tensor_args(self, value) -> list:
        return [a for a in _call_args(value) if isinstance(a, relax.Var) and a not in self.consts]

    def single_user(self, v):
        u = self.users.get(v, [])
        return u[0] if len(u) == 1 and not isinstance(u[0], str) else None

    def where(self, v) -> str:
        src = self._source(v)
        return src[3] if src else f"Relax var {v.name!r}"

    def _source(self, v):
        """Import record of `v`, or of the var that uses it (a converter's last binding)."""
        src = self.sources.get(v.name)
        if src is None:
            src = next((self.sources[u.name] for u in self.users.get(v, [])
                        if not isinstance(u, str) and u.name in self.sources), None)
        return src

    def op_label(self, v) -> str:
        """'hardtanh (ReLU6)': the exported op and the module class it came from."""
        from relay_passes import ops

        src = self._source(v)
        if src:
            return f"{src[2]} ({src[1]})" if src[1] else src[2]
        return ops.op_name(self.values[v]) or type(self.values[v]).__name__


def _call_args(value) -> list:
    if isinstance(value, relax.Call):
        return list(value.args)
    if isinstance(value, relax.Tuple):
        return list(value.fields)
    if isinstance(value, relax.TupleGetItem):
        return [value.tuple_value]
    return []


def _kind(g: _Graph, var, value) -> str:
    from relay_passes import ops

    name = ops.op_name(value)
    if name == ops.BLOCK_CONV2D:
        return "conv"
    if name in _INT_OPS:
        return _INT_OPS[name]
    if name in _HOST_OPS:
        return "host:" + _HOST_OPS[name]
    if name == "relax.multiply":
        consts = [const_value(a, g.values) for a in value.args]
        if any(c is not None and np.all(np.abs(c) == 1) for c in consts):
            return "sign"
    if name == "relax.add":
        return "add" if len(g.tensor_args(value)) == 2 else "add_const"
    if name == "relax.nn.batch_norm" or (
            isinstance(value, relax.TupleGetItem)
            and ops.op_name(g.values.get(value.tuple_value)) == "relax.nn.batch_norm"):
        return "bn"
    return "other"


def plan_graph(mod: tvm.IRModule, exported=None) -> NetPlan:
    """Classify every binding of the folded float graph, find the host boundary and group the
    integer side into layers (see the module docstring). `exported`: the ExportedProgram the
    graph was imported from (calibration runs it in PyTorch)."""
    g = _Graph(mod)
    tensors = [(v, val) for v, val in g.binds
               if v not in g.consts and not isinstance(val, relax.Tuple)]
    kinds = {v: _kind(g, v, val) for v, val in tensors}
    for v, k in kinds.items():
        if k == "other":
            raise UnsupportedOpError(
                f"op '{g.op_label(v)}' at {g.where(v)} is not supported by the int8 flow")
        if k == "bn":
            raise UnsupportedOpError(
                f"BatchNorm2d at {g.where(v)} must directly follow a conv whose output feeds "
                "nothing else (it is folded into that conv)")
    host = _host_region(g, tensors, kinds)
    for v, _ in tensors:
        if v in host and kinds[v] in ("conv", "maxpool", "sign"):
            raise UnsupportedOpError(
                f"{kinds[v]} '{g.op_label(v)}' at {g.where(v)} after the host head started "
                "(the first adaptive avg-pool / mean / flatten / Linear); VTA layers must all "
                "come before the host head")
        if v not in host and kinds[v] == "add_const":
            raise UnsupportedOpError(
                f"add at {g.where(v)}: only the add of two tensors is supported (found a "
                "constant operand)")
    out_fields = _outputs(g)
    boundary = _boundary(g, tensors, host, out_fields)
    host_chain = _host_chain(g, tensors, kinds, host, boundary, out_fields)
    layers = _plan_layers(g, tensors, kinds, host)
    return NetPlan(mod, g.input, layers, boundary, host_chain, g.values, g.sources, exported)


def _outputs(g: _Graph) -> list:
    ret = g.func.body.body
    if isinstance(ret, relax.Var) and isinstance(g.values.get(ret), relax.Tuple):
        ret = g.values[ret]
    fields = list(ret.fields) if isinstance(ret, relax.Tuple) else [ret]
    if len(fields) != 1 or not isinstance(fields[0], relax.Var):
        raise UnsupportedOpError("the model must return one tensor (tuple/dict outputs found)")
    return fields


def _needs_int(g: _Graph, tensors, kinds) -> set:
    """Vars from which a conv or max-pool is reached (they must stay integer)."""
    need: set = set()
    for v, _ in reversed(tensors):
        if kinds[v] in ("conv", "maxpool") or any(u in need for u in g.users.get(v, [])
                                                  if not isinstance(u, str)):
            need.add(v)
    return need


def _host_region(g: _Graph, tensors, kinds) -> set:
    need = _needs_int(g, tensors, kinds)
    host: set = set()
    for v, val in tensors:
        k = kinds[v]
        seed = k.startswith("host:") or (k == "avgpool" and v not in need)
        if seed or any(a in host for a in g.tensor_args(val)):
            host.add(v)
    return host


def _boundary(g: _Graph, tensors, host, out_fields):
    feeding = []
    for v in [g.input] + [t for t, _ in tensors]:
        if v in host:
            continue
        users = g.users.get(v, [])
        if any((not isinstance(u, str) and u in host) for u in users) or v in out_fields:
            feeding.append(v)
    if len(feeding) != 1:
        names = ", ".join(g.where(v) for v in feeding) or "none"
        raise UnsupportedOpError(
            f"the host head must be fed by exactly one int8 tensor; found {len(feeding)} "
            f"({names})")
    return feeding[0]


def _host_chain(g: _Graph, tensors, kinds, host, boundary, out_fields) -> list[HostPlan]:
    from . import host_head

    chain: list[HostPlan] = []
    prev = boundary
    pending_bias = None
    for v, val in tensors:
        if v not in host:
            continue
        ins = g.tensor_args(val)
        if ins != [prev]:
            raise UnsupportedOpError(
                f"op '{g.op_label(v)}' at {g.where(v)}: the host head must be a chain of "
                f"single-input ops, each reading the previous one's output")
        k = kinds[v]
        if k == "add_const" and chain and chain[-1].kind == "linear" and pending_bias is None:
            host_head.add_bias(chain[-1], g, val)
            pending_bias = v
            chain[-1].var = v
            prev = v
            continue
        chain.append(host_head.host_plan(g, k[5:] if k.startswith("host:") else k, v, val))
        pending_bias = None
        prev = v
    if not out_fields[0].same_as(prev):
        raise UnsupportedOpError(
            f"the model output ({g.where(out_fields[0])}) is not the end of the host head")
    return chain


def _plan_layers(g: _Graph, tensors, kinds, host) -> list[LayerPlan]:
    vta = [(v, val) for v, val in tensors if v not in host]
    chains: dict = {}  # chain end var -> roles
    for v, _ in vta:
        if kinds[v] == "conv":
            roles, end = {"conv": v}, v
            user = g.single_user(v)
            if user is not None and kinds.get(user) == "sign":
                roles["sign"] = user
                end = user
            chains[end] = roles
    for v, _ in vta:
        if kinds[v] == "sign" and v not in {r.get("sign") for r in chains.values()}:
            raise UnsupportedOpError(f"op '{g.op_label(v)}' at {g.where(v)}: a multiply is "
                                     "supported only as the sign of a folded BatchNorm")
    fused_add: dict = {}  # add var -> chain end it fuses into
    for v, val in vta:
        if kinds[v] != "add":
            continue
        a, b = g.tensor_args(val)
        cands = [o for o in (a, b) if o in chains and _same(g.single_user(o), v)
                 and not a.same_as(b)]
        if cands:
            fused_add[v] = max(cands, key=lambda o: g.order[chains[o]["conv"]])
    consumed: set = set()
    plans: list[LayerPlan] = []

    def activation(cur, roles):
        user = g.single_user(cur)
        if user is not None and user not in host and kinds.get(user) in ("relu", "clamp"):
            roles[kinds[user]] = user
            return user, _clip_bounds(g, user) if kinds[user] == "clamp" else None
        return cur, None

    for end, roles in chains.items():
        conv = roles["conv"]
        cur, residual = end, None
        user = g.single_user(cur)
        if user is not None and _same(fused_add.get(user), cur):
            a, b = g.tensor_args(g.values[user])
            residual = b if a.same_as(cur) else a
            roles["add"] = user
            cur = user
        cur, clip = activation(cur, roles)
        consumed.update(roles.values())
        data = g.values[conv].args[0]
        ins = [data] + ([residual] if residual is not None else [])
        plans.append(LayerPlan("conv", _conv_name(g, conv), roles, ins, cur, residual, clip))
    for v, val in vta:
        if v in consumed:
            continue
        k = kinds[v]
        if k == "add":
            a, b = g.tensor_args(val)
            roles = {"add": v}
            cur, clip = activation(v, roles)
            consumed.update(roles.values())
            plans.append(LayerPlan("add", _name(g, v), roles, [a, b], cur, clip=clip))
        elif k in ("relu", "maxpool", "avgpool"):
            consumed.add(v)
            plans.append(LayerPlan(k, _name(g, v), {k: v}, [g.tensor_args(val)[0]], v))
        elif k == "clamp":
            raise UnsupportedOpError(
                f"clamp '{g.op_label(v)}' at {g.where(v)}: a clamp / ReLU6 is supported right "
                "after a conv or an add (fused into its requantization)")
        else:  # pragma: no cover - every integer kind is handled above
            raise UnsupportedOpError(f"op '{g.op_label(v)}' at {g.where(v)}: kind {k!r}")
    plans.sort(key=lambda p: g.order[p.output])
    _unique_names(plans)
    return plans


def _same(a, b) -> bool:
    return a is not None and b is not None and a.same_as(b)


def _clip_bounds(g: _Graph, var) -> tuple[float, float]:
    value = g.values[var]
    lo, hi = (float(a.value) for a in value.args[1:3])
    return lo, hi


def _conv_name(g: _Graph, var) -> str:
    from relay_passes import ops

    return str(ops.attrs_dict(g.values[var])["layer"])


def _name(g: _Graph, var) -> str:
    """Module path when the op is a whole module (nn.ReLU, nn.MaxPool2d...), else the
    exported node name (add, add_1, relu_3...)."""
    src = g.sources.get(var.name)
    if not src:
        return var.name
    path, cls, node, _ = src
    return path if path and cls in OWN_MODULES else node


def _unique_names(plans: list[LayerPlan]) -> None:
    seen: dict[str, int] = {"input": 1}
    for p in plans:
        base = p.name
        if base in seen:
            seen[base] += 1
            p.name = f"{base}@{seen[base] - 1}"
        else:
            seen[base] = 1

