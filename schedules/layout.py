"""NumPy packing between NCHW/OIHW and the VTA tile layouts of a board (DRAM images).

- activations: NCHW int8 -> (N/b, C/c, H, W, b, c) ("NCHW{b}n{c}c"), channels zero-padded;
- weights: OIHW int8 -> (O/o, I/i/G', kh, kw, o, i) ("OIHW{o}o{i}i"; grouped convs keep per
  output tile only the G'-th share of input tiles it reads);
- per-channel int32 vectors (bias, sign): (O,) -> (O/o, b, o), repeated over the batch lanes
  so that one tile is one accumulator element; a layer's bias always through `pack_bias`,
  which adds the layer's folded rounding constant (LayerSpec.bias_offset).
b, c, o, i are BATCH, BLOCK_IN, BLOCK_OUT, BLOCK_IN of the board.
"""

from __future__ import annotations

import numpy as np

from boards import BoardConfig
from bctvm.errors import BadInputError


def _tiles(n: int, t: int) -> int:
    return -(-n // t)


def pack_activation(x: np.ndarray, cfg: BoardConfig, lanes: int | None = None) -> np.ndarray:
    """NCHW -> (N/b, C/c, H, W, b, c) with c = `lanes` (default BLOCK_IN), zero-padded."""
    if x.ndim != 4:
        raise BadInputError(f"pack_activation expects NCHW, got shape {x.shape}")
    c_l = lanes or cfg.block_in
    n, c, h, w = x.shape
    if n % cfg.batch:
        raise BadInputError(f"batch {n} is not a multiple of BATCH {cfg.batch}")
    ct = _tiles(c, c_l)
    xp = np.zeros((n, ct * c_l, h, w), dtype=x.dtype)
    xp[:, :c] = x
    return np.ascontiguousarray(
        xp.reshape(n // cfg.batch, cfg.batch, ct, c_l, h, w).transpose(0, 2, 4, 5, 1, 3))


def unpack_activation(xp: np.ndarray, channels: int) -> np.ndarray:
    """(N/b, C/c, H, W, b, c) -> NCHW with the first `channels` channels."""
    nb, ct, h, w, b, c = xp.shape
    x = xp.transpose(0, 4, 1, 5, 2, 3).reshape(nb * b, ct * c, h, w)
    return np.ascontiguousarray(x[:, :channels])


def group_mask(out_ch: int, in_ch: int, groups: int) -> np.ndarray:
    """Boolean (O, C) mask: True where output channel o may read input channel c."""
    og, cg = out_ch // groups, in_ch // groups
    return (np.arange(out_ch)[:, None] // og) == (np.arange(in_ch)[None, :] // cg)


def tile_packed_groups(out_ch: int, in_ch: int, groups: int, bo: int, bi: int) -> int:
    """G' for output / input tiles of `bo` / `bi` channels: the largest number of equal
    (output-tile range, input-tile range) pairs such that every output tile reads only input
    tiles of its own pair (1 for a dense conv)."""
    to, ti = _tiles(out_ch, bo), _tiles(in_ch, bi)
    if groups == 1:
        return 1
    mask = np.zeros((to * bo, ti * bi), dtype=bool)
    mask[:out_ch, :in_ch] = group_mask(out_ch, in_ch, groups)
    used = mask.reshape(to, bo, ti, bi).any(axis=(1, 3))
    best = 1
    for d in range(1, min(to, ti) + 1):
        if to % d or ti % d:
            continue
        own = (np.arange(to)[:, None] // (to // d)) == (np.arange(ti)[None, :] // (ti // d))
        if not (used & ~own).any():
            best = d
    return best


def packed_groups(out_ch: int, in_ch: int, groups: int, cfg: BoardConfig) -> int:
    """G' of a conv on a board (tile_packed_groups with BLOCK_OUT x BLOCK_IN tiles); the one
    rule for the graph passes (relay_passes.pack_layout) and the schedules."""
    return tile_packed_groups(out_ch, in_ch, groups, cfg.block_out, cfg.block_in)


def tile_pack_weight(w: np.ndarray, groups: int, bo: int, bi: int) -> np.ndarray:
    """OIHW (grouped: O x C/groups x kh x kw) -> (O/bo, I/bi/G', kh, kw, bo, bi): the
    block-diagonal full weight, zero-padded to whole tiles, keeping for output tile t only the
    input tiles of its packed group (G' = tile_packed_groups)."""
    if w.ndim != 4:
        raise BadInputError(f"pack_weight expects OIHW, got shape {w.shape}")
    o, cg, kh, kw = w.shape
    c = cg * groups
    ot, it = _tiles(o, bo), _tiles(c, bi)
    full = np.zeros((ot * bo, it * bi, kh, kw), dtype=w.dtype)
    og = o // groups
    for g in range(groups):
        full[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = w[g * og:(g + 1) * og]
    tiles = full.reshape(ot, bo, it, bi, kh, kw).transpose(0, 2, 4, 5, 1, 3)
    gp = tile_packed_groups(o, c, groups, bo, bi)
    tig = it // gp
    out = np.stack([tiles[t, (t // (ot // gp)) * tig:(t // (ot // gp) + 1) * tig] for t in range(ot)])
    return np.ascontiguousarray(out)


def pack_weight(w: np.ndarray, cfg: BoardConfig, groups: int = 1) -> np.ndarray:
    """OIHW int8 -> the board's OIHW{o}o{i}i tiles (tile_pack_weight with BLOCK_OUT x
    BLOCK_IN); the one weight packing for the graph passes and the programs."""
    return tile_pack_weight(w, groups, cfg.block_out, cfg.block_in)


def pack_channel_vector(v: np.ndarray, cfg: BoardConfig, fill: int = 0) -> np.ndarray:
    """(O,) int32 -> (O/o, BATCH, o) int32 (one accumulator element per tile); pad = `fill`."""
    v = np.asarray(v).reshape(-1)
    bo = cfg.block_out
    ot = _tiles(v.size, bo)
    vp = np.full(ot * bo, fill, dtype=np.int32)
    vp[: v.size] = v
    return np.ascontiguousarray(
        np.broadcast_to(vp.reshape(ot, 1, bo), (ot, cfg.batch, bo)).astype(np.int32))


def wrap_int32(v) -> np.ndarray:
    """int64 values wrapped to int32 (two's complement, like the accumulator)."""
    v = np.asarray(v, dtype=np.int64)
    return (((v + (1 << 31)) % (1 << 32)) - (1 << 31)).astype(np.int32)


def bias_for_program(bias: np.ndarray, spec) -> np.ndarray:
    """(O,) int32 bias as the programs (and the TE compute) use it: b + spec.bias_offset,
    wrapped to int32 (the requant rounding constant folded in, LayerSpec.rounding_in_bias)."""
    b = np.asarray(bias).reshape(-1).astype(np.int64)
    return wrap_int32(b + spec.bias_offset)


def pack_bias(bias: np.ndarray, spec, cfg: BoardConfig) -> np.ndarray:
    """A layer's (O,) int32 bias -> (O/o, BATCH, o) int32 with its rounding constant folded in
    (bias_for_program); padded channels stay 0. The one way to pack a bias for a program."""
    return pack_channel_vector(bias_for_program(bias, spec), cfg)


def identity_weight(cfg: BoardConfig) -> np.ndarray:
    """The (BLOCK_OUT, BLOCK_IN) int8 identity weight tile: a GEMM with it copies an input
    tile into the accumulator as int32 (residuals read from the input buffer)."""
    return np.eye(cfg.block_out, cfg.block_in, dtype=np.int8)
