"""Turn a plain CNN into a block-convolution one (the seed's fine-tuning path).

`convert(model, block_size, type, padding_mode)` deep-copies a model and swaps every
nn.Conv2d for a BlockConv2d holding the same weight and bias tensors and the same kernel,
stride, padding, dilation and groups. `set_layer_names(model)` stamps each BlockConv2d with
its qualified module name so shape errors name the layer (e.g. "layer1.0.conv2").
"""

from __future__ import annotations

import copy

from torch import nn

from bctvm.errors import UnsupportedOpError

from .block_conv import BlockConv2d, IntPair, normalize_padding_mode

__all__ = ["convert", "set_layer_names", "block_conv_from_conv2d"]


def set_layer_names(model: nn.Module) -> nn.Module:
    """Set `layer_name` of every BlockConv2d in `model` to its qualified name; returns model."""
    for name, module in model.named_modules():
        if isinstance(module, BlockConv2d):
            module.layer_name = name
    return model


def block_conv_from_conv2d(
    conv: nn.Conv2d,
    block_size: IntPair,
    type: int | str = "fixed",  # noqa: A002 - the seed's name
    padding_mode: str | None = "constant",
    layer_name: str = "",
) -> BlockConv2d:
    """A BlockConv2d sharing `conv`'s weight/bias Parameters and copying its hyper-parameters.

    padding_mode None keeps the conv's own mode ('zeros' -> 'constant'); 'circular' and
    strides other than 1 / 2 raise UnsupportedOpError naming `layer_name`.
    """
    where = f"layer {layer_name!r}" if layer_name else "Conv2d"
    mode = conv.padding_mode if padding_mode is None else padding_mode
    if mode == "circular":
        raise UnsupportedOpError(f"{where}: circular padding has no block-conv form")
    block = BlockConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        block_size,
        type=type,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=normalize_padding_mode(mode),
        layer_name=layer_name,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    block.weight = conv.weight
    block.bias = conv.bias
    block.train(conv.training)
    return block


def convert(
    model: nn.Module,
    block_size: IntPair,
    type: int | str = "fixed",  # noqa: A002 - the seed's name
    padding_mode: str | None = "constant",
) -> nn.Module:
    """Deep copy of `model` with every nn.Conv2d replaced by an equivalent BlockConv2d.

    Weights and biases are the copy's (the input model is left untouched); state-dict keys do
    not change. `padding_mode` applies to every converted layer (None keeps each conv's own).
    Existing BlockConv2d layers are kept as they are. Layer names are set on the result.
    """
    result = copy.deepcopy(model)
    targets = [
        (name, module)
        for name, module in result.named_modules(remove_duplicate=False)
        if isinstance(module, nn.Conv2d) and name
    ]
    replaced: dict[int, BlockConv2d] = {}  # a conv registered twice stays one shared layer
    for name, conv in targets:
        if id(conv) not in replaced:
            replaced[id(conv)] = block_conv_from_conv2d(
                conv, block_size, type, padding_mode, name
            )
        parent_name, _, attr = name.rpartition(".")
        parent = result.get_submodule(parent_name) if parent_name else result
        setattr(parent, attr, replaced[id(conv)])
    if isinstance(result, nn.Conv2d):
        # the model itself is a single conv: return the block conv directly
        result = block_conv_from_conv2d(result, block_size, type, padding_mode, "")
    return set_layer_names(result)
