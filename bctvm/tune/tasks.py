"""Tuning tasks: the distinct fused groups (VTA programs) of a compiled model.

A task is one VTA program's structure: the board, the layers' LayerSpecs without their names
and with their requantisation shifts reduced to the class that fixes the ALU steps, and the
residual sources. Two segments of a model with the same structure (ResNet's repeated
basic blocks) are one task, tuned once, and both use its best record.

    tasks = extract_tasks("block_resnet18", board="zcu102", input_shape=(1, 3, 224, 224))
    mod = tasks[0].workload()     # the MetaSchedule workload (IRModule, key of the log)

The workload is the group's unscheduled TE PrimFunc with the task as a function attribute
("bctvm.task", JSON: board dict, layer specs, residual sources), so it is self-contained (the
builder rebuilds the group from it) and its structural hash is the task's identity in the
tuning log.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property

import tvm

from boards import BoardConfig, board_from_dict, board_to_dict
from bctvm.errors import BadInputError
from schedules.block_conv2d import resolve_residuals
from schedules.layer import LayerSpec

from .space import KnobSpace

TASK_ATTR = "bctvm.task"


def _spec_dict(spec: LayerSpec) -> dict:
    d = dataclasses.asdict(spec)
    for k in ("name", "meta"):
        d.pop(k)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class Task:
    """One distinct group: board, layer specs (names dropped), residual sources, and the
    segment names (g<i> of the compile) that share it."""

    cfg: BoardConfig
    specs: tuple
    residuals: list
    groups: list = field(default_factory=list)  # names of the segments with this structure
    layers: list = field(default_factory=list)  # layer names of the first such segment
    default_knobs: object = None  # ScheduleKnobs compile_group resolved with no knobs given
    macs: int = 0  # multiply-accumulates of one run of the group

    @property
    def name(self) -> str:
        n = len(self.specs)
        return (f"{self.layers[0]}" + (f" +{n - 1}" if n > 1 else "")) if self.layers \
            else f"{n}-layer group"

    def to_json(self) -> str:
        return json.dumps({"board": board_to_dict(self.cfg),
                           "layers": [_spec_dict(s) for s in self.specs],
                           "residuals": self.residuals}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "Task":
        d = json.loads(text)
        cfg = board_from_dict(d["board"], "tuning task")
        specs = tuple(LayerSpec(name=f"l{i}", **{k: tuple(v) if isinstance(v, list) else v
                                                  for k, v in s.items()})
                      for i, s in enumerate(d["layers"]))
        return Task(cfg, specs, d["residuals"])

    @cached_property
    def space(self) -> KnobSpace:
        return KnobSpace(self.cfg, self.specs, self.residuals)

    def workload(self) -> tvm.IRModule:
        """The MetaSchedule workload: the group's PrimFunc with the task attribute."""
        g = self.space.stages(self.space.paths[0])
        func = g.prim_func().with_attr("global_symbol", "main").with_attr(TASK_ATTR,
                                                                         self.to_json())
        return tvm.IRModule({"main": func})


def _shift_class(s: int | None, wide: int) -> int | None:
    """A representative of the shifts that give the same ALU steps: none, zero, left,
    right with a rounding constant that fits the immediate field, right with a wider one."""
    if s is None or s == 0:
        return s
    if s < 0:
        return -1
    return 1 if s < wide else wide


def _structural(cfg: BoardConfig, spec: LayerSpec, i: int) -> LayerSpec:
    """The spec as a task sees it: no name, and the requantisation shifts replaced by their
    class (_shift_class; the residual's alignment is a shift the other way). Shifts come from
    calibration and change no instruction but immediates and bias data, so the cycles are
    the same: a log stays valid for a model calibrated again, and equal layers with other
    shifts are one task."""
    wide = cfg.alu_imm_bits  # 2^(s-1) fits the signed immediate for s < wide
    res = spec.residual_shift
    return dataclasses.replace(spec, name=f"l{i}", meta={}, shift=_shift_class(spec.shift, wide),
                               residual_shift=None if res is None
                               else -(_shift_class(-res, wide) or 0))


def task_of(cfg: BoardConfig, specs, residuals, name: str = "", layers=()) -> Task:
    """The task of a group (specs made structural, residual sources resolved)."""
    specs = tuple(_structural(cfg, s, i) for i, s in enumerate(specs))
    res = [r if r is None or isinstance(r, str) else int(r)
           for r in resolve_residuals(specs, list(residuals))]
    return Task(cfg, specs, res, [name] if name else [], list(layers))


def task_from_workload(mod: tvm.IRModule) -> Task:
    """The task a workload (or a scheduled candidate of it) was made for."""
    attrs = mod["main"].attrs
    if attrs is None or TASK_ATTR not in attrs:
        raise BadInputError("workload is not a bctvm tuning task (no bctvm.task attribute)")
    return Task.from_json(str(attrs[TASK_ATTR]))


def dedupe(tasks: list[Task]) -> list[Task]:
    """Tasks with the same structure merged (group names concatenated), first seen first."""
    out: dict[str, Task] = {}
    for t in tasks:
        key = t.to_json()
        if key in out:
            out[key].groups += t.groups
        else:
            out[key] = t
    return list(out.values())


def extract_tasks(source, *, board="pynq", mode: str = "fused", block_size=None,
                  block_type=None, padding_mode=None, input_shape=(1, 3, 224, 224),
                  calib: int = 1, stem: str = "auto", qnet=None, checkpoint=None,
                  progress: bool = True, untuned: list | None = None) -> list[Task]:
    """The distinct tasks of a model, as `bctvm compile` would segment it (the same passes,
    segments and splits of segments that do not fit with the default knobs). `untuned`, if
    given, receives (group name, layer names) of every program that is no task (branch
    groups: they keep the planned fit)."""
    from bctvm.compiler.driver import compiled_segments

    cfg, compiled = compiled_segments(source, board=board, mode=mode, block_size=block_size,
                                      block_type=block_type, padding_mode=padding_mode,
                                      input_shape=input_shape, calib=calib, stem=stem,
                                      qnet=qnet, checkpoint=checkpoint, progress=progress)
    from bctvm.compiler.driver import is_chain

    tasks = []
    for i, c in enumerate(compiled):
        if not is_chain(c.seg):  # branch groups keep the planned fit
            if untuned is not None:
                untuned.append((f"g{i}", list(c.seg.layers)))
            continue
        t = task_of(cfg, c.cg.specs, c.seg.residuals, f"g{i}", c.seg.layers)
        t.default_knobs = c.cg.knobs[0]
        t.macs = int(sum(s.macs() for s in c.cg.specs))
        tasks.append(t)
    return dedupe(tasks)
