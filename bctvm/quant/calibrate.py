"""Post-training calibration: the folded float graph + sample images -> QuantizedNet.

Steps: capture the model once (torch.export -> Relax, block convs legalized, BN folded:
graph.capture_graph) and plan its integer layers (graph.plan_graph); run that float graph
on the Relax VM over the calibration images recording max |t| of the input and of every
layer output; choose exponents e = floor(log2(127 / max|t|)); quantize each conv's folded
weights (per-layer power-of-two exponent) and bias (int32 at e_a = e_x + e_w); build the host
head.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import tvm
from torch import nn
from tqdm import tqdm

from bctvm.errors import BadInputError, UnsupportedOpError

from .graph import LayerPlan, NetPlan, capture_graph, const_value, plan_graph
from .host_head import to_host_op
from .inputs import iter_batches
from .intops import MAX_SHIFT, QuantizationError, exponent_for, saturate_int32
from .qnet import QAdd, QAvgPool, QConv, QLayer, QMaxPool, QRelu, QuantizedNet

__all__ = ["calibrate", "calibrate_graph", "collect_stats", "capture"]


def capture(model: nn.Module, example_input) -> NetPlan:
    """Capture `model` on `example_input` (a tensor, or a per-image (C, H, W) shape) and plan
    its integer layers (UnsupportedOpError on anything else)."""
    if isinstance(example_input, (tuple, list)):
        example_input = torch.zeros(1, *example_input)
    return plan_graph(*capture_graph(model, example_input[:1].to(torch.float32)))


class _Tap:
    """Runs the captured float program, returning chosen tensors' values (and max |t|).

    With the ExportedProgram (the usual case) the exported graph runs in PyTorch and a var
    is read at the exported node it was imported from (its binding keeps the name through
    the passes, and a folded conv's var is the folded BatchNorm's output, the same value);
    otherwise the folded Relax graph runs on the Relax VM (llvm). Both capture batch N and
    run the images in chunks of N."""

    def __init__(self, plan: NetPlan, taps: list, reduce_max: bool = False):
        self.taps = taps
        self.reduce_max = reduce_max
        self.batch = int(plan.input.ty.shape[0])
        nodes = [None if v.same_as(plan.input) else (plan.sources.get(v.name) or [None] * 3)[2]
                 for v in taps]
        self.gm = plan.exported.module() if plan.exported is not None else None
        known = {n.name for n in self.gm.graph.nodes} if self.gm is not None else set()
        if self.gm is not None and all(n is None or n in known for n in nodes):
            self.nodes = nodes
        else:
            from relay_passes.vm_run import build, with_outputs

            self.gm = None
            self.vm = build(with_outputs(plan.mod, taps))

    def run(self, x: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
        """(tap values, model output) over a batch (each tap's max |t| with reduce_max)."""
        xs = x.detach().to(torch.float32)
        if len(xs) % self.batch:
            raise BadInputError(f"{len(xs)} images do not split into batches of {self.batch}")
        chunks = [self._run(xs[i:i + self.batch]) for i in range(0, len(xs), self.batch)]
        if self.reduce_max:
            taps = [np.max([c[0][k] for c in chunks]) for k in range(len(self.taps))]
        else:
            taps = [np.concatenate([c[0][k] for c in chunks]) for k in range(len(self.taps))]
        return taps, np.concatenate([c[1] for c in chunks])

    def _value(self, t) -> np.ndarray:
        t = t.detach()
        if self.reduce_max:
            return np.float64(t.abs().max()) if t.numel() else np.float64(0.0)
        return t.to(torch.float32).clone().numpy()

    def _run(self, x: torch.Tensor):
        if self.gm is None:
            from relay_passes.vm_run import to_numpy

            out = to_numpy(self.vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x.numpy()))))
            vals = [self._value(torch.from_numpy(v)) for v in out[1:]]
            return vals, out[0]
        want = {n: i for i, n in enumerate(self.nodes) if n is not None}
        vals: list = [self._value(x) if n is None else None for n in self.nodes]
        tap = self

        class _Interp(torch.fx.Interpreter):
            def run_node(self, n):
                result = super().run_node(n)
                if n.name in want:  # read now: a later in-place op may change the tensor
                    vals[want[n.name]] = tap._value(result)
                return result

        with torch.no_grad():
            out = _Interp(self.gm).run(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return vals, out.detach().to(torch.float32).numpy()


def collect_stats(plan: NetPlan, calib_inputs, batch_size: int = 32, progress: bool = True
                  ) -> tuple[dict, int]:
    """Run the float graph over the calibration images: (max |t| by var, number of images)."""
    taps = plan.tensor_vars()
    tap = _Tap(plan, taps, reduce_max=True)
    max_abs = {v: 0.0 for v in taps}
    count = 0
    want = plan.shape(plan.input)
    bar = tqdm(iter_batches(calib_inputs, batch_size, what="calibration inputs"),
               desc="calibrate", disable=not progress, leave=False)
    for x, _ in bar:
        shape = tuple(int(s) for s in x.shape[1:])
        if shape != want:
            raise BadInputError(f"calibration inputs: image shape {shape} differs from {want}")
        values, _ = tap.run(x)
        for v, m in zip(taps, values):
            m = float(m)
            if not math.isfinite(m):
                raise QuantizationError(f"{plan.where(v)}: the float model produced inf/nan")
            max_abs[v] = max(max_abs[v], m)
        count += len(x)
    if count == 0:
        raise BadInputError("calibration inputs: no images")
    return max_abs, count


def calibrate(model: nn.Module, calib_inputs, batch_size: int = 32, progress: bool = True
              ) -> QuantizedNet:
    """Capture `model` once, calibrate exponents on `calib_inputs`, build the QuantizedNet.

    calib_inputs: float32 N x C x H x W tensor/array, a Dataset of (image, label) or an
    iterable of batches. The model is left unchanged (its train/eval mode is restored).
    The result is specific to the calibration images' C x H x W.
    """
    if not isinstance(calib_inputs, (torch.Tensor, np.ndarray)):
        calib_inputs = list(iter_batches(calib_inputs, batch_size, what="calibration inputs"))
    first = next(iter(iter_batches(calib_inputs, 1, what="calibration inputs")), None)
    if first is None:
        raise BadInputError("calibration inputs: no images")
    plan = capture(model, first[0])
    return calibrate_graph(plan, calib_inputs, batch_size, progress,
                           info={"model": type(model).__name__})


def calibrate_graph(plan: NetPlan | tvm.IRModule, calib_inputs, batch_size: int = 32,
                    progress: bool = True, info: dict | None = None,
                    exported=None) -> QuantizedNet:
    """QuantizedNet of a folded float Relax graph (FoldBN's output, or its NetPlan);
    `exported`: the ExportedProgram it was imported from (calibration runs it in PyTorch;
    without it, the graph runs on the Relax VM)."""
    if not isinstance(plan, NetPlan):
        plan = plan_graph(plan, exported)
    max_abs, count = collect_stats(plan, calib_inputs, batch_size, progress)
    names = {plan.input: "input"}
    for lp in plan.layers:
        names[lp.output] = lp.name
    exponents: dict[str, int] = {"input": exponent_for(max_abs[plan.input])}
    layers: list[QLayer] = []
    for lp in plan.layers:
        layer = _build_layer(plan, lp, names, exponents, max_abs)
        exponents[layer.output] = layer.e_y
        layers.append(layer)
    boundary = names[plan.boundary]
    return QuantizedNet(
        input_shape=plan.shape(plan.input),
        input_exponent=exponents["input"],
        layers=layers,
        boundary=boundary,
        boundary_exponent=exponents[boundary],
        boundary_shape=plan.shape(plan.boundary),
        head=[to_host_op(hp) for hp in plan.host],
        exponents=exponents,
        max_abs={names[v]: max_abs[v] for v in plan.tensor_vars()},
        info={**(info or {}), "calibration_images": count},
    )


def _check_shift(value: int, what: str, layer: str) -> int:
    if abs(value) > MAX_SHIFT:
        raise QuantizationError(
            f"layer {layer!r}: {what} {value} is outside +-{MAX_SHIFT} (the tensor ranges are "
            "too far apart for int32 requantization)"
        )
    return int(value)


def _quantized_bound(t: float, e: int) -> int:
    """A float clamp bound as int8 at exponent e (round half even, saturated)."""
    if math.isinf(t):
        return 127 if t > 0 else -128
    return int(min(127, max(-128, round(t * math.ldexp(1.0, e)))))


def _clip_fields(lp: LayerPlan, e_y: int) -> dict:
    if lp.clip is None:
        return {}
    lo, hi = lp.clip
    return {"clip_lo": _quantized_bound(lo, e_y), "clip_hi": _quantized_bound(hi, e_y)}


def _build_layer(plan: NetPlan, lp: LayerPlan, names, exponents, max_abs) -> QLayer:
    ins = [names[v] for v in lp.inputs]
    common = dict(
        name=lp.name, inputs=ins, output=lp.name,
        in_shape=plan.shape(lp.inputs[0]), out_shape=plan.shape(lp.output),
        node=lp.output.name,
        sources={role: _source(plan, role, v) for role, v in lp.vars.items() if role != "sign"},
    )
    bn = _folded_bn(plan, lp)
    if bn:
        common["sources"]["bn"] = bn
    e_x = exponents[ins[0]]
    if lp.kind == "relu":
        return QRelu(e_y=e_x, **common)
    if lp.kind == "maxpool":
        return _build_maxpool(plan, lp, e_x, common)
    if lp.kind == "avgpool":
        return _build_avgpool(plan, lp, e_x, common)
    e_y = exponent_for(max_abs[lp.output])
    if lp.kind == "add":
        e_r = exponents[ins[1]]
        e_a = max(e_x, e_r)
        for s in (e_a - e_x, e_a - e_r):
            _check_shift(s, "input alignment shift", lp.name)
        shift = _check_shift(e_a - e_y, "requantization shift", lp.name)
        return QAdd(e_y=e_y, e_x=e_x, e_r=e_r, e_a=e_a, shift=shift, relu="relu" in lp.vars,
                    **_clip_fields(lp, e_y), **common)
    return _build_conv(plan, lp, exponents, e_y, common)


def _folded_bn(plan: NetPlan, lp: LayerPlan) -> str:
    """Module path of the BatchNorm FoldBN folded into this conv ("" when none): the folded
    binding keeps the name of the BatchNorm's output."""
    for role in ("sign", "conv"):
        src = plan.sources.get(lp.vars[role].name) if role in lp.vars else None
        if src and src[1].endswith("BatchNorm2d"):
            return src[0]
    return ""


def _source(plan: NetPlan, role: str, var) -> str:
    from relay_passes import ops

    if role == "conv":
        return str(ops.attrs_dict(plan.values[var])["layer"])
    src = plan.sources.get(var.name)
    return (src[0] or src[2]) if src else var.name


def _ints(v) -> tuple[int, ...]:
    return tuple(int(i) for i in v)


def _pool_attrs(plan: NetPlan, lp: LayerPlan, role: str):
    value = plan.values[lp.vars[role]]
    a = value.attrs
    pad = _ints(a["padding"])
    if pad[0] != pad[2] or pad[1] != pad[3]:
        raise UnsupportedOpError(f"{plan.where(lp.output)}: asymmetric pool padding {pad}")
    if bool(a["ceil_mode"]):
        raise UnsupportedOpError(f"{plan.where(lp.output)}: {role} with ceil_mode")
    return a, pad[:2]


def _build_maxpool(plan: NetPlan, lp: LayerPlan, e: int, common: dict) -> QMaxPool:
    a, pad = _pool_attrs(plan, lp, "maxpool")
    return QMaxPool(e_y=e, kernel=_ints(a["pool_size"]), stride=_ints(a["strides"]),
                    padding=pad, dilation=_ints(a["dilation"]), ceil_mode=False, **common)


def _build_avgpool(plan: NetPlan, lp: LayerPlan, e: int, common: dict) -> QAvgPool:
    a, pad = _pool_attrs(plan, lp, "avgpool")
    kernel = _ints(a["pool_size"])
    if any(pad) and not bool(a["count_include_pad"]):
        raise UnsupportedOpError(f"{plan.where(lp.output)}: avg-pool with padding and "
                                 "count_include_pad=False (the divisor varies)")
    return QAvgPool(e_y=e, kernel=kernel, stride=_ints(a["strides"]), padding=pad,
                    divisor=kernel[0] * kernel[1], **common)


def _build_conv(plan: NetPlan, lp: LayerPlan, exponents, e_y: int, common: dict) -> QConv:
    from relay_passes import ops

    call = plan.values[lp.vars["conv"]]
    a = ops.attrs_dict(call)
    weight = const_value(call.args[1], plan.values)
    bias = const_value(call.args[2], plan.values)
    if weight is None or bias is None:
        raise UnsupportedOpError(f"layer '{lp.name}': conv weight or bias is not a constant")
    sign = None
    if "sign" in lp.vars:
        mul = plan.values[lp.vars["sign"]]
        vals = [const_value(x, plan.values) for x in mul.args]
        sign = next(v for v in vals if v is not None).reshape(-1).astype(np.int8)
    t, l, b, r = a["padding"]
    if (t, l) != (b, r):
        raise UnsupportedOpError(f"layer '{lp.name}': asymmetric padding {a['padding']}")
    block = a["block"]
    h, w = common["in_shape"][1:]
    w64 = torch.from_numpy(weight.astype(np.float64))
    e_x = exponents[common["inputs"][0]]
    e_w = exponent_for(float(w64.abs().max()) if w64.numel() else 0.0)
    e_a = e_x + e_w
    w_q = torch.round(w64 * math.ldexp(1.0, e_w)).clamp(-128, 127).to(torch.int8)
    b_q = saturate_int32(torch.round(torch.from_numpy(bias.astype(np.float64))
                                     * math.ldexp(1.0, e_a)).to(torch.int64))
    shift = _check_shift(e_a - e_y, "requantization shift", lp.name)
    residual = e_r = residual_shift = None
    if lp.residual is not None:
        residual = common["inputs"][1]
        e_r = exponents[residual]
        residual_shift = _check_shift(e_a - e_r, "residual alignment shift", lp.name)
    whole = tuple(block) == (h, w)
    return QConv(
        e_y=e_y, weight=w_q.numpy(), bias=b_q.to(torch.int32).numpy(), sign=sign,
        e_x=e_x, e_w=e_w, e_a=e_a, shift=shift, e_r=e_r, residual=residual,
        residual_shift=residual_shift, relu="relu" in lp.vars, **_clip_fields(lp, e_y),
        kernel=tuple(a["kernel"]), stride=tuple(a.get("strides", (1, 1))), padding=(t, l),
        padding_mode=str(a["padding_mode"]), dilation=tuple(a["dilation"]),
        groups=int(a["groups"]), block=tuple(block),
        block_size=(0, 0) if whole else tuple(block), block_type="fixed",
        pool=bool(a["pool"]), **common,
    )
