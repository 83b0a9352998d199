"""Fold a standalone 2x2/stride-2 max-pool into the conv before it (QConv.pool on the int32
accumulator), so the pair runs as one VTA block conv instead of conv -> DRAM -> host pool.

    qnet2, folded = fold_max_pools(qnet)      # folded: {pool layer name: conv layer name}

Why it is exact: the epilogue of a conv without sign and residual, requant_clip_relu(acc)
(rounding arithmetic right shift, clip to int8, optional ReLU), is a monotone non-decreasing
integer function, so max commutes with it: pool(requant(acc)) == requant(pool(acc)), which is
what QConv.pool computes. A max-pool keeps the exponent (QMaxPool.e_y == QConv.e_y).

A pair folds when all hold:
- QMaxPool: kernel 2x2, stride 2, padding 0, dilation 1, ceil_mode False;
- its input is the output of a QConv with stride 1, no pool, no sign (a sign is applied after
  the pool and a negative one does not commute with max), no residual;
- that conv output is read by the pool only (not by another layer, not the boundary);
- the conv-output block (bh + 2 ph - dh (kh - 1)) x (bw + 2 pw - dw (kw - 1)) has even sides,
  so the pool windows stay inside the blocks (the VTA pools each block on chip).
The merged layer is a copy of the QConv with pool=True, out_shape pooled and output = the
pool's output tensor, at the conv's position; the QMaxPool is removed, the conv's pre-pool
tensor leaves `exponents` / `max_abs`. Every other layer is unchanged.
"""

from __future__ import annotations

import dataclasses

from bctvm.errors import BadInputError

from .qnet import QConv, QMaxPool, QuantizedNet

__all__ = ["fold_max_pools", "foldable_pool"]


def _conv_block_even(conv: QConv) -> bool:
    """True when the per-block conv output has even sides (2x2 pool windows inside blocks)."""
    (bh, bw), (ph, pw) = conv.block, conv.padding
    (kh, kw), (dh, dw) = conv.kernel, conv.dilation
    oh = bh + 2 * ph - dh * (kh - 1)
    ow = bw + 2 * pw - dw * (kw - 1)
    return oh > 0 and ow > 0 and oh % 2 == 0 and ow % 2 == 0


def foldable_pool(qnet: QuantizedNet, pool) -> QConv | None:
    """The QConv that `pool` (a layer of qnet) folds into, or None (see module docstring)."""
    if not isinstance(pool, QMaxPool):
        return None
    if (tuple(pool.kernel), tuple(pool.stride), tuple(pool.padding), tuple(pool.dilation),
            bool(pool.ceil_mode)) != ((2, 2), (2, 2), (0, 0), (1, 1), False):
        return None
    src = pool.inputs[0]
    producers = [layer for layer in qnet.layers if layer.output == src]
    if len(producers) != 1 or not isinstance(producers[0], QConv):
        return None
    conv = producers[0]
    if conv.pool or conv.sign is not None or conv.residual is not None or \
            tuple(conv.stride) != (1, 1) or not _conv_block_even(conv):
        return None
    readers = [layer for layer in qnet.layers if src in layer.inputs]
    if readers != [pool] or qnet.boundary == src:
        return None
    if pool.e_y != conv.e_y:
        raise BadInputError(f"layer '{pool.name}': max-pool exponent {pool.e_y} differs from "
                            f"its input's ({conv.name}: {conv.e_y}); a max-pool keeps the scale")
    return conv


def fold_max_pools(qnet: QuantizedNet) -> tuple[QuantizedNet, dict[str, str]]:
    """(a new QuantizedNet with every foldable conv + 2x2/2 max-pool pair merged into one QConv
    with pool=True, {pool layer name: conv layer name}). The input net is not modified."""
    merged: dict[str, QConv] = {}  # conv name -> merged copy
    folded: dict[str, str] = {}
    for layer in qnet.layers:
        conv = foldable_pool(qnet, layer)
        if conv is None:
            continue
        merged[conv.name] = dataclasses.replace(
            conv, pool=True, output=layer.output, out_shape=tuple(layer.out_shape),
            node=layer.node or conv.node, sources={**conv.sources, "pool": layer.name})
        folded[layer.name] = conv.name
    if not folded:
        return dataclasses.replace(qnet, layers=list(qnet.layers)), {}
    gone = {qnet.layer(c).output for c in folded.values()}
    layers = [merged.get(layer.name, layer) for layer in qnet.layers
              if layer.name not in folded]
    info = {**qnet.info, "folded_max_pools": dict(folded)}
    return dataclasses.replace(
        qnet, layers=layers, info=info,
        exponents={k: v for k, v in qnet.exponents.items() if k not in gone},
        max_abs={k: v for k, v in qnet.max_abs.items() if k not in gone}), folded
