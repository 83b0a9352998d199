"""Multiply-accumulate counts of convs and Linear layers, measured with one forward pass.

A BlockConv2d counts at its stride-1 block-conv resolution (before the 2x2 max-pool of a
stride-2 layer), i.e. the work the accelerator does. Counts cover the whole input shape
(batch included); pooling, BN, activations and bias adds are not counted.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .block_conv import BlockConv2d

__all__ = ["count_macs", "layer_macs"]


def _conv_macs(out: torch.Tensor, module: nn.Module) -> int:
    kh, kw = module.kernel_size
    per_output = (module.in_channels // module.groups) * kh * kw
    return out.numel() * per_output


def _block_conv_macs(x: torch.Tensor, module: BlockConv2d) -> int:
    n, _, h, w = x.shape
    bh, bw = module.block_for(int(h), int(w))
    (kh, kw), (dh, dw), (ph, pw) = module.kernel_size, module.dilation, module.padding
    oh = bh + 2 * ph - dh * (kh - 1)
    ow = bw + 2 * pw - dw * (kw - 1)
    outputs = n * (h // bh) * (w // bw) * oh * ow * module.out_channels
    return int(outputs) * (module.in_channels // module.groups) * kh * kw


def layer_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs per conv / Linear layer (qualified name -> count) for one forward of `input_shape`.

    Runs the model once in eval mode on zeros (dtype and device of its first parameter) and
    restores its train/eval mode afterwards.
    """
    counts: dict[str, int] = {}
    hooks = []

    def hook_for(name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            if isinstance(module, BlockConv2d):
                macs = _block_conv_macs(inputs[0], module)
            elif isinstance(module, nn.Conv2d):
                macs = _conv_macs(output, module)
            else:  # nn.Linear
                macs = output.numel() * module.in_features
            counts[name] = counts.get(name, 0) + int(macs)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (BlockConv2d, nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook_for(name)))
    first = next(model.parameters(), None)
    dtype = first.dtype if first is not None else torch.float32
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), dtype=dtype, device=device))
    finally:
        model.train(was_training)
        for handle in hooks:
            handle.remove()
    return counts


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Total conv + Linear MACs of one forward pass of `model` on `input_shape` (NCHW)."""
    return sum(layer_macs(model, input_shape).values())
