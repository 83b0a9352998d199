"""The program plan: the VTA programs a compile builds, each with its fit (what `bctvm plan`
prints and what `compile_model` executes; one function makes it for both).

    plan, segments = program_plan(graph_plan, vta_qnet, mode, batch, cfg)
    text = plan_text("block_resnet18", board="zcu102", input_shape=(1, 3, 64, 64))

`graph_plan` is PlanFusedGroups' FusedPlan (graph groups on one block grid, no fit decided);
segment.plan_segments cuts it into programs and fits each with the one fit rule
(bctvm.lower.fit). The returned FusedPlan has one group per program: layers, grid, the
footprint (peak elements per buffer placed by the SRAM allocator), the fit (residual path and
resolved knobs per program, JSON-able), why the program ends there (`cut`) and the DRAM
estimate (weights once when resident, else once per block).
"""

from __future__ import annotations

import dataclasses
import json

from boards import BoardConfig, load_board
from relay_passes.plan_fused_groups import FusedGroup, FusedPlan, group_dram

from .segment import Segment, host_layers, plan_segments


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
                                 dram_bytes=dram))
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
              json_path=None, host_fallback: bool = False, progress: bool = True) -> str:
    """What `bctvm plan` / `bctvm compile --plan` print (optionally writing the plan JSON)."""
    from relay_passes.fold_max_pool import folded_qnet
    from relay_passes.pipeline import run_pipeline, zoo_kwargs

    cfg = load_board(board)
    kw = zoo_kwargs(source, block_size, block_type, padding_mode)
    result = run_pipeline(source, board=cfg, input_shape=tuple(input_shape), calib=calib,
                          stem=stem, policy=policy, stop_after="PlanFusedGroups",
                          progress=progress, **kw)
    batch = int(result.imported.example_input.shape[0])
    fallbacks: dict[str, str] = {}
    plan, _ = program_plan(result.plan, folded_qnet(result.plan, result.qnet), mode, batch,
                           cfg, host_fallback, fallbacks, progress)
    if json_path:
        from pathlib import Path

        Path(json_path).write_text(json.dumps(plan.to_dict(), indent=1))
    text = plan.table(verbose=verbose)
    for layer, why in fallbacks.items():
        text += f"\nwarning: layer {layer} runs on the host: {why}"
    return text
