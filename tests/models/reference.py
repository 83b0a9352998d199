"""An independent NumPy block convolution (loops over blocks, np.pad, direct conv) for tests."""

from __future__ import annotations

import numpy as np

NP_PAD_MODE = {"constant": "constant", "replicate": "edge", "reflect": "reflect"}


def direct_conv(xp: np.ndarray, w: np.ndarray, b, dilation: tuple, groups: int) -> np.ndarray:
    """Stride-1, unpadded grouped conv of an already padded NCHW array with an OIHW weight."""
    n, _, h, wd = xp.shape
    o, ig, kh, kw = w.shape
    dh, dw = dilation
    oh, ow = h - dh * (kh - 1), wd - dw * (kw - 1)
    og = o // groups
    out = np.zeros((n, o, oh, ow), dtype=np.float64)
    for g in range(groups):
        for ky in range(kh):
            for kx in range(kw):
                patch = xp[:, g * ig:(g + 1) * ig, ky * dh:ky * dh + oh, kx * dw:kx * dw + ow]
                tap = w[g * og:(g + 1) * og, :, ky, kx]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, tap)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def max_pool_2x2(y: np.ndarray) -> np.ndarray:
    """2x2 / stride 2 max-pool, floor mode."""
    n, c, h, w = y.shape
    h2, w2 = h // 2, w // 2
    return y[:, :, :2 * h2, :2 * w2].reshape(n, c, h2, 2, w2, 2).max(axis=(3, 5))


def ref_block_conv(x, w, b, block, padding, mode, dilation=(1, 1), groups=1, pool=False):
    """Block conv by the contract: pad each (bh, bw) block alone, conv, place the result back."""
    bh, bw = block
    ph, pw = padding
    _, _, h, wd = x.shape
    rows = []
    for i in range(h // bh):
        cols = []
        for j in range(wd // bw):
            blk = x[:, :, i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
            blk = np.pad(blk, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode=NP_PAD_MODE[mode])
            cols.append(direct_conv(blk, w, b, dilation, groups))
        rows.append(np.concatenate(cols, axis=3))
    y = np.concatenate(rows, axis=2)
    return max_pool_2x2(y) if pool else y
