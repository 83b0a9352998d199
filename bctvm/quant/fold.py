"""Fold an eval-mode BatchNorm2d (and the conv bias) into the preceding conv, in float64.

BN(z) = a * z + c per output channel, a = gamma / sqrt(var + eps), c = beta - a * mean.
- No pool between conv and BN: w' = a * w, b' = a * b + c.
- Stride-2 block conv (conv -> 2x2 max-pool -> BN): max-pool commutes only with a positive
  scale, so with s = sign(a) (+1 where a >= 0):
      a * maxpool(conv(x) + b) + c  ==  s * maxpool(|a| * (conv(x) + b) + s * c)
  hence w' = |a| * w, b' = |a| * b + s * c, and the per-channel sign s is applied after the
  pool. When every a >= 0 this is the ordinary fold and no sign is carried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from bctvm.errors import UnsupportedOpError

__all__ = ["FoldedConv", "fold_conv_bn", "bn_scale_shift"]


@dataclass
class FoldedConv:
    """Float64 folded parameters: weight OIHW, bias (O,), sign (O,) of +-1 or None."""

    weight: torch.Tensor
    bias: torch.Tensor
    sign: Optional[torch.Tensor] = None


def bn_scale_shift(bn: nn.BatchNorm2d, name: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """(a, c) in float64 with BN(z) = a * z + c per channel (eval mode, running statistics)."""
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedOpError(
            f"BatchNorm2d {name!r}: needs running statistics (track_running_stats=True) "
            "to be folded"
        )
    var = bn.running_var.detach().to(torch.float64)
    mean = bn.running_mean.detach().to(torch.float64)
    a = 1.0 / torch.sqrt(var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight.detach().to(torch.float64)
    c = -a * mean
    if bn.bias is not None:
        c = c + bn.bias.detach().to(torch.float64)
    return a, c


def fold_conv_bn(
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    bn: Optional[nn.BatchNorm2d],
    pool: bool,
    name: str = "",
) -> FoldedConv:
    """Folded float64 (weight, bias, sign) of conv [-> pool] [-> bn]; see the module docstring."""
    w = weight.detach().to(torch.float64)
    out_channels = w.shape[0]
    b = (bias.detach().to(torch.float64) if bias is not None
         else torch.zeros(out_channels, dtype=torch.float64))
    if bn is None:
        return FoldedConv(w.clone(), b.clone(), None)
    if bn.num_features != out_channels:
        raise UnsupportedOpError(
            f"BatchNorm2d {name!r}: {bn.num_features} features after a conv with "
            f"{out_channels} output channels"
        )
    a, c = bn_scale_shift(bn, name)
    if not pool or bool((a >= 0).all()):
        return FoldedConv(w * a.view(-1, 1, 1, 1), a * b + c, None)
    s = torch.where(a >= 0, 1.0, -1.0).to(torch.float64)
    mag = a.abs()
    return FoldedConv(w * mag.view(-1, 1, 1, 1), mag * b + s * c, s)
