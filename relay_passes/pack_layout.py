"""PackLayout: move the VTA side of the integer graph to the board's packed layouts.

Matches:  the integer ops of Quantize's output (bctvm.qblock_conv2d, qmax_pool2d, qadd,
          qrelu) in NCHW / OIHW.
Produces: the same ops with layout "NCHW{b}n{c}c": activations (ceil(N/b), ceil(C/c), H, W,
          b, c), weights constants (O/o, I/i / G', kh, kw, o, i) with b, c, o, i = BATCH,
          BLOCK_IN, BLOCK_OUT of the BoardConfig; channels padded with zeros to the block
          width (bias 0, sign +1 on padded channels, so padded channels stay 0).
          `bctvm.pack` is inserted where a host value enters a packed op, `bctvm.unpack`
          where a packed value reaches a host op or the function result.
          Grouped convs: the group structure is expanded to a block-diagonal weight and
          `packed_groups` G' is the largest number of independent (input-tile range,
          output-tile range) pairs, so a depthwise conv reads one input tile per output tile
          (the packing is schedules.layout's, the one the programs' DRAM images use).
Requires: Quantize (integer ops in NCHW).

Which ops go to VTA (are packed): every qblock_conv2d, except the stem when it does not pay
off (`stem="auto"`): a conv fed straight from the network input whose input channels fill
less than half of the BLOCK_IN lanes (3 of 16 for an RGB image) stays on the host, where
it is computed by the same integer TE definition. Pools/ReLUs/adds follow their inputs: on
VTA when any input is already packed. `stem="vta"` or `"host"` forces the choice.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax

from bctvm.errors import BadInputError
from boards import BoardConfig, load_board
from schedules.layout import pack_weight, packed_groups

from . import ops
from .base import BctvmPass
from .graph import rebuild, replace_main

STEM_POLICIES = ("auto", "vta", "host")


def _np(expr) -> np.ndarray:
    return expr.value.numpy()


def pad_vector(v: np.ndarray, length: int, fill) -> np.ndarray:
    out = np.full(length, fill, dtype=v.dtype)
    out[: v.shape[0]] = v
    return out


def lane_use(channels: int, block: int) -> float:
    """Fraction of GEMM lanes a tensor of `channels` fills after padding to the block."""
    return channels / (math.ceil(channels / block) * block)


class PackLayout(BctvmPass):
    """NCHW -> NCHW{b}n{c}c for the VTA ops (see module docstring)."""

    def __init__(self, board: BoardConfig | str = "pynq", stem: str = "auto"):
        self.board = load_board(board)
        if stem not in STEM_POLICIES:
            raise BadInputError(f"stem policy '{stem}' (choose {', '.join(STEM_POLICIES)})")
        self.stem = stem
        self.host_layers: list[str] = []

    @property
    def layout(self) -> str:
        return ops.packed_layout(self.board.batch, self.board.block_in)

    def transform_module(self, mod: tvm.IRModule, ctx=None) -> tvm.IRModule:
        func = mod["main"]
        self.host_layers = []
        packed: dict = {}  # old var -> packed new expr
        plain: dict = {}  # old var -> plain new expr
        logical: dict = {}  # old var -> (N, C) of the plain tensor
        inputs = set(func.params)
        quantized_input: set = set()  # vars holding the quantized network input
        b = self.board

        def get_plain(bb, v, env):
            if v in plain:
                return plain[v]
            if v in packed:
                n, c = logical[v]
                plain[v] = bb.emit(ops.unpack(packed[v], channels=c, batch_size=n),
                                   name_hint=f"{v.name}_unpack")
                return plain[v]
            return env.get(v, v)

        def get_packed(bb, v, env):
            if v in packed:
                return packed[v]
            x = get_plain(bb, v, env)
            packed[v] = bb.emit(ops.pack(x, batch=b.batch, block=b.block_in),
                                name_hint=f"{v.name}_pack")
            return packed[v]

        def handle(bb, var, value, env):
            name = ops.op_name(value)
            if name == ops.QUANTIZE and value.args[0] in inputs:
                quantized_input.add(var)
            if name not in ops.VTA_OPS or not self._on_vta(value, packed, quantized_input):
                if name in ops.VTA_OPS:
                    self.host_layers.append(ops.attrs_dict(value)["layer"])
                args = {a: get_plain(bb, a, env) for a in relax.analysis.free_vars(value)}
                new = bb.emit(_subst(value, args), name_hint=var.name)
                plain[var] = new
                return new
            shape = ops.static_shape(var)
            logical[var] = (shape[0], shape[1])
            call = self._pack_op(bb, value, lambda v: get_packed(bb, v, env))
            call = ops.with_attrs(call, channels=shape[1], batch_size=shape[0])
            new = bb.emit(call, name_hint=var.name)
            packed[var] = new
            return new

        def finish(bb, out, env):
            fixed = {v: get_plain(bb, v, env) for v in relax.analysis.free_vars(out)
                     if v in packed}
            return _subst(out, fixed) if fixed else out

        new = rebuild(func, handle, finish=finish)
        return replace_main(mod, new)

    # ---- decisions ------------------------------------------------------------------------
    def _on_vta(self, call, packed, quantized_input) -> bool:
        name = ops.op_name(call)
        if name == ops.QBLOCK_CONV2D:
            data = call.args[0]
            is_stem = data in quantized_input
            if not is_stem or self.stem == "vta":
                return True
            if self.stem == "host":
                return False
            return lane_use(ops.static_shape(data)[1], self.board.block_in) >= 0.5
        return any(a in packed for a in call.args if isinstance(a, relax.Var))

    # ---- rewriting one op -----------------------------------------------------------------
    def _pack_op(self, bb, call, packed_arg):
        b = self.board
        name = ops.op_name(call)
        a = ops.attrs_dict(call)
        a["layout"] = self.layout
        if name == ops.QBLOCK_CONV2D:
            data, weight, bias, sign = call.args[:4]
            w = _np(weight)
            wp = pack_weight(w, b, a["groups"])
            gp = packed_groups(w.shape[0], w.shape[1] * a["groups"], a["groups"], b)
            o_pad = wp.shape[0] * b.block_out
            bias_p = pad_vector(_np(bias), o_pad, 0)
            sign_p = pad_vector(_np(sign), o_pad, 1)
            residual = packed_arg(call.args[4]) if len(call.args) == 5 else None
            a.pop("layout")
            return ops.qblock_conv2d(
                packed_arg(data), ops.const(wp), ops.const(bias_p), ops.const(sign_p),
                residual, layout=self.layout, packed_groups=gp,
                **{k: v for k, v in a.items() if k != "packed_groups"})
        args = [packed_arg(x) for x in call.args]
        return relax.Call(call.op, args, ops.make_attrs(**a))


def _subst(expr, env):
    from .graph import substitute

    return substitute(expr, env)
