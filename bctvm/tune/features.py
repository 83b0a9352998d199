"""The cost model's features of a sample of a knob space (space.py): what XGBModel learns
cycles from.

MetaSchedule's PerStoreFeature reads the loop nests of the scheduled TIR; every candidate
here is the same unscheduled TIR with other annotations (the knobs act in the project's
lowering), so the features are computed from the knobs and the project's analytic models:

- every knob value: a tile knob as the fraction of its extent and its log2, a choice knob
  as the index of its value;
- per layer: log2 of the output-channel chunks, the GEMM passes (input-channel chunks), the
  row sub-tiles, the bytes of one chunk's weights per pass, the estimated DRAM bytes
  (schedules.knobs.estimate_dram_bytes) and the estimated GEMM instructions
  (blocks x sub-tiles x chunks x passes: each costs a pipeline fill and, with streamed
  weights, a load);
- per group: the buffer footprints as fractions of the depths (group_footprint), log2 of the
  DRAM bytes and of the GEMM instructions, the resolved residency, loop-order and residual
  path flags, the virtual threads, and a roofline prediction: GEMM cycles (MACs / MACs per
  cycle) and DRAM cycles (bytes / bus bytes per cycle) overlapped with two virtual threads,
  added with one; as log2 and as the ratio of DRAM to GEMM cycles.

The first derived feature is 1 for a sample the builder accepts, 0.5 for one that resolves
to other knobs (refused as a fallback), 0 for one that does not resolve (then the derived
part is zeros); the row length is fixed per space.
"""

from __future__ import annotations

import math

import numpy as np

from bctvm.errors import BadInputError
from schedules.knobs import block_count, estimate_dram_bytes, group_footprint

_PER_LAYER = 6
_PER_GROUP = 16


def _lg(x: float) -> float:
    return math.log2(max(float(x), 1.0))


def width(space) -> int:
    """Length of a feature row of `space`."""
    return (sum(2 if k.kind == "tile" else 1 for k in space.knobs) + 1
            + _PER_LAYER * len(space.specs) + _PER_GROUP)


def knob_features(space, values: dict) -> np.ndarray:
    """One feature row (float32, length width(space)) of knob values (module docstring)."""
    row = []
    for k in space.knobs:
        v = values[k.name]
        if k.kind == "tile":
            row += [v / k.values[-1], _lg(v)]
        else:
            row.append(float(k.values.index(v)))
    try:
        r = space.resolved(values)
    except BadInputError:
        return np.asarray(row + [0.0] * (width(space) - len(row)), dtype="float32")
    cfg, specs = space.cfg, space.specs
    row.append(1.0 if space.check(values, allocator=False) is None else 0.5)  # 0.5: resolves
    # to other knobs (a fallback the builder refuses)
    dram = instrs = macs = 0
    for i, s in enumerate(specs):
        lk = r.layer(i)
        oh = s.out_block[0]
        sub = lk.sub_rows or oh
        n_sub = oh // sub if sub < oh else 1
        chunks = s.co_tiles(cfg) // lk.oc_chunk
        ci = lk.ci_chunk or s.ci_tiles_per_group(cfg)
        passes = s.ci_tiles_per_group(cfg) // ci
        kh, kw = s.kernel
        blocks = block_count(cfg, s)
        d = estimate_dram_bytes(cfg, s, lk.oc_chunk, sub, lk.rows_outer is not False,
                                bool(r.weights_resident), i == 0, r.bias_resident,
                                bool(lk.inp_per_pass), bool(r.blocks_inside))
        g = blocks * n_sub * chunks * passes
        row += [_lg(chunks), _lg(passes), _lg(n_sub),
                _lg(lk.oc_chunk * ci * kh * kw * cfg.wgt_elem_bytes), _lg(d), _lg(g)]
        dram += d
        instrs += g
        macs += s.macs()
    fp = group_footprint(cfg, specs, r)
    gemm = macs / cfg.gemm_macs_per_cycle
    mem = dram / cfg.bus_bytes
    pred = max(gemm, mem) if r.vthreads > 1 else gemm + mem
    row += [fp["inp"] / cfg.inp_depth, fp["wgt"] / cfg.wgt_depth, fp["acc"] / cfg.acc_depth,
            _lg(dram), _lg(instrs), float(r.vthreads), float(bool(r.weights_resident)),
            float(bool(r.bias_resident)), float(bool(r.blocks_inside)),
            float(bool(r.chunked_handover)), float(bool(r.input_on_chip)),
            float(bool(r.identity_residuals)), _lg(pred), mem / max(gemm, 1.0),
            float(len(r.kept_outputs)), float(r.wgt_copies)]
    return np.asarray(row, dtype="float32")
