"""Image -> tensor conversion shared by every dataset here, so that an image read back from
an exported PNG gives exactly the tensor the in-memory dataset gives.

Normalisation: uint8 pixel p -> (p / 255 - 0.5) / 0.5, i.e. float32 in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

NORM_MEAN = 0.5
NORM_STD = 0.5
CHANNEL_MODES = {1: "L", 3: "RGB"}


def check_channels(channels: int) -> str:
    """PIL mode for a channel count (1 -> "L", 3 -> "RGB"); BadInputError otherwise."""
    from bctvm.errors import BadInputError

    if channels not in CHANNEL_MODES:
        raise BadInputError(f"channels must be 1 or 3, got {channels}")
    return CHANNEL_MODES[channels]


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Resize a PIL image to size x size pixels (bilinear); unchanged if already that size."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.BILINEAR)


def pil_to_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    """PIL image -> normalised float32 tensor C x H x W (C = channels, values in [-1, 1])."""
    img = img.convert(check_channels(channels))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[None, :, :]
    else:
        arr = arr.transpose(2, 0, 1)
    return torch.from_numpy((arr - NORM_MEAN) / NORM_STD)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """Normalised C x H x W tensor (C = 1 or 3) -> uint8 PIL image ("L" or "RGB")."""
    arr = (x.detach().cpu().float().numpy() * NORM_STD + NORM_MEAN) * 255.0
    arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0])
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))
