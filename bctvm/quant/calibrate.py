"""Post-training calibration: float model + sample images -> QuantizedNet.

Steps: trace and plan the network (graph.py); run the float model over the calibration
images recording max |t| of the input and of every layer output; choose exponents
e = floor(log2(127 / max|t|)); fold BN into each conv (fold.py) and quantize its weights
(per-layer power-of-two exponent) and bias (int32 at e_a = e_x + e_w); build the host head.
"""

from __future__ import annotations

import math
import torch
import torch.fx as fx
from torch import nn
from tqdm import tqdm

from bctvm.errors import BadInputError, UnsupportedOpError
from bctvm.models.block_conv import BlockConv2d, normalize_padding_mode

from .fold import fold_conv_bn
from .graph import LayerPlan, NetPlan, eval_mode, node_args, plan_network, trace_model, where
from .host_head import host_op_from_node
from .inputs import iter_batches
from .intops import (
    MAX_SHIFT,
    QuantizationError,
    exponent_for,
    saturate_int32,
)
from .qnet import QAdd, QConv, QLayer, QMaxPool, QRelu, QuantizedNet

__all__ = ["calibrate", "collect_stats", "capture"]


def capture(model: nn.Module) -> NetPlan:
    """Trace `model` and plan its integer layers (UnsupportedOpError on anything else)."""
    if not isinstance(model, nn.Module):
        raise BadInputError(f"expected an nn.Module, got {type(model).__name__}")
    return plan_network(trace_model(model))


class _StatsInterpreter(fx.Interpreter):
    """Runs the traced float model recording max |t| and the per-image shape of chosen nodes."""

    def __init__(self, gm: fx.GraphModule, watch: set[str]):
        super().__init__(gm)
        self.watch = watch
        self.max_abs: dict[str, float] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        if n.name in self.watch and isinstance(result, torch.Tensor):
            m = float(result.detach().abs().max()) if result.numel() else 0.0
            if not math.isfinite(m):
                raise QuantizationError(f"{where(n)}: the float model produced inf/nan")
            self.max_abs[n.name] = max(self.max_abs.get(n.name, 0.0), m)
            self.shapes.setdefault(n.name, tuple(int(s) for s in result.shape[1:]))
        return result


def collect_stats(
    plan: NetPlan, calib_inputs, batch_size: int = 32, progress: bool = True
) -> tuple[dict[str, float], dict[str, tuple[int, ...]], int]:
    """Run the float model over the calibration images: (max_abs by node name, per-image shape
    by node name, number of images). Shapes must be the same for every batch."""
    watch = {n.name for n in plan.tensor_nodes()}
    watch |= {n.name for lp in plan.layers for n in lp.nodes.values()}
    interp = _StatsInterpreter(plan.gm, watch)
    count = 0
    with eval_mode(plan.gm), torch.no_grad():
        bar = tqdm(iter_batches(calib_inputs, batch_size, what="calibration inputs"),
                   desc="calibrate", disable=not progress, leave=False)
        for x, _ in bar:
            shape = tuple(int(s) for s in x.shape[1:])
            first = interp.shapes.get(plan.input.name)
            if first is not None and shape != first:
                raise BadInputError(f"calibration inputs: image shape {shape} differs from {first}")
            interp.run(x)
            count += len(x)
    if count == 0:
        raise BadInputError("calibration inputs: no images")
    return interp.max_abs, interp.shapes, count


def calibrate(
    model: nn.Module, calib_inputs, batch_size: int = 32, progress: bool = True
) -> QuantizedNet:
    """Fold BN, calibrate exponents on `calib_inputs` and build the QuantizedNet.

    calib_inputs: float32 N x C x H x W tensor/array, a Dataset of (image, label) or an
    iterable of batches. The model is left unchanged (its train/eval mode is restored).
    The result is specific to the calibration images' C x H x W.
    """
    plan = capture(model)
    max_abs, shapes, count = collect_stats(plan, calib_inputs, batch_size, progress)
    names: dict[fx.Node, str] = {plan.input: "input"}
    for lp in plan.layers:
        names[lp.output] = lp.name
    exponents: dict[str, int] = {"input": exponent_for(max_abs[plan.input.name])}
    layers: list[QLayer] = []
    for lp in plan.layers:
        layer = _build_layer(plan, lp, names, exponents, max_abs, shapes)
        exponents[layer.output] = layer.e_y
        layers.append(layer)
    boundary = names[plan.boundary]
    head = [host_op_from_node(plan.gm, hp.kind, hp.node) for hp in plan.host]
    calib_max = {names[n]: max_abs[n.name] for n in plan.tensor_nodes()}
    return QuantizedNet(
        input_shape=shapes[plan.input.name],
        input_exponent=exponents["input"],
        layers=layers,
        boundary=boundary,
        boundary_exponent=exponents[boundary],
        boundary_shape=shapes[plan.boundary.name],
        head=head,
        exponents=exponents,
        max_abs=calib_max,
        info={"model": type(model).__name__, "calibration_images": count},
    )


def _check_shift(value: int, what: str, layer: str) -> int:
    if abs(value) > MAX_SHIFT:
        raise QuantizationError(
            f"layer {layer!r}: {what} {value} is outside +-{MAX_SHIFT} (the tensor ranges are "
            "too far apart for int32 requantization)"
        )
    return int(value)


def _build_layer(plan, lp: LayerPlan, names, exponents, max_abs, shapes) -> QLayer:
    ins = [names[n] for n in lp.inputs]
    out_node = lp.output
    common = dict(
        name=lp.name,
        inputs=ins,
        output=lp.name,
        in_shape=shapes[lp.inputs[0].name],
        out_shape=shapes[out_node.name],
        node=out_node.name,
        sources={role: (str(n.target) if n.op == "call_module" else n.name)
                 for role, n in lp.nodes.items()},
    )
    if lp.kind == "relu":
        return QRelu(e_y=exponents[ins[0]], **common)
    if lp.kind == "maxpool":
        return _build_maxpool(plan, lp, exponents[ins[0]], common)
    e_y = exponent_for(max_abs[out_node.name])
    if lp.kind == "add":
        e_x, e_r = exponents[ins[0]], exponents[ins[1]]
        e_a = max(e_x, e_r)
        for s in (e_a - e_x, e_a - e_r):
            _check_shift(s, "input alignment shift", lp.name)
        shift = _check_shift(e_a - e_y, "requantization shift", lp.name)
        return QAdd(e_y=e_y, e_x=e_x, e_r=e_r, e_a=e_a, shift=shift,
                    relu="relu" in lp.nodes, **common)
    return _build_conv(plan, lp, exponents, e_y, common)


def _build_maxpool(plan, lp: LayerPlan, e: int, common: dict) -> QMaxPool:
    node = lp.nodes["maxpool"]
    if node.op == "call_module":
        m = plan.gm.get_submodule(node.target)
        p = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                 dilation=m.dilation, ceil_mode=m.ceil_mode, return_indices=m.return_indices)
    else:
        p = node_args(node, ("input", "kernel_size", "stride", "padding", "dilation",
                             "ceil_mode", "return_indices"),
                      {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                       "return_indices": False})
    if p["return_indices"]:
        raise UnsupportedOpError(f"{where(node)}: max-pool with return_indices")
    kernel = _pair(p["kernel_size"])
    stride = kernel if p["stride"] in (None, [], ()) else _pair(p["stride"])
    return QMaxPool(e_y=e, kernel=kernel, stride=stride, padding=_pair(p["padding"]),
                    dilation=_pair(p["dilation"]), ceil_mode=bool(p["ceil_mode"]), **common)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    items = tuple(int(i) for i in v)
    return items * 2 if len(items) == 1 else items


def _conv_geometry(conv: nn.Module, in_shape, name: str) -> dict:
    """Kernel / stride / padding / block fields of a BlockConv2d or nn.Conv2d layer."""
    _, h, w = in_shape
    if isinstance(conv, BlockConv2d):
        return dict(
            kernel=tuple(conv.kernel_size), stride=(1, 1), padding=tuple(conv.padding),
            padding_mode=conv.padding_mode, dilation=tuple(conv.dilation), groups=conv.groups,
            block=conv.block_for(h, w), block_size=tuple(conv.block_size),
            block_type=conv.block_type, pool=conv.pool,
        )
    if conv.padding_mode == "circular":
        raise UnsupportedOpError(f"module {name!r}: circular padding is not supported")
    padding = conv.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        else:  # 'same' (stride 1 only, PyTorch checks): symmetric when the total is even
            totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
            if any(t % 2 for t in totals):
                raise UnsupportedOpError(
                    f"module {name!r}: padding='same' pads asymmetrically for this kernel"
                )
            padding = (totals[0] // 2, totals[1] // 2)
    return dict(
        kernel=tuple(conv.kernel_size), stride=tuple(conv.stride), padding=tuple(padding),
        padding_mode=normalize_padding_mode(conv.padding_mode), dilation=tuple(conv.dilation),
        groups=conv.groups, block=(h, w), block_size=(0, 0), block_type="fixed", pool=False,
    )


def _build_conv(plan, lp: LayerPlan, exponents, e_y: int, common: dict) -> QConv:
    conv = plan.gm.get_submodule(lp.nodes["conv"].target)
    bn_node = lp.nodes.get("bn")
    bn = plan.gm.get_submodule(bn_node.target) if bn_node is not None else None
    geometry = _conv_geometry(conv, common["in_shape"], lp.name)
    folded = fold_conv_bn(conv.weight, conv.bias, bn, geometry["pool"],
                          str(bn_node.target) if bn_node is not None else "")
    e_x = exponents[common["inputs"][0]]
    e_w = exponent_for(float(folded.weight.abs().max()) if folded.weight.numel() else 0.0)
    e_a = e_x + e_w
    w_q = torch.round(folded.weight * math.ldexp(1.0, e_w)).clamp(-128, 127).to(torch.int8)
    b_q = saturate_int32(torch.round(folded.bias * math.ldexp(1.0, e_a)).to(torch.int64))
    sign = None if folded.sign is None else folded.sign.to(torch.int8).numpy()
    shift = _check_shift(e_a - e_y, "requantization shift", lp.name)
    residual = e_r = residual_shift = None
    if lp.residual is not None:
        residual = common["inputs"][1]
        e_r = exponents[residual]
        residual_shift = _check_shift(e_a - e_r, "residual alignment shift", lp.name)
    return QConv(
        e_y=e_y, weight=w_q.numpy(), bias=b_q.to(torch.int32).numpy(), sign=sign,
        e_x=e_x, e_w=e_w, e_a=e_a, shift=shift, e_r=e_r, residual=residual,
        residual_shift=residual_shift, relu="relu" in lp.nodes, **geometry, **common,
    )
