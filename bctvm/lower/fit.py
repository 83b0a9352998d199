"""What fits a board: the scratchpad footprint of a group under given knobs, the one rule.

    fit = fit_group(cfg, specs, residuals)    # GroupFit: residual path, knobs, footprint
    need = measure(cfg, stages, knobs)         # (resolved knobs, peak elements per buffer)

The footprint of a group of block-conv layers (schedules.LayerSpec, one block grid) under
knobs is the peak, per on-chip buffer (inp / wgt / acc, in that buffer's elements), that the
lowering's SRAM allocator (bctvm.lower.sram) places for the scheduled group: the schedule is
built and lowered to kernels and every allocation site gets its address range exactly as in
the compile; no instruction is emitted, so one measurement costs 10-150 ms. The planner
(bctvm.compiler.plan.plan_segments, what `bctvm plan` prints), the compile
(`compile_group(..., fit=)`) and a tuner (`fits`) all use this rule, so a planned group
compiles as planned and the plan's footprint is the program's.

Choosing knobs: schedules.knobs.resolve_knobs ranks tiles by DRAM traffic with its analytic
footprint model (knobs.py docstring) and is the search; the allocator decides. Where the
allocator needs more of a buffer than that model says (the model assumes a padded input dies
when its layer ends, the allocator keeps a site from its allocation to its last use; the
model counts two copies of a site in a loop that runs once), the model's budget for that
buffer is lowered by the excess and the knobs resolved again, until the group fits or no
tiling does. Residual paths are tried in order (GroupFit.input_on_chip /
identity_residuals): the group input kept in the accumulator, the identity GEMM from the input
buffer, the input read from DRAM again; with knobs that leave `bias_resident` open, resident
bias tiles first, then streamed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

from bctvm.errors import BadInputError
from boards import BoardConfig
from schedules.block_conv2d import group_compute, resolve_residuals
from schedules.grid_nest import refines
from schedules.knobs import (BufferFitError, LayerKnobs, ScheduleKnobs, block_count,
                             group_dram_bytes, resolve_knobs)
from schedules.schedule import group_knobs, scheduled_module

from .pipeline import lower_to_kernels
from .sram import SramPlanner, depth_of

BUFFERS = ("inp", "wgt", "acc")
MAX_ROUNDS = 8  # budget cuts per residual path before giving up on it


@dataclass(frozen=True)
class GroupFit:
    """How a group runs: residual path, resolved knobs and its footprint (elements)."""

    input_on_chip: bool
    identity_residuals: bool
    knobs: ScheduleKnobs
    footprint: dict  # buffer -> peak elements placed by the allocator

    def to_dict(self) -> dict:
        """JSON-able form (the manifest's "fit" of a program)."""
        return {"input_on_chip": self.input_on_chip,
                "identity_residuals": self.identity_residuals,
                "knobs": dataclasses.asdict(self.knobs), "footprint": dict(self.footprint)}

    @classmethod
    def from_dict(cls, d: dict) -> "GroupFit":
        k = dict(d["knobs"])
        k["layers"] = tuple(LayerKnobs(**x) for x in k["layers"])
        for f in ("kept_outputs", "identity_residuals", "resident_layers"):
            k[f] = tuple(tuple(x) if isinstance(x, list) else x for x in k[f])
        return cls(bool(d["input_on_chip"]), bool(d["identity_residuals"]),
                   ScheduleKnobs(**k), dict(d["footprint"]))


def depths(cfg: BoardConfig) -> dict:
    return {b: depth_of(cfg, b) for b in BUFFERS}


def measure(cfg: BoardConfig, stages, knobs: ScheduleKnobs | None = None,
            budget: dict | None = None) -> tuple[ScheduleKnobs, dict]:
    """(resolved knobs, peak elements per buffer) of the scheduled group `stages`
    (schedules.GroupStages); `budget` bounds the analytic model while resolving unset knobs.
    Raises BufferFitError when no tiling fits the model."""
    resolved = resolve_knobs(cfg, stages.specs, group_knobs(stages, knobs), budget)
    mod, resolved = scheduled_module(stages, resolved)
    low = lower_to_kernels(mod)
    return resolved, SramPlanner(cfg, resolved.vthreads, weight_copies=resolved.wgt_copies
                                 ).place(low["main"].body)


def fits(cfg: BoardConfig, specs, knobs: ScheduleKnobs, residual_source="external",
         input_on_chip: bool = False, identity_residuals: bool = False,
         sources=None) -> bool:
    """Whether a group with these knobs (unset ones resolved) fits the board's buffers."""
    stages = group_compute(cfg, specs, residual_source, input_on_chip=input_on_chip,
                           identity_residuals=identity_residuals, sources=sources)
    try:
        _, peak = measure(cfg, stages, knobs)
    except BufferFitError:
        return False
    return all(peak[b] <= d for b, d in depths(cfg).items())


def residual_paths(cfg: BoardConfig, specs, residuals, input_on_chip=None,
                   identity_residuals=None) -> list[tuple[bool, bool]]:
    """(input_on_chip, identity_residuals) to try, best first: the accumulator ways (input
    kept on chip / kept outputs), the identity GEMM (the same DRAM bytes as the input kept on
    chip, far less accumulator), the group input re-read from DRAM. An explicit True of either
    is the only path."""
    has_input = "input" in residuals
    on_chip = any(r == "input" or isinstance(r, int) for r in residuals)
    ident = identity_residuals is not False and on_chip and cfg.block_in == cfg.block_out
    if input_on_chip:
        return [(True, False)]
    if identity_residuals:
        return [(False, True)]
    out = []
    if input_on_chip is None and has_input and len(specs) > 1 and cfg.onchip_reuse:
        out.append((True, False))
    elif not has_input:
        out.append((False, False))  # outputs kept in the accumulator (or no on-chip residual)
    if ident:
        out.append((False, True))
    if has_input:
        out.append((False, False))
    return out


def _fit_path(cfg: BoardConfig, stages, knobs: ScheduleKnobs) -> tuple[ScheduleKnobs, dict]:
    """Resolved knobs and footprint of one residual path, cutting the model's budget where the
    allocator needs more (module docstring)."""
    depth = depths(cfg)
    budget = dict(depth)
    for _ in range(MAX_ROUNDS):
        resolved, peak = measure(cfg, stages, knobs, budget)
        over = {b: peak[b] - depth[b] for b in BUFFERS if peak[b] > depth[b]}
        if not over:
            return resolved, peak
        if resolved.blocks_inside and knobs.blocks_inside is None and len(stages.specs) > 1:
            # whole maps on chip (no tile to shrink) do not fit: the blocks-outside order
            knobs, budget = replace(knobs, blocks_inside=False), dict(depth)
            continue
        for b, excess in over.items():
            budget[b] -= excess
    names = ", ".join(s.name for s in stages.specs)
    raise BufferFitError(f"layer(s) {names}: no tiling fits board '{cfg.name}' "
                         f"(the allocator needs {peak}, depths {depth})")


def fit_group(cfg: BoardConfig, specs, residual_source="external",
              knobs: ScheduleKnobs | None = None, input_on_chip: bool | None = None,
              identity_residuals: bool | None = None, sources=None) -> GroupFit:
    """The first residual path (residual_paths) and knobs with which the group fits (where
    that one reads streamed weights once per block, the later paths too: the least estimated
    bytes, path_bytes, so a path that allows the blocks-inside order can win); unset
    knobs resolved; `sources`: each layer's data input (schedules.block_conv2d.
    resolve_sources). Raises BufferFitError (from the last path tried) when none fits."""
    specs = tuple(specs)
    residuals = resolve_residuals(specs, residual_source)
    bases = [knobs or ScheduleKnobs()]
    if bases[0].bias_resident is None:
        bases.append(replace(bases[0], bias_resident=False))
    if bases[0].refine_rows is None and refines(specs):  # whole coarse blocks first
        bases += [replace(b, refine_rows=True) for b in bases]
    err = None
    found = []
    for ioc, ident in residual_paths(cfg, specs, residuals, input_on_chip, identity_residuals):
        stages = group_compute(cfg, specs, residuals, input_on_chip=ioc,
                               identity_residuals=ident, sources=sources)
        for base in bases:
            try:
                resolved, peak = _fit_path(cfg, stages, base)
            except BadInputError as e:  # does not fit, or knobs this path cannot take
                err = e
                continue
            found.append(GroupFit(ioc, ident, resolved, peak))
            break
        if found and not _weights_per_block(cfg, specs, found[0].knobs):
            break
    if not found:
        raise err
    return min(found, key=lambda f: path_bytes(cfg, specs, residuals, f))


def _weights_per_block(cfg: BoardConfig, specs, knobs: ScheduleKnobs) -> bool:
    """Whether a fused group reads its streamed weights once per block (so a later residual
    path that allows the blocks-inside loop order may read less: fit_group weighs them)."""
    return (len(specs) > 1 and not knobs.weights_resident and not knobs.blocks_inside
            and block_count(cfg, specs[0]) > 1)


def path_bytes(cfg: BoardConfig, specs, residuals, fit: GroupFit) -> int:
    """Estimated DRAM bytes of a fitted group that its path and knobs change: inputs, weights
    and bias tiles (schedules.knobs.group_dram_bytes), plus the group input read again for a
    residual that is neither kept on chip nor an identity GEMM."""
    total = group_dram_bytes(cfg, specs, fit.knobs)
    if "input" in residuals and not (fit.input_on_chip or fit.identity_residuals):
        s0 = specs[0]
        total += s0.batch * s0.ci_tiles(cfg) * cfg.block_in * s0.height * s0.width
    return total
