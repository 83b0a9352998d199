"""The on-chip buffers of one VTA core, shaped from BoardConfig.

Layouts (one buffer element is a whole tile):
- uop: `uop_depth` uint32 micro-op words, plus their decoded (dst, src, wgt) int64 fields
  and a `uop_loaded` mask (a GEMM/ALU may only run micro-ops a LOAD UOP wrote);
- inp: [inp_depth, BATCH, BLOCK_IN] int8;
- wgt: [wgt_depth, BLOCK_OUT, BLOCK_IN] int8 (row o holds the weights of output lane o);
- acc: [acc_depth, BATCH, BLOCK_OUT] int32;
- out: [acc_depth, BATCH, BLOCK_OUT] int8, the narrowed copy of acc written by GEMM/ALU.
Buffers start zeroed.
"""

from __future__ import annotations

import numpy as np

from boards import BoardConfig
from bctvm.errors import SramOutOfRangeError
from bctvm.isa import decode_uop_fields

PLAN_CACHE_BYTES = 256 << 20  # index arrays the cached loop plans may hold together


class Scratchpads:
    """All on-chip state of the core: micro-op, input, weight, accumulator and output buffers."""

    def __init__(self, cfg: BoardConfig):
        self.cfg = cfg
        b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
        self.uop = np.zeros(cfg.uop_depth, dtype=np.uint32)
        self.uop_dst = np.zeros(cfg.uop_depth, dtype=np.int64)
        self.uop_src = np.zeros(cfg.uop_depth, dtype=np.int64)
        self.uop_wgt = np.zeros(cfg.uop_depth, dtype=np.int64)
        self.uop_loaded = np.zeros(cfg.uop_depth, dtype=bool)
        self.inp = np.zeros((cfg.inp_depth, b, bi), dtype=np.int8)
        self.wgt = np.zeros((cfg.wgt_depth, bo, bi), dtype=np.int8)
        self.acc = np.zeros((cfg.acc_depth, b, bo), dtype=np.int32)
        self.out = np.zeros((cfg.out_depth, b, bo), dtype=np.int8)
        self.plans = {}  # instruction row -> GEMM/ALU loop plan (gemm.py, alu.py); until LOAD UOP
        self.plan_bytes = 0  # index-array bytes held by the cached plans
        self.wgt_version = 0  # bumped by every LOAD WGT (invalidates cached weight matrices)
        self.depth = {
            "uop": cfg.uop_depth,
            "inp": cfg.inp_depth,
            "wgt": cfg.wgt_depth,
            "acc": cfg.acc_depth,
            "out": cfg.out_depth,
        }

    def buffer(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def check_range(self, name: str, lo: int, hi: int, where: str) -> None:
        """Raise SramOutOfRangeError unless element indices [lo, hi] are inside buffer `name`."""
        depth = self.depth[name]
        if lo < 0 or hi >= depth:
            bad = lo if lo < 0 else hi
            raise SramOutOfRangeError(
                f"{where}: {name} buffer index {bad} out of range (depth {depth}; "
                f"accessed [{lo}, {hi}])"
            )

    def remember(self, key, plan):
        """Cache a loop plan (bounded: the cache is dropped when it grows past 4096 plans or
        PLAN_CACHE_BYTES of index arrays)."""
        size = getattr(plan, "nbytes", 0)
        if len(self.plans) >= 4096 or self.plan_bytes + size > PLAN_CACHE_BYTES:
            self.plans.clear()
            self.plan_bytes = 0
        self.plans[key] = plan
        self.plan_bytes += size
        return plan

    def write_uops(self, base: int, words: np.ndarray) -> None:
        """Store micro-op words at [base, base + len) and refresh their decoded fields."""
        end = base + words.shape[0]
        self.uop[base:end] = words
        d, s, w = decode_uop_fields(words, self.cfg)
        self.uop_dst[base:end] = d
        self.uop_src[base:end] = s
        self.uop_wgt[base:end] = w
        self.uop_loaded[base:end] = True
        self.plans.clear()
        self.plan_bytes = 0
