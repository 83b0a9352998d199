"""VTA schedules: TE compute + s_tir schedule per operator family.

- block_conv2d.py: packed integer block conv (one layer or a fused chain on one block grid)
- schedule.py: the s_tir schedule of such a group (block loop, accumulator chunks, DMA caches,
  tensorized GEMM); knobs.py: its knobs, defaults and the scratchpad fit check
- intrinsics.py: the board's GEMM tensor intrinsics; layer.py: LayerSpec; layout.py: packing

Public API:
    LayerSpec, LayerKnobs, ScheduleKnobs, BufferFitError
    group_compute(cfg, specs, residual_source, input_on_chip=False, identity_residuals=False)
        -> GroupStages; layer_compute(cfg, spec)
    schedule_group(group, knobs) -> s_tir.Schedule; scheduled_module(group, knobs) -> (mod, knobs)
    resolve_knobs(cfg, specs, knobs), check_fit(cfg, specs, knobs), layer_footprint(...)
"""

from .block_conv2d import GroupStages, LayerStages, group_compute, layer_compute
from .knobs import (BufferFitError, LayerKnobs, ScheduleKnobs, check_fit, layer_footprint,
                    resolve_knobs)
from .layer import LayerSpec
from .schedule import schedule_group, scheduled_module

__all__ = ["LayerSpec", "LayerKnobs", "ScheduleKnobs", "BufferFitError", "GroupStages",
           "LayerStages", "group_compute", "layer_compute", "schedule_group", "scheduled_module",
           "resolve_knobs", "check_fit", "layer_footprint"]
