"""LayerSpecs and layer parameters from bctvm.quant's integer layers (QConv).

    spec = spec_from_qconv(qconv, batch=N)     # shapes, block, epilogue of one integer conv
    params = params_from_qconv(qconv)          # {"weight", "bias", "sign"} NCHW-side arrays
Only stride-1 convs run on VTA (a stride-2 BlockConv2d is a stride-1 conv + pool); a plain
strided nn.Conv2d raises UnsupportedOpError naming the layer.
"""

from __future__ import annotations

import numpy as np

from bctvm.errors import UnsupportedOpError

from .layer import LayerSpec


def spec_from_qconv(layer, batch: int = 1, name: str | None = None) -> LayerSpec:
    """LayerSpec of a bctvm.quant QConv (in_shape/out_shape are per image, C x H x W)."""
    if tuple(layer.stride) != (1, 1):
        raise UnsupportedOpError(f"layer '{layer.name}': stride {tuple(layer.stride)} convs do "
                                 f"not run on VTA (block convs use stride 1 + 2x2 pool)")
    c, h, w = (int(v) for v in layer.in_shape[-3:])
    ph, pw = (int(v) for v in layer.padding)
    return LayerSpec(
        name or layer.name, c, int(layer.out_shape[-3]), h, w, tuple(int(v) for v in layer.block),
        kernel=tuple(int(v) for v in layer.kernel), padding=(ph, pw, ph, pw),
        padding_mode=layer.padding_mode, pool=bool(layer.pool), relu=bool(layer.relu),
        shift=int(layer.shift), sign=layer.sign is not None,
        residual_shift=int(layer.residual_shift) if layer.residual else None, batch=batch,
        groups=int(layer.groups), dilation=tuple(int(v) for v in layer.dilation),
        clip=None if layer.clip_lo is None else (int(layer.clip_lo), int(layer.clip_hi)))


def params_from_qconv(layer) -> dict:
    """{"weight": int8 OIHW, "bias": int32 (O,), "sign": int32 (O,) or None}."""
    sign = None if layer.sign is None else np.asarray(layer.sign).astype(np.int32)
    return {"weight": np.asarray(layer.weight, np.int8), "bias": np.asarray(layer.bias, np.int32),
            "sign": sign}
