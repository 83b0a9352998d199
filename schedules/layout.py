"""NumPy packing between NCHW/OIHW and the VTA tile layouts of a board (DRAM images).

- activations: NCHW int8 -> (N/b, C/c, H, W, b, c) ("NCHW{b}n{c}c"), channels zero-padded;
- weights: OIHW int8 -> (O/o, I/i, kh, kw, o, i) ("OIHW{o}o{i}i");
- per-channel int32 vectors (bias, sign): (O,) -> (O/o, b, o), repeated over the batch lanes
  so that one tile is one accumulator element.
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


def pack_weight(w: np.ndarray, cfg: BoardConfig) -> np.ndarray:
    """OIHW -> (O/o, I/i, kh, kw, o, i), zero-padded to whole tiles."""
    if w.ndim != 4:
        raise BadInputError(f"pack_weight expects OIHW, got shape {w.shape}")
    o, i, kh, kw = w.shape
    bo, bi = cfg.block_out, cfg.block_in
    ot, it = _tiles(o, bo), _tiles(i, bi)
    wp = np.zeros((ot * bo, it * bi, kh, kw), dtype=w.dtype)
    wp[:o, :i] = w
    return np.ascontiguousarray(wp.reshape(ot, bo, it, bi, kh, kw).transpose(0, 2, 4, 5, 1, 3))


def pack_channel_vector(v: np.ndarray, cfg: BoardConfig, fill: int = 0) -> np.ndarray:
    """(O,) int32 -> (O/o, BATCH, o) int32 (one accumulator element per tile); pad = `fill`."""
    v = np.asarray(v).reshape(-1)
    bo = cfg.block_out
    ot = _tiles(v.size, bo)
    vp = np.full(ot * bo, fill, dtype=np.int32)
    vp[: v.size] = v
    return np.ascontiguousarray(
        np.broadcast_to(vp.reshape(ot, 1, bo), (ot, cfg.batch, bo)).astype(np.int32))
