"""The bit-exact integer reference: runs a QuantizedNet exactly as the contract says.

Input float32 NCHW is quantized with the input exponent; every layer runs on int8 tensors
with int32 (wrapping) accumulators; the boundary tensor is dequantized and the float host head
runs in float32. Integer convolutions are computed in float64 on integer-valued tensors
(exact: every partial sum stays far below 2**53) and converted back to int64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from bctvm.errors import BadInputError
from bctvm.models.block_conv import block_conv2d

from .host_head import run_head
from .inputs import as_float_batch
from .intops import align, clip_int8, dequantize, quantize, requantize, shift_left, wrap32
from .qnet import QAdd, QAvgPool, QConv, QLayer, QMaxPool, QRelu, QuantizedNet

__all__ = ["IntRun", "IntegerReference", "conv_accumulator"]


@dataclass
class IntRun:
    """Result of one integer run.

    tensors: every int8 tensor by name ('input' and each layer output), numpy int8 NCHW;
    accumulators: int32 accumulator of each conv/add layer just before requantization
    (only with keep_accumulators); boundary: int8 tensor entering the host head, at
    boundary_exponent; output: float32 result of the host head (logits).
    """

    tensors: dict[str, np.ndarray]
    boundary: np.ndarray
    boundary_exponent: int
    output: np.ndarray
    accumulators: dict[str, np.ndarray] = field(default_factory=dict)

    def dequantized(self, name: str, exponent: int) -> np.ndarray:
        """float32 value of tensor `name` at `exponent`."""
        return self.tensors[name].astype(np.float64) * 2.0 ** -exponent


def conv_accumulator(layer: QConv, x: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor) -> torch.Tensor:
    """acc = conv(x_q, w_q) + b_q in wrapping int32 (int64 tensor); block conv with per-block
    padding (constant pads 0), stride 1 (or the plain conv's stride over one whole-map block)."""
    xf = x.to(torch.float64)
    if layer.stride == (1, 1):
        acc = block_conv2d(xf, weight, None, layer.block, layer.padding, layer.padding_mode,
                           layer.dilation, layer.groups, pool=False, layer=layer.name)
    else:
        ph, pw = layer.padding
        mode = layer.padding_mode
        y = F.pad(xf, (pw, pw, ph, ph), mode=mode, value=0.0) if mode == "constant" else \
            F.pad(xf, (pw, pw, ph, ph), mode=mode)
        acc = F.conv2d(y, weight, None, stride=layer.stride, dilation=layer.dilation,
                       groups=layer.groups)
    return wrap32(torch.round(acc).to(torch.int64) + bias.view(1, -1, 1, 1))


def clamp_bounds(y: torch.Tensor, layer) -> torch.Tensor:
    """Apply a fused clamp / ReLU6 (layer.clip_lo / clip_hi, int8 at e_y) after the int8 clip."""
    if layer.clip_lo is None:
        return y
    return y.clamp(int(layer.clip_lo), int(layer.clip_hi))


def avg_pool_int(x: torch.Tensor, layer: QAvgPool) -> torch.Tensor:
    """Integer average pool: window sums (zero padding) / divisor, halves rounded up."""
    ph, pw = layer.padding
    xp = F.pad(x.to(torch.float64), (pw, pw, ph, ph))
    total = F.avg_pool2d(xp, layer.kernel, layer.stride) * (layer.kernel[0] * layer.kernel[1])
    s = torch.round(total).to(torch.int64)  # exact: sums of int8 values
    d = int(layer.divisor)
    return torch.div(2 * s + d, 2 * d, rounding_mode="floor")


class IntegerReference:
    """Executable int8 contract of a QuantizedNet: `IntegerReference(qnet).run(x)`."""

    def __init__(self, qnet: QuantizedNet):
        self.qnet = qnet
        self._weights: dict[str, tuple] = {}
        for layer in qnet.layers:
            if isinstance(layer, QConv):
                w = torch.from_numpy(layer.weight.astype(np.float64))
                b = torch.from_numpy(layer.bias.astype(np.int64))
                s = None if layer.sign is None else torch.from_numpy(
                    layer.sign.astype(np.int64)).view(1, -1, 1, 1)
                self._weights[layer.name] = (w, b, s)

    def quantize_input(self, x) -> torch.Tensor:
        """float32 NCHW -> int8 at the input exponent (BadInputError on a wrong image shape)."""
        x = as_float_batch(x, "input")
        shape = tuple(int(s) for s in x.shape[1:])
        if shape != tuple(self.qnet.input_shape):
            raise BadInputError(
                f"input: image shape {shape} differs from the calibrated "
                f"{tuple(self.qnet.input_shape)} (re-calibrate for another input size)"
            )
        return quantize(x, self.qnet.input_exponent)

    def run(self, x, keep_tensors: bool = True, keep_accumulators: bool = False) -> IntRun:
        """Run the network on float32 NCHW `x` (tensor or array). keep_tensors=False keeps only
        the boundary (saves memory on large batches)."""
        q = self.quantize_input(x).to(torch.int64)
        env: dict[str, torch.Tensor] = {self.qnet.input_name: q}
        accs: dict[str, np.ndarray] = {}
        users = _last_use(self.qnet)
        for i, layer in enumerate(self.qnet.layers):
            out, acc = self.run_layer(layer, env)
            env[layer.output] = out
            if keep_accumulators and acc is not None:
                accs[layer.name] = acc.to(torch.int32).numpy()
            if not keep_tensors:
                for name in [n for n, last in users.items() if last == i]:
                    if name != self.qnet.boundary:
                        env.pop(name, None)
        boundary = env[self.qnet.boundary]
        e_b = self.qnet.boundary_exponent
        with torch.no_grad():
            output = run_head(self.qnet.head, dequantize(boundary, e_b))
        tensors = {k: v.to(torch.int8).numpy() for k, v in env.items()} if keep_tensors else {}
        return IntRun(
            tensors=tensors,
            boundary=boundary.to(torch.int8).numpy(),
            boundary_exponent=e_b,
            output=output.to(torch.float32).numpy(),
            accumulators=accs,
        )

    def run_layer(self, layer: QLayer, env: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(int8 output as int64, int32 accumulator before requantization or None)."""
        x = env[layer.inputs[0]]
        if isinstance(layer, QConv):
            w, b, s = self._weights[layer.name]
            acc = conv_accumulator(layer, x, w, b)
            if layer.pool:
                acc = F.max_pool2d(acc.to(torch.float64), 2, 2).to(torch.int64)
            if s is not None:
                acc = wrap32(acc * s)
            if layer.residual is not None:
                acc = wrap32(acc + align(env[layer.residual], layer.residual_shift))
            return clamp_bounds(requantize(acc, layer.shift, layer.relu), layer), acc
        if isinstance(layer, QAdd):
            r = env[layer.inputs[1]]
            acc = wrap32(shift_left(x, layer.e_a - layer.e_x)
                         + shift_left(r, layer.e_a - layer.e_r))
            return clamp_bounds(requantize(acc, layer.shift, layer.relu), layer), acc
        if isinstance(layer, QMaxPool):
            y = F.max_pool2d(x.to(torch.float64), layer.kernel, layer.stride, layer.padding,
                             layer.dilation, layer.ceil_mode)
            return y.to(torch.int64), None
        if isinstance(layer, QRelu):
            return clip_int8(x, relu=True), None
        if isinstance(layer, QAvgPool):
            return avg_pool_int(x, layer), None
        raise BadInputError(f"layer {layer.name!r}: unknown kind {layer.kind!r}")


def _last_use(qnet: QuantizedNet) -> dict[str, int]:
    """Tensor name -> index of the last layer reading it."""
    last: dict[str, int] = {}
    for i, layer in enumerate(qnet.layers):
        for name in layer.inputs:
            last[name] = i
    return last
