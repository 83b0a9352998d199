"""The model zoo: name -> factory, and `get_model(name, **kw)` with a clear error.

Every factory has the signature (block_size=<default>, type='fixed', padding_mode='constant',
num_classes=1000, **kw) and returns an nn.Module whose BlockConv2d layers carry their
qualified names.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

from torch import nn

from bctvm.errors import BadInputError

from .mobilenet import block_mobilenet
from .resnet import block_resnet18, block_resnet34, block_resnet50
from .vgg import block_vgg16, block_vgg16_bn

MAX_INPUT_VALUES = 1 << 28  # N*C*H*W of --input-shape (1 GiB of float32)

__all__ = ["ZOO", "get_model", "default_block_size", "describe_zoo", "parse_input_shape"]

ZOO: dict[str, Callable[..., nn.Module]] = {
    "block_resnet18": block_resnet18,
    "block_resnet34": block_resnet34,
    "block_resnet50": block_resnet50,
    "block_vgg16": block_vgg16,
    "block_vgg16_bn": block_vgg16_bn,
    "block_mobilenet": block_mobilenet,
}


def _factory(name: str) -> Callable[..., nn.Module]:
    try:
        return ZOO[name]
    except KeyError:
        raise BadInputError(
            f"unknown model {name!r}; known models: {', '.join(sorted(ZOO))}"
        ) from None


def default_block_size(name: str) -> int:
    """The default block size (fixed, pixels) of a zoo model."""
    return inspect.signature(_factory(name)).parameters["block_size"].default


def get_model(name: str, **kw) -> nn.Module:
    """Build zoo model `name` with factory keywords `kw` (block_size, type, padding_mode, ...)."""
    factory = _factory(name)
    try:
        return factory(**kw)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise BadInputError(f"model {name!r}: {err}") from None
        raise


def parse_input_shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' -> (1, 3, 224, 224); BadInputError naming the option otherwise."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) <= 0:
        raise BadInputError(f"--input-shape must be N,C,H,W positive ints, got {text!r}")
    if math.prod(shape) > MAX_INPUT_VALUES:
        raise BadInputError(f"--input-shape {text}: {math.prod(shape):,} values, more than "
                            f"the {MAX_INPUT_VALUES:,} bctvm compiles (too large to allocate)")
    return shape


def describe_zoo(input_shape: tuple[int, ...] | None = None, **kw) -> list[str]:
    """One line per zoo model: name, default block size, parameters and, when `input_shape` is
    given, conv + Linear MACs at that shape (built with factory keywords `kw`)."""
    from tqdm import tqdm

    from .macs import count_macs

    lines = []
    names = sorted(ZOO)
    for name in tqdm(names, desc="models", disable=input_shape is None, leave=False):
        model = get_model(name, **kw)
        params = sum(p.numel() for p in model.parameters())
        block = kw.get("block_size", default_block_size(name))
        line = f"{name:16s} block {str(block):>4s}  {params / 1e6:7.2f} M params"
        if input_shape is not None:
            line += f"  {count_macs(model, input_shape) / 1e9:7.3f} G MACs at {input_shape}"
        lines.append(line)
    return lines
