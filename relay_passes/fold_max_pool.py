"""FoldMaxPool: merge a conv and the standalone 2x2/stride-2 max-pool after it into one
stride-2 block conv (pool on the int32 accumulator), so the pair runs on VTA in one program.

Matches:  in main of the integer graph (Quantize's output, plain NCHW layout)
          p = bctvm.qmax_pool2d(c, pool_size 2x2, strides 2, padding 0, dilation 1) where
          c = bctvm.qblock_conv2d(x, W, b, s) with pool=False, has_sign=False, no residual
          operand, strides 1, whose only user is p, and whose per-block conv output
          (block_geometry) has even sides (the pool windows stay inside the blocks).
Produces: p = bctvm.qblock_conv2d(x, W, b, s) with the same attributes but pool=True (its
          `layer` stays the conv's name); the binding of c is dropped. `self.folded` maps the
          pool's layer name to the conv's.
Requires: Quantize. Exact because requantize, clip and ReLU are monotone non-decreasing, so
          they commute with max (bctvm.quant.fold_pool, which makes the same QuantizedNet
          change for the schedules: `fold_max_pools(qnet)`). Anything else is left unchanged.
"""

from __future__ import annotations

import tvm
from tvm import relax

from bctvm.errors import BadInputError

from . import ops
from . import te_compute as tc
from .base import BctvmPass
from .graph import bindings, rebuild, replace_main, substitute, users

_POOL_2X2 = {"pool_size": (2, 2), "strides": (2, 2), "padding": (0, 0, 0, 0),
             "dilation": (1, 1), "layout": ops.PLAIN}
_SKIP = object()


class FoldMaxPool(BctvmPass):
    """conv -> 2x2/2 max-pool pairs -> one pooling qblock_conv2d (see module docstring)."""

    def __init__(self):
        self.folded: dict[str, str] = {}

    def match(self, func: relax.Function) -> dict:
        """pool Var -> (conv Var, conv Call) of every pair that folds."""
        value_of = dict(bindings(func))
        use = users(func)
        pairs = {}
        for var, value in bindings(func):
            if ops.op_name(value) != ops.QMAX_POOL2D:
                continue
            a = ops.attrs_dict(value)
            if any(a.get(k, (1, 1)) != v for k, v in _POOL_2X2.items()):
                continue
            src = value.args[0]
            conv = value_of.get(src) if isinstance(src, relax.Var) else None
            if ops.op_name(conv) != ops.QBLOCK_CONV2D or len(conv.args) != 4:
                continue
            c = ops.attrs_dict(conv)
            if c["pool"] or c["has_sign"] or c.get("strides", (1, 1)) != (1, 1) or \
                    c["layout"] != ops.PLAIN or len(use.get(src, [])) != 1:
                continue
            h, w = ops.static_shape(conv.args[0])[2:4]
            _, _, oh, ow = tc.block_geometry(h, w, c["block"], c["padding"], c["kernel"],
                                             c["dilation"])
            if oh % 2 or ow % 2:
                continue
            pairs[var] = (src, conv)
        return pairs

    def transform_module(self, mod: tvm.IRModule, ctx=None) -> tvm.IRModule:
        func = mod["main"]
        pairs = self.match(func)
        self.folded = {}
        for var, pool in bindings(func):
            if var in pairs:
                conv = pairs[var][1]
                self.folded[str(ops.attrs_dict(pool)["layer"])] = \
                    str(ops.attrs_dict(conv)["layer"])
        if not pairs:
            return mod
        convs = {src for src, _ in pairs.values()}

        def handle(bb, var, value, env):
            if var in convs:
                return _SKIP
            if var in pairs:
                conv = substitute(pairs[var][1], env)
                return bb.emit(ops.with_attrs(conv, pool=True), name_hint=var.name)
            return None

        return replace_main(mod, rebuild(func, handle, skip=_SKIP))


def folded_qnet(plan, qnet):
    """The QuantizedNet whose convs match the planned graph after FoldMaxPool:
    `bctvm.quant.fold_max_pools(qnet)[0]`, checked against every conv of `plan` (a
    FusedPlan) so the LayerSpecs built from it describe the graph's ops."""
    from bctvm.quant import fold_max_pools

    folded, _ = fold_max_pools(qnet)
    convs = {q.name: q for q in folded.conv_layers}
    for name, info in plan.layers.items():
        q = convs.get(name)
        if info.kind == "conv" and q is not None and bool(q.pool) != bool(info.pool):
            raise BadInputError(f"layer '{name}': pool={info.pool} in the planned graph but "
                                f"{q.pool} in the folded quantized network")
    return folded
