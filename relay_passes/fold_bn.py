"""FoldBN: fold an inference BatchNorm into the block conv before it (float graph).

Matches:  nn.batch_norm(bctvm.block_conv2d(x, W, b), gamma, beta, mean, var)[0], all of
          W, b, gamma, beta, mean, var constants.
Produces: bctvm.block_conv2d(x, W', b') with, per output channel, a = gamma/sqrt(var+eps):
          - no pool, or pool with every a >= 0: W' = a W, b' = a (b - mean) + beta
            (max-pool commutes with a positive scale and a per-channel shift);
          - pool with some a < 0: s = sign(a) (+1 for a = 0), W' = |a| W,
            b' = |a| b + s (beta - a mean), followed by multiply(., s) after the pool,
            because a max-pool does not commute with a negative scale
            (a pool(z) + c = s pool(|a| z + s c)). This is the sign bctvm.quant carries.
          The conv bias is already the block_conv2d's third operand (LegalizeBlockConv).
Requires: LegalizeBlockConv, BindParams (parameters are constants). A BatchNorm that does
          not follow a block conv is left alone.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import TupleGetItemPattern, is_const, is_op, wildcard

from . import ops
from .base import BctvmPass, relax_functions, replace_functions, rewrite


def _np(expr) -> np.ndarray:
    return expr.value.numpy().astype(np.float64)


class FoldBN(BctvmPass):
    """Fold inference BatchNorm into the preceding bctvm.block_conv2d (see module docstring)."""

    def __init__(self):
        self.x = wildcard()
        self.w, self.b = is_const(), is_const()
        self.conv = is_op(ops.BLOCK_CONV2D)(self.x, self.w, self.b)
        self.gamma, self.beta, self.mean, self.var = (is_const() for _ in range(4))
        self.bn = is_op("relax.nn.batch_norm")(self.conv, self.gamma, self.beta, self.mean,
                                               self.var)
        self.pattern = TupleGetItemPattern(self.bn, 0)

    def transform_module(self, mod: tvm.IRModule, ctx=None) -> tvm.IRModule:
        return replace_functions(mod, {gv: relax.analysis.remove_all_unused(
            rewrite(self.pattern, self._fold, f)) for gv, f in relax_functions(mod)})

    def _fold(self, expr, m):
        conv, bn = m[self.conv], m[self.bn]
        if int(bn.attrs["axis"]) != 1:
            return expr
        eps = float(bn.attrs["epsilon"])
        w, b = _np(m[self.w]), _np(m[self.b])
        gamma, beta = _np(m[self.gamma]), _np(m[self.beta])
        mean, var = _np(m[self.mean]), _np(m[self.var])
        a = gamma / np.sqrt(var + eps)
        attrs = ops.attrs_dict(conv)
        dtype = ops.dtype_of(m[self.w])
        if not attrs["pool"] or np.all(a >= 0):
            w2 = w * a[:, None, None, None]
            b2 = a * (b - mean) + beta
            return relax.Call(conv.op, [m[self.x], ops.const(w2, dtype), ops.const(b2, dtype)],
                              conv.attrs)
        s = np.where(a < 0, -1.0, 1.0)
        w2 = w * np.abs(a)[:, None, None, None]
        b2 = np.abs(a) * b + s * (beta - a * mean)
        folded = relax.Call(conv.op, [m[self.x], ops.const(w2, dtype), ops.const(b2, dtype)],
                            conv.attrs)
        return relax.op.multiply(folded, ops.const(s.reshape(1, -1, 1, 1), dtype))
