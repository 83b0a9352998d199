"""Block convolution: the layer contract of bctvm (design.md, "Block convolution semantics").

For an input N x C x H x W and a block size (bh, bw) the map is cut into (H/bh) x (W/bw)
blocks; each block is padded on its own (constant = zeros, replicate or reflect), convolved
with stride 1 and padding 0, and the blocks are put back in place. A stride-2 layer is the
stride-1 block conv followed by a 2x2 max-pool with stride 2 (floor).

Everything here is written so `torch.export` traces it into one uniform chain:
    reshape -> permute -> reshape -> pad -> conv2d -> reshape -> permute -> reshape [-> max_pool2d]
or, when one block covers the whole map (single-block fallback):
    pad -> conv2d [-> max_pool2d]
Shapes are Python ints at trace time; nothing branches on tensor values.

Layouts: activations NCHW, weights OIHW (as nn.Conv2d). Blocked tensors are
(N * nh * nw, C, bh, bw) with the blocks in row-major order (block row, then block column).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from bctvm.errors import BadInputError, BlockShapeError, UnsupportedOpError

__all__ = [
    "BlockConv2d",
    "block_conv2d",
    "blockify",
    "unblockify",
    "resolve_block",
    "normalize_block_type",
    "normalize_padding_mode",
    "PADDING_MODES",
    "BLOCK_TYPES",
]

IntPair = Union[int, Sequence[int]]

BLOCK_TYPES = ("fixed", "hierarchical")
PADDING_MODES = ("constant", "replicate", "reflect")
_MODE_ALIASES = {"zeros": "constant", "zero": "constant", "edge": "replicate"}


def _where(layer: str | None) -> str:
    return f"layer {layer!r}" if layer else "block conv layer"


def _pair(value, field: str, layer: str | None = None) -> tuple[int, int]:
    """(a, b) from an int or a 2-sequence of ints; BadInputError naming `field` otherwise."""
    if isinstance(value, bool):
        raise BadInputError(f"{_where(layer)}: {field} must be an int or a pair, got {value!r}")
    if isinstance(value, int):
        return value, value
    try:
        items = tuple(value)
    except TypeError:
        raise BadInputError(
            f"{_where(layer)}: {field} must be an int or a pair, got {value!r}"
        ) from None
    if len(items) == 1:
        items = items * 2
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise BadInputError(f"{_where(layer)}: {field} must be an int or a pair, got {value!r}")
    return int(items[0]), int(items[1])


def normalize_block_type(type: int | str) -> str:  # noqa: A002 - the seed's name
    """'fixed' or 'hierarchical' from the seed's 0 / 1 or either name (any case)."""
    if isinstance(type, bool):
        raise BadInputError(f"block type must be 0/'fixed' or 1/'hierarchical', got {type!r}")
    if isinstance(type, int) and type in (0, 1):
        return BLOCK_TYPES[type]
    if isinstance(type, str):
        name = type.strip().lower()
        if name in BLOCK_TYPES:
            return name
        if name in ("0", "1"):
            return BLOCK_TYPES[int(name)]
    raise BadInputError(f"block type must be 0/'fixed' or 1/'hierarchical', got {type!r}")


def normalize_padding_mode(mode: str) -> str:
    """'constant', 'replicate' or 'reflect' (also accepts nn.Conv2d's 'zeros')."""
    name = str(mode).strip().lower()
    name = _MODE_ALIASES.get(name, name)
    if name not in PADDING_MODES:
        raise BadInputError(
            f"padding mode must be one of {', '.join(PADDING_MODES)} (or 'zeros'), got {mode!r}"
        )
    return name


def resolve_block(
    h: int,
    w: int,
    block_size: IntPair,
    type: int | str = "fixed",  # noqa: A002 - the seed's name
    layer: str | None = None,
) -> tuple[int, int]:
    """Block size (bh, bw) in pixels for an H x W map.

    fixed: block_size is (bh, bw); hierarchical: block_size is the number of blocks per side
    (nh, nw) and bh = H / nh when it divides, else the whole side. 0 means the whole side;
    the result is clipped to the map. Raises BlockShapeError (naming `layer`, the map shape and
    the block size) when a block side does not divide its map side.
    """
    kind = normalize_block_type(type)
    sh, sw = _pair(block_size, "block_size", layer)
    if sh < 0 or sw < 0:
        raise BadInputError(f"{_where(layer)}: block_size must be >= 0, got {block_size!r}")
    if h <= 0 or w <= 0:
        raise BlockShapeError(f"{_where(layer)}: feature map {h}x{w} is empty")
    if kind == "fixed":
        bh = h if sh == 0 else min(sh, h)
        bw = w if sw == 0 else min(sw, w)
    else:
        bh = h // sh if sh and h % sh == 0 else h
        bw = w // sw if sw and w % sw == 0 else w
    if h % bh or w % bw:
        given = kind if (bh, bw) == (sh, sw) else f"{kind} {sh}x{sw}"
        raise BlockShapeError(
            f"{_where(layer)}: block size {bh}x{bw} ({given}) does not divide "
            f"the {h}x{w} feature map"
        )
    return bh, bw


def blockify(x: torch.Tensor, bh: int, bw: int) -> torch.Tensor:
    """(N, C, H, W) -> (N * nh * nw, C, bh, bw), blocks row-major; H % bh == W % bw == 0."""
    n, c, h, w = x.shape
    nh, nw = h // bh, w // bw
    y = x.reshape(n, c, nh, bh, nw, bw)
    y = y.permute(0, 2, 4, 1, 3, 5)
    return y.reshape(n * nh * nw, c, bh, bw)


def unblockify(y: torch.Tensor, n: int, nh: int, nw: int) -> torch.Tensor:
    """(N * nh * nw, C, bh, bw) -> (N, C, nh * bh, nw * bw); the inverse of blockify."""
    _, c, bh, bw = y.shape
    z = y.reshape(n, nh, nw, c, bh, bw)
    z = z.permute(0, 3, 1, 4, 2, 5)
    return z.reshape(n, c, nh * bh, nw * bw)


def _check_block_fits(
    block: tuple[int, int],
    kernel: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    mode: str,
    layer: str | None,
) -> None:
    """Errors for blocks the padded conv cannot handle (reflect too wide, empty output)."""
    for side, b, k, p, d in zip(("height", "width"), block, kernel, padding, dilation):
        if mode == "reflect" and p >= b:
            raise BlockShapeError(
                f"{_where(layer)}: reflect padding {p} needs blocks larger than {p} "
                f"(block {side} is {b})"
            )
        if b + 2 * p - d * (k - 1) < 1:
            raise BlockShapeError(
                f"{_where(layer)}: block {side} {b} with padding {p} is smaller than the "
                f"dilated kernel {d * (k - 1) + 1}"
            )


def block_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    block: IntPair,
    padding: IntPair,
    padding_mode: str,
    dilation: IntPair = 1,
    groups: int = 1,
    pool: bool = False,
    layer: str | None = None,
) -> torch.Tensor:
    """Functional block convolution on an NCHW tensor with an OIHW weight.

    `block` is the resolved block size (bh, bw) in pixels (see resolve_block); each block is
    padded with `padding` (int or (ph, pw)) in `padding_mode`, convolved with stride 1 and
    padding 0, and put back. `pool=True` adds the 2x2 / stride 2 max-pool of a stride-2 layer.
    Works on any floating dtype (the integer reference runs it on float64 holding integers).
    """
    if x.dim() != 4:
        raise BadInputError(f"{_where(layer)}: expects an NCHW tensor, got shape {tuple(x.shape)}")
    n, c, h, w = (int(s) for s in x.shape)
    if c != weight.shape[1] * groups:
        raise BadInputError(
            f"{_where(layer)}: input has {c} channels, weight {tuple(weight.shape)} with "
            f"groups={groups} expects {weight.shape[1] * groups}"
        )
    bh, bw = _pair(block, "block", layer)
    if bh <= 0 or bw <= 0 or h % bh or w % bw:
        raise BlockShapeError(
            f"{_where(layer)}: block {bh}x{bw} does not divide the {h}x{w} feature map"
        )
    ph, pw = _pair(padding, "padding", layer)
    dh, dw = _pair(dilation, "dilation", layer)
    mode = normalize_padding_mode(padding_mode)
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    _check_block_fits((bh, bw), kernel, (ph, pw), (dh, dw), mode, layer)

    single = bh == h and bw == w
    y = x if single else blockify(x, bh, bw)
    if mode == "constant":
        y = F.pad(y, (pw, pw, ph, ph), mode="constant", value=0.0)
    else:
        y = F.pad(y, (pw, pw, ph, ph), mode=mode)
    y = F.conv2d(y, weight, bias, stride=1, padding=0, dilation=(dh, dw), groups=groups)
    if not single:
        y = unblockify(y, n, h // bh, w // bw)
    if pool:
        y = F.max_pool2d(y, kernel_size=2, stride=2)
    return y


class BlockConv2d(nn.Module):
    """A Conv2d whose convolution runs block by block (bctvm's layer contract).

    Same parameters and state-dict keys as nn.Conv2d (`weight` OIHW, `bias` O), so code ports by
    changing the import. `type` 0/'fixed': block_size is the block size (bh, bw) in pixels;
    1/'hierarchical': block_size is the number of blocks per side. 0 means the whole side.
    stride 1 or 2 only (2 = stride-1 block conv + 2x2 max-pool). `layer_name` is the qualified
    module name used in error messages (filled by the zoo and `convert`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        block_size: IntPair,
        type: int | str = 0,  # noqa: A002 - the seed's name
        stride: IntPair = 1,
        padding: IntPair | str = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "constant",
        *,
        layer_name: str = "",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.layer_name = layer_name
        where = layer_name or None
        if in_channels <= 0 or out_channels <= 0 or groups <= 0:
            raise BadInputError(
                f"{_where(where)}: channels and groups must be positive "
                f"(in={in_channels}, out={out_channels}, groups={groups})"
            )
        if in_channels % groups or out_channels % groups:
            raise BadInputError(
                f"{_where(where)}: groups={groups} must divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size", where)
        self.dilation = _pair(dilation, "dilation", where)
        if min(self.kernel_size) <= 0 or min(self.dilation) <= 0:
            raise BadInputError(f"{_where(where)}: kernel_size and dilation must be positive")
        self.stride = _pair(stride, "stride", where)
        if self.stride not in ((1, 1), (2, 2)):
            raise UnsupportedOpError(
                f"{_where(where)}: block conv supports stride 1 or 2 (2 = conv + 2x2 max-pool), "
                f"got stride {self.stride}"
            )
        self.padding = self._resolve_padding(padding, where)
        self.groups = groups
        self.padding_mode = normalize_padding_mode(padding_mode)
        self.block_type = normalize_block_type(type)
        self.block_size = _pair(block_size, "block_size", where)
        if min(self.block_size) < 0:
            raise BadInputError(f"{_where(where)}: block_size must be >= 0, got {block_size!r}")
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _resolve_padding(self, padding: IntPair | str, where: str | None) -> tuple[int, int]:
        """(ph, pw) from an int, a pair, or nn.Conv2d's 'valid' / 'same' (symmetric only)."""
        if isinstance(padding, str):
            if padding == "valid":
                return 0, 0
            if padding == "same":
                totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
                if any(t % 2 for t in totals):
                    raise UnsupportedOpError(
                        f"{_where(where)}: padding='same' with kernel {self.kernel_size} and "
                        f"dilation {self.dilation} would pad asymmetrically"
                    )
                return totals[0] // 2, totals[1] // 2
            raise BadInputError(f"{_where(where)}: padding must be an int, a pair, 'valid' or "
                                f"'same', got {padding!r}")
        ph, pw = _pair(padding, "padding", where)
        if ph < 0 or pw < 0:
            raise BadInputError(f"{_where(where)}: padding must be >= 0, got {padding!r}")
        return ph, pw

    def reset_parameters(self) -> None:
        """nn.Conv2d's default initialisation (Kaiming-uniform weight, uniform bias)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def type(self) -> str:
        """The blocking type, 'fixed' or 'hierarchical' (the seed's attribute name)."""
        return self.block_type

    @property
    def pool(self) -> bool:
        """True for a stride-2 layer (stride-1 block conv followed by a 2x2 max-pool)."""
        return self.stride == (2, 2)

    def block_for(self, h: int, w: int) -> tuple[int, int]:
        """Block size (bh, bw) in pixels this layer uses on an H x W input map."""
        return resolve_block(h, w, self.block_size, self.block_type, layer=self.layer_name or None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise BadInputError(
                f"{_where(self.layer_name or None)}: expects an NCHW tensor, "
                f"got shape {tuple(x.shape)}"
            )
        block = self.block_for(int(x.shape[2]), int(x.shape[3]))
        return block_conv2d(
            x,
            self.weight,
            self.bias,
            block,
            self.padding,
            self.padding_mode,
            self.dilation,
            self.groups,
            pool=self.pool,
            layer=self.layer_name or None,
        )

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        size = "x".join(str(s) for s in self.block_size)
        unit = "blocks per side" if self.block_type == "hierarchical" else "px"
        text += f", block={self.block_type} {size} {unit}, padding_mode={self.padding_mode}"
        return text
