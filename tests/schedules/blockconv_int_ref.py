"""An independent NumPy model of one integer block-conv layer (the project contract), for tests.

Everything is int64 NumPy with explicit int32 wrap-around; no TVM, no torch.
x int8 NCHW, w int8 OIHW, b int32 (Co,), sign int32 (Co,) of +-1, r int8 NCHW (residual).
"""

from __future__ import annotations

import numpy as np

NP_PAD = {"constant": "constant", "replicate": "edge", "reflect": "reflect"}


def wrap32(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


def round_shift(v: np.ndarray, sh: int) -> np.ndarray:
    if sh > 0:
        return wrap32(wrap32(v + (1 << (sh - 1))) >> sh)
    if sh < 0:
        return wrap32(v << (-sh))
    return v


def align(v: np.ndarray, s: int) -> np.ndarray:
    return wrap32(v << s) if s >= 0 else round_shift(v, -s)


def conv_acc(x, w, b, block, padding, mode, groups=1, dilation=(1, 1)):
    """int32 block conv + bias (before the pool); w is O x C/groups x kh x kw."""
    bh, bw = block
    t, l, bo, r = padding
    dh, dw = dilation
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    xi = x.astype(np.int64)
    wi = w.astype(np.int64)
    rows = []
    for i in range(h // bh):
        cols = []
        for j in range(wd // bw):
            blk = xi[:, :, i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
            blk = np.pad(blk, ((0, 0), (0, 0), (t, bo), (l, r)), mode=NP_PAD[mode])
            oh, ow = blk.shape[2] - dh * (kh - 1), blk.shape[3] - dw * (kw - 1)
            acc = np.zeros((n, o, oh, ow), dtype=np.int64)
            for g in range(groups):
                for ky in range(kh):
                    for kx in range(kw):
                        patch = blk[:, g * cg:(g + 1) * cg, ky * dh:ky * dh + oh, kx * dw:kx * dw + ow]
                        acc[:, g * og:(g + 1) * og] += np.einsum(
                            "nchw,oc->nohw", patch, wi[g * og:(g + 1) * og, :, ky, kx])
            cols.append(acc)
        rows.append(np.concatenate(cols, axis=3))
    acc = wrap32(np.concatenate(rows, axis=2))
    return wrap32(acc + np.asarray(b, dtype=np.int64).reshape(1, -1, 1, 1))


def ref_layer(x, w, b, *, block, padding=(1, 1, 1, 1), mode="constant", pool=False, relu=False,
              shift=0, sign=None, residual=None, residual_shift=None, groups=1, dilation=(1, 1)):
    """int8 NCHW output of one layer by the contract (acc -> pool -> sign -> residual ->
    requant -> clip)."""
    if len(padding) == 2:
        padding = (padding[0], padding[1], padding[0], padding[1])
    acc = conv_acc(x, w, b, block, padding, mode, groups, dilation)
    if pool:
        n, c, h, wd = acc.shape
        acc = acc.reshape(n, c, h // 2, 2, wd // 2, 2).max(axis=(3, 5))
    if sign is not None:
        acc = wrap32(acc * np.asarray(sign, dtype=np.int64).reshape(1, -1, 1, 1))
    if residual is not None:
        acc = wrap32(acc + align(residual.astype(np.int64), residual_shift))
    acc = round_shift(acc, shift)
    lo = 0 if relu else -128
    return np.clip(acc, lo, 127).astype(np.int8)


def ref_spec(x, w, b, spec, sign=None, residual=None):
    """ref_layer driven by a schedules.LayerSpec."""
    return ref_layer(x, w, b, block=spec.block, padding=spec.padding, mode=spec.padding_mode,
                     pool=spec.pool, relu=spec.relu, shift=spec.shift,
                     sign=sign if spec.sign else None,
                     residual=residual if spec.residual_shift is not None else None,
                     residual_shift=spec.residual_shift, groups=spec.groups,
                     dilation=spec.dilation)


def random_layer_data(spec, seed=0, x_max=127, w_max=127, b_max=1 << 14):
    """Random int8 input/weights, int32 bias, +-1 sign, int8 residual for a LayerSpec
    (input/residual in [-x_max-1, x_max], weights in [-w_max-1, w_max], bias |b| < b_max)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-x_max - 1, x_max + 1, (spec.batch, spec.in_channels, spec.height, spec.width),
                     dtype=np.int64).astype(np.int8)
    w = rng.integers(-w_max - 1, w_max + 1,
                     (spec.out_channels, spec.in_channels // spec.groups, *spec.kernel),
                     dtype=np.int64).astype(np.int8)
    b = rng.integers(-b_max + 1, b_max, spec.out_channels).astype(np.int32)
    sign = rng.choice([-1, 1], spec.out_channels).astype(np.int32)
    oh, ow = spec.out_size
    r = rng.integers(-x_max - 1, x_max + 1, (spec.batch, spec.out_channels, oh, ow),
                     dtype=np.int64).astype(np.int8)
    return x, w, b, sign, r
