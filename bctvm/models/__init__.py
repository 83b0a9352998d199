"""Block-convolution models: the BlockConv2d layer, its functional form, the zoo, a converter.

    from bctvm.models import BlockConv2d, get_model, convert, count_macs
    model = get_model("block_resnet18", block_size=28)          # fixed 28x28 blocks
    model = convert(plain_model, block_size=2, type="hierarchical")

Layouts: activations NCHW, weights OIHW. See block_conv.py for the exact semantics.
"""

from .block_conv import (
    BLOCK_TYPES,
    PADDING_MODES,
    BlockConv2d,
    block_conv2d,
    blockify,
    normalize_block_type,
    normalize_padding_mode,
    resolve_block,
    unblockify,
)
from .convert import block_conv_from_conv2d, convert, set_layer_names
from .macs import count_macs, layer_macs
from .mobilenet import BlockMobileNetV1, block_mobilenet
from .resnet import BlockResNet, block_resnet18, block_resnet34, block_resnet50
from .settings import BlockSettings
from .vgg import BlockVGG, block_vgg16, block_vgg16_bn
from .zoo import ZOO, default_block_size, get_model

__all__ = [
    "BLOCK_TYPES",
    "PADDING_MODES",
    "BlockConv2d",
    "BlockSettings",
    "block_conv2d",
    "blockify",
    "unblockify",
    "resolve_block",
    "normalize_block_type",
    "normalize_padding_mode",
    "convert",
    "block_conv_from_conv2d",
    "set_layer_names",
    "count_macs",
    "layer_macs",
    "BlockResNet",
    "BlockVGG",
    "BlockMobileNetV1",
    "block_resnet18",
    "block_resnet34",
    "block_resnet50",
    "block_vgg16",
    "block_vgg16_bn",
    "block_mobilenet",
    "ZOO",
    "get_model",
    "default_block_size",
]
