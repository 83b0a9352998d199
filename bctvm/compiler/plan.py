"""The program plan: the VTA programs a compile builds, each with its fit (what `bctvm plan`
prints and what `compile_model` executes; one function makes it for both).

    plan, segments = program_plan(graph_plan, vta_qnet, mode, batch, cfg)
    text = plan_text("block_resnet18", board="zcu102", input_shape=(1, 3, 64, 64))

`graph_plan` is PlanFusedGroups' FusedPlan (graph groups on one block grid, no fit decided);
plan_segments cuts it (segment.py rules) into programs and fits each with the one fit rule
(bctvm.lower.fit). The returned FusedPlan has one group per program: layers, grid, the
footprint (peak elements per buffer placed by the SRAM allocator), the fit (residual path and
resolved knobs per program, JSON-able), why the program ends there (`cut`) and the DRAM
estimate (weights once when resident, else once per block).
"""

from __future__ import annotations

import dataclasses
import json

from bctvm.errors import BadInputError
from boards import BoardConfig
from relay_passes.plan_fused_groups import FusedGroup, FusedPlan, group_dram

from .segment import (Segment, cut_points, grid_changes, host_layers, segment_plan,
                      segment_specs, singles, split_segment)


def plan_segments(plan, qnet, mode: str = "fused", batch: int = 1, cfg=None,
                  host_fallback: bool = False, fallbacks: dict | None = None,
                  progress: bool = False) -> list[Segment]:
    """The VTA programs the compile builds: segment_plan's chains, each given its GroupFit(s)
    by the one fit rule (bctvm.lower.fit); a chain that does not fit is cut after its longest
    first part that fits (`cut` = "fit"; near the middle when no first part fits) until every
    part fits; a fused segment is split where its layers apart move fewer estimated DRAM
    bytes (`_less_traffic_split`, cut "traffic") or, with one virtual thread or streamed
    weights (`_may_be_slower`), take fewer simulated cycles (`_faster_split`, cut "cycles").
    A single layer that cannot fit is a BufferFitError naming it, or with `host_fallback`
    left to the host (its reason recorded in `fallbacks`: layer -> message)."""
    from tqdm import tqdm

    from bctvm.lower.group import plan_fits
    from boards import load_board
    from schedules.knobs import BufferFitError

    cfg = cfg or load_board(plan.board)
    qlayers = {layer.name: layer for layer in qnet.layers}
    segs = segment_plan(plan, qnet, mode, batch, cfg)
    apart_cache: dict = {}  # layer -> its one-layer segment, probed (_faster_split)
    todo = segs[::-1]
    out: list[Segment] = []
    with tqdm(total=sum(len(s.layers) for s in segs), desc="fit", unit="layer",
              disable=not progress, leave=False) as bar:
        while todo:
            seg = todo.pop()
            specs = segment_specs([qlayers[n] for n in seg.layers], batch, seg.sources)
            try:
                seg.fits = seg.fits or plan_fits(cfg, specs, "fused" if len(specs) > 1
                                                 else mode, list(seg.residuals),
                                                 sources=list(seg.sources))
            except (BufferFitError, BadInputError) as err:
                if len(seg.layers) > 1:
                    why = "fit" if isinstance(err, BufferFitError) else "branch"
                    parts = _longest_fitting_prefix(cfg, seg, plan, qlayers, batch, mode)
                    if parts:
                        pass
                    elif cut_points(seg, plan):
                        parts = list(split_segment(seg, plan))
                    else:  # branches that only run together: one program per layer
                        parts = singles(seg, plan)
                    for part in parts[:-1]:
                        part.cut = why
                    parts[-1].cut, parts[-1].note = seg.cut, seg.note
                    todo += parts[::-1]
                    continue
                if not isinstance(err, BufferFitError):
                    raise
                msg = (f"group g{len(out)} (layer {seg.layers[0]}) does not fit board "
                       f"'{cfg.name}': {err}")
                if not host_fallback:
                    raise BufferFitError(msg + " (--host-fallback runs it on the host)") \
                        from None
                if fallbacks is not None:
                    fallbacks[seg.layers[0]] = str(err)
                bar.update(1)
                continue
            if mode == "fused" and len(seg.layers) > 1:
                parts = _less_traffic_split(cfg, seg, plan, qlayers, batch)
                if parts:
                    todo += parts[::-1]
                    continue
            if mode == "fused" and len(seg.layers) > 1 and _may_be_slower(seg.fits[0].knobs):
                parts = _faster_split(cfg, seg, plan, qlayers, batch, apart_cache)
                if parts:
                    todo += parts[::-1]
                    continue
            if len(seg.layers) == 1 and seg.layers[0] in apart_cache:  # probed already
                probed = apart_cache[seg.layers[0]]
                if probed.sources == seg.sources and probed.residuals == seg.residuals:
                    seg.compiled, seg.cycles = probed.compiled, probed.cycles
            out.append(seg)
            bar.update(len(seg.layers))
    return out


def _may_be_slower(knobs) -> bool:
    """Whether a fused program may take more cycles than its layers apart, so the planner
    measures both (_faster_split): one virtual thread (no overlap of a block's loads with the
    previous block's compute), or streamed weights (apart, a layer may take other tiles,
    the blocks-inside order or two virtual threads)."""
    return knobs.vthreads == 1 or not knobs.weights_resident


def _longest_fitting_prefix(cfg, seg: Segment, plan, qlayers: dict, batch: int,
                            mode: str) -> list | None:
    """[the longest valid first part that fits (its fits set), the rest], growing the first
    part cut by cut from the front until it stops fitting; None when no first part fits."""
    from bctvm.lower.group import plan_fits
    from schedules.knobs import BufferFitError

    best = None
    for k in cut_points(seg, plan):
        a, b = split_segment(seg, plan, k)
        specs = segment_specs([qlayers[n] for n in a.layers], batch, a.sources)
        try:
            a.fits = plan_fits(cfg, specs, "fused" if len(specs) > 1 else mode,
                               list(a.residuals), sources=list(a.sources))
        except (BufferFitError, BadInputError):
            break
        best = [a, b]
    return best


def _estimated_bytes(cfg, specs, fit, residuals) -> int:
    """DRAM bytes of one fitted program: every layer's input (the first layer's only, when
    fused), weights and bias tiles under its knobs (schedules.knobs.estimate_dram_bytes), its
    output, and residuals read from DRAM."""
    from schedules.knobs import group_dram_bytes

    total = group_dram_bytes(cfg, specs, fit.knobs)
    for spec, r in zip(specs, residuals):
        if r == "external":
            total += _map_bytes(cfg, spec)
    return total + _map_bytes(cfg, specs[-1])


def _map_bytes(cfg, spec) -> int:
    """Bytes of a layer's packed int8 output map."""
    oh, ow = spec.out_size
    return spec.batch * spec.co_tiles(cfg) * cfg.block_out * oh * ow


def _less_traffic_split(cfg, seg: Segment, plan, qlayers: dict, batch: int) -> list | None:
    """A fused segment whose weights stream over several blocks reads them once per block;
    one program per layer may read them once (blocks inside output-channel chunks) at the
    price of the inner maps through DRAM. Returns the split near the middle (to plan again,
    `cut` = "traffic") when all layers apart move fewer estimated bytes, else None."""
    from bctvm.lower.group import plan_fits
    from schedules.knobs import BufferFitError, block_count

    fit = seg.fits[0]
    specs = segment_specs([qlayers[n] for n in seg.layers], batch, seg.sources)
    if fit.knobs.weights_resident or block_count(cfg, specs[0]) == 1:
        return None
    fused = _estimated_bytes(cfg, specs, fit, seg.residuals)
    apart = 0
    for spec, r in zip(specs, seg.residuals):
        res = None if r is None else "external"
        try:
            (f,) = plan_fits(cfg, [spec], "fused", [res])
        except (BufferFitError, BadInputError):
            return None
        apart += _estimated_bytes(cfg, [spec], f, [res])
    return _verdict(seg, plan, fused, apart, "traffic", "estimated bytes")


def _verdict(seg: Segment, plan, fused: int, apart: int, cut: str, unit: str) -> list | None:
    """Keep `seg` fused (None, the figures in its note) unless apart costs less: then its
    split (near the middle, or into single layers for branches), the boundary cut `cut`."""
    if apart >= fused:
        seg.note = "; ".join(filter(None, [seg.note, f"kept fused: {fused:,} <= apart "
                                                      f"{apart:,} {unit}"]))
        return None
    parts = list(split_segment(seg, plan)) if cut_points(seg, plan) else singles(seg, plan)
    for p in parts[:-1]:
        p.cut, p.note = cut, f"split: apart {apart:,} < fused {fused:,} {unit}"
    parts[-1].cut, parts[-1].note = seg.cut, seg.note
    return parts


def _probe_cycles(cfg, seg: Segment, qlayers: dict, batch: int) -> int:
    """Simulator cycles of a fitted segment's program (the cycle model does not depend on
    the data: weights of the model, zero input)."""
    from bctvm.lower.group import compile_group, run_group
    from schedules.from_quant import params_from_qconv

    if seg.compiled is not None:
        return seg.cycles
    qconvs = [qlayers[n] for n in seg.layers]
    specs = segment_specs(qconvs, batch, seg.sources)
    cg = compile_group(cfg, specs, mode="fused", residual_source=list(seg.residuals),
                       name="probe", fit=seg.fits, sources=list(seg.sources))
    seg.compiled = cg  # the compile reuses it (the same fit)
    seg.cycles = run_group(cg, cg.image(None, [params_from_qconv(q) for q in qconvs])).cycles
    return seg.cycles


def _faster_split(cfg, seg: Segment, plan, qlayers: dict, batch: int,
                  apart_cache: dict) -> list | None:
    """Fused never slower than apart: a segment that fits only with one virtual thread (no
    overlap of one block's loads with the previous block's compute) is weighed against its
    layers as one-layer programs, all measured on the simulator (`apart_cache`: layer ->
    its one-layer segment, probed once); returns the split (near the middle, or into single
    layers for branches; to plan again, `cut` = "cycles") when apart is faster, else None
    (the measurement in `note`)."""
    from bctvm.lower.group import plan_fits
    from schedules.knobs import BufferFitError

    apart = 0
    for name in seg.layers:
        single = apart_cache.get(name)
        if single is None:
            (single,) = singles(Segment([name], seg.plan_group, seg.grid), plan)  # grid: its own
            specs = segment_specs([qlayers[name]], batch, single.sources)
            try:
                single.fits = plan_fits(cfg, specs, "fused", list(single.residuals))
            except (BufferFitError, BadInputError):
                return None
            apart_cache[name] = single
        apart += _probe_cycles(cfg, single, qlayers, batch)
    whole = _probe_cycles(cfg, seg, qlayers, batch)
    return _verdict(seg, plan, whole, apart, "cycles", "cycles")


def segments_plan(plan: FusedPlan, segments: list[Segment], cfg: BoardConfig) -> FusedPlan:
    """A copy of the graph plan whose groups are the planned segments (Partition's input);
    its host layers include the graph groups' layers no segment runs."""
    groups = []
    for i, seg in enumerate(segments):
        members = [plan.layers[n] for n in seg.layers]
        resident = all(f.knobs.weights_resident for f in seg.fits)
        once = all(f.knobs.weights_resident or f.knobs.blocks_inside for f in seg.fits)
        _, _, dram = group_dram(members, plan.tensors, cfg, once, tuple(seg.grid))
        peak = {b: max(f.footprint[b] for f in seg.fits) for b in seg.fits[0].footprint}
        groups.append(FusedGroup(index=i, layers=list(seg.layers), grid=tuple(seg.grid),
                                 inputs=seg.inputs, outputs=[seg.output],
                                 weights_resident=resident, footprint=peak,
                                 fit=[f.to_dict() for f in seg.fits], cut=seg.cut,
                                 note=seg.note,
                                 dram_bytes=dram, grid_changes=grid_changes(seg, plan)))
    host = list(plan.host_layers) + host_layers(plan, segments)
    return dataclasses.replace(plan, groups=groups, host_layers=host)


def program_plan(plan: FusedPlan, vta_qnet, mode: str, batch: int, cfg: BoardConfig,
                 host_fallback: bool = False, fallbacks: dict | None = None,
                 progress: bool = False) -> tuple[FusedPlan, list[Segment]]:
    """(the program plan, its segments) of a graph plan (module docstring)."""
    segments = plan_segments(plan, vta_qnet, mode, batch, cfg, host_fallback, fallbacks,
                             progress)
    return segments_plan(plan, segments, cfg), segments


def plan_text(source, *, board="pynq", mode: str = "fused", block_size=None, block_type=None,
              padding_mode=None, input_shape=(1, 3, 224, 224), calib: int = 1,
              stem: str = "auto", policy: str = "graph", verbose: bool = False,
              json_path=None, host_fallback: bool = False, progress: bool = True,
              checkpoint=None) -> str:
    """What `bctvm plan` / `bctvm compile --plan` print (optionally writing the plan JSON):
    the compile driver's front end (driver.front_end) without its compile."""
    from .driver import front_end
    from .host_reasons import format_host_lines

    fe = front_end(source, board=board, mode=mode, block_size=block_size, block_type=block_type,
                   padding_mode=padding_mode, input_shape=input_shape, calib=calib, stem=stem,
                   progress=progress, checkpoint=checkpoint, host_fallback=host_fallback,
                   policy=policy, need_vta=False)
    if json_path:
        from pathlib import Path

        Path(json_path).write_text(json.dumps(fe.plan.to_dict(), indent=1))
    return fe.plan.table(verbose=verbose, host_lines=format_host_lines(fe.reasons, fe.fallbacks))
