"""The quantized network: plain data the graph passes, the schedules and the simulator consume.

A QuantizedNet is an ordered list of integer layers over named int8 tensors, the float host
head that follows the boundary tensor, and the exponent of every tensor (value = q * 2**-e).
Layouts: activations NCHW, weights OIHW; shapes are stored per image as (C, H, W).
Serialisation (npz + json) lives in serialize.py; the arithmetic in reference.py and
docs/quantization.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar, Optional

import numpy as np

from bctvm.errors import BadInputError

__all__ = [
    "QLayer",
    "QConv",
    "QMaxPool",
    "QRelu",
    "QAdd",
    "QAvgPool",
    "HostOp",
    "QuantizedNet",
    "LAYER_KINDS",
    "HOST_KINDS",
]

Shape = tuple[int, ...]
Pair = tuple[int, int]


@dataclass(kw_only=True)
class QLayer:
    """One integer layer: reads int8 tensors `inputs`, writes int8 tensor `output` at e_y.

    name: the module path (or FX node name for functions) of the layer's first op;
    node: the FX node name whose value the output tensor quantizes (for float comparisons);
    sources: role -> module path / FX node name of every op fused in (conv, bn, add, relu...).
    """

    kind: ClassVar[str] = ""
    ARRAYS: ClassVar[tuple[str, ...]] = ()
    TUPLES: ClassVar[tuple[str, ...]] = ("in_shape", "out_shape")

    name: str
    inputs: list[str]
    output: str
    e_y: int
    in_shape: Shape
    out_shape: Shape
    node: str = ""
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: name, kind, shapes and exponents."""
        ins = ", ".join(self.inputs)
        return (f"{self.name:<28} {self.kind:<8} ({ins}) {self.in_shape} -> "
                f"{self.out_shape} e_y={self.e_y}")


@dataclass(kw_only=True)
class QConv(QLayer):
    """Fused conv [-> BN] [-> 2x2 max-pool] [-> sign] [-> + residual] -> requant [-> ReLU].

    weight int8 OIHW; bias int32 (O,) at e_a = e_x + e_w; sign int8 (O,) of +-1 or None;
    shift = e_a - e_y (requant), residual_shift = e_a - e_r (align of the residual, None
    without one). block = resolved (bh, bw) in pixels on the input map; block_size/block_type
    as the layer was given them. stride is (1, 1) except for plain nn.Conv2d layers with a real
    stride (then the block is the whole map). pool: 2x2/stride-2 max-pool of a stride-2
    BlockConv2d, applied to the int32 accumulator. clip_lo/clip_hi: int8 bounds of a fused
    clamp / ReLU6 (the float bounds quantized at e_y), applied after the int8 clip; None
    without one.
    """

    kind: ClassVar[str] = "conv"
    ARRAYS: ClassVar[tuple[str, ...]] = ("weight", "bias", "sign")
    TUPLES: ClassVar[tuple[str, ...]] = (
        "in_shape", "out_shape", "kernel", "stride", "padding", "dilation", "block",
        "block_size",
    )

    weight: np.ndarray
    bias: np.ndarray
    sign: Optional[np.ndarray] = None
    e_x: int
    e_w: int
    e_a: int
    shift: int
    e_r: Optional[int] = None
    residual: Optional[str] = None
    residual_shift: Optional[int] = None
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair
    padding_mode: str = "constant"
    dilation: Pair = (1, 1)
    groups: int = 1
    block: Pair
    block_size: Pair = (0, 0)
    block_type: str = "fixed"
    pool: bool = False
    relu: bool = False
    clip_lo: Optional[int] = None
    clip_hi: Optional[int] = None

    def describe(self) -> str:
        extra = [f"k{self.kernel[0]}x{self.kernel[1]}", f"block {self.block[0]}x{self.block[1]}"]
        if self.stride != (1, 1):
            extra.append(f"stride {self.stride[0]}")
        if self.groups != 1:
            extra.append(f"groups {self.groups}")
        if self.pool:
            extra.append("pool")
        if self.sign is not None:
            extra.append(f"sign(-{int((self.sign < 0).sum())})")
        if self.residual:
            extra.append(f"+{self.residual}<<{self.residual_shift}")
        if self.relu:
            extra.append("relu")
        if self.clip_lo is not None:
            extra.append(f"clip[{self.clip_lo},{self.clip_hi}]")
        return (f"{super().describe()} e_x={self.e_x} e_w={self.e_w} shift={self.shift} "
                f"[{' '.join(extra)}]")


@dataclass(kw_only=True)
class QMaxPool(QLayer):
    """Max-pool over int8 (nn.MaxPool2d / F.max_pool2d); output exponent = input exponent."""

    kind: ClassVar[str] = "maxpool"
    TUPLES: ClassVar[tuple[str, ...]] = (
        "in_shape", "out_shape", "kernel", "stride", "padding", "dilation",
    )

    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    ceil_mode: bool = False


@dataclass(kw_only=True)
class QRelu(QLayer):
    """Standalone ReLU on int8: max(q, 0); output exponent = input exponent."""

    kind: ClassVar[str] = "relu"


@dataclass(kw_only=True)
class QAdd(QLayer):
    """Standalone add of two int8 tensors: both shifted left to e_a = max(e_x, e_r), added in
    int32, requantized by shift = e_a - e_y [-> ReLU]."""

    kind: ClassVar[str] = "add"

    e_x: int
    e_r: int
    e_a: int
    shift: int
    relu: bool = False
    clip_lo: Optional[int] = None
    clip_hi: Optional[int] = None


@dataclass(kw_only=True)
class QAvgPool(QLayer):
    """Average pool over int8 (nn.AvgPool2d between convs): int32 sum of each window (zero
    padding counted), divided by `divisor` = kh * kw rounding halves up
    (floor((2 sum + d) / 2d)); output exponent = input exponent. Runs on the host."""

    kind: ClassVar[str] = "avgpool"
    TUPLES: ClassVar[tuple[str, ...]] = ("in_shape", "out_shape", "kernel", "stride", "padding")

    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    divisor: int


LAYER_KINDS: dict[str, type[QLayer]] = {c.kind: c for c in (QConv, QMaxPool, QRelu, QAdd,
                                                            QAvgPool)}

HOST_KINDS = (
    "adaptive_avg_pool2d", "avg_pool2d", "clamp", "flatten", "linear", "relu", "softmax",
    "log_softmax", "mean",
)


@dataclass(kw_only=True)
class HostOp:
    """One float32 op of the host head. params are JSON values; weights float32 arrays.

    kinds and params: adaptive_avg_pool2d {output_size}; avg_pool2d {kernel, stride, padding,
    ceil_mode, count_include_pad, divisor_override}; flatten {start_dim, end_dim};
    linear {} with weights {weight (out, in), bias (out,) or absent}; relu {};
    softmax / log_softmax {dim}; mean {dim, keepdim}.
    """

    name: str
    kind: str
    params: dict = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in HOST_KINDS:
            raise BadInputError(f"host op {self.name!r}: unknown kind {self.kind!r}")


@dataclass(kw_only=True)
class QuantizedNet:
    """The int8 network: input quantization, integer layers, boundary, float host head.

    input_shape / boundary_shape are per image (C, H, W) or (F,) ; exponents maps every tensor
    name (input, each layer's output) to its exponent; max_abs holds the calibration maxima of
    the calibrated tensors (float); info: free-form provenance (model class, calibration size).
    """

    FORMAT: ClassVar[str] = "bctvm-qnet"
    VERSION: ClassVar[int] = 1

    input_name: str = "input"
    input_shape: Shape
    input_exponent: int
    layers: list[QLayer]
    boundary: str
    boundary_exponent: int
    boundary_shape: Shape
    head: list[HostOp] = field(default_factory=list)
    exponents: dict[str, int] = field(default_factory=dict)
    max_abs: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def layer(self, name: str) -> QLayer:
        """The layer called `name` (BadInputError listing a few names otherwise)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        some = ", ".join(layer.name for layer in self.layers[:6])
        raise BadInputError(f"quantized net has no layer {name!r} (layers: {some}, ...)")

    @property
    def conv_layers(self) -> list[QConv]:
        return [layer for layer in self.layers if isinstance(layer, QConv)]

    def summary(self) -> str:
        """Multi-line text: input, every layer, boundary and host head."""
        lines = [f"input {self.input_name} {self.input_shape} e={self.input_exponent}"]
        lines += [layer.describe() for layer in self.layers]
        lines.append(f"boundary {self.boundary} {self.boundary_shape} e={self.boundary_exponent}")
        lines += [f"host {op.name:<24} {op.kind} {op.params}" for op in self.head]
        return "\n".join(lines)

    def save(self, path) -> tuple:
        """Write path.json + path.npz (see serialize.save_qnet); returns both paths."""
        from .serialize import save_qnet

        return save_qnet(self, path)

    @classmethod
    def load(cls, path) -> "QuantizedNet":
        """Read a QuantizedNet written by save (path with or without .json/.npz)."""
        from .serialize import load_qnet

        return load_qnet(path)


def layer_fields(layer: QLayer) -> list[str]:
    """Names of the dataclass fields of a layer (arrays included)."""
    return [f.name for f in fields(layer)]
