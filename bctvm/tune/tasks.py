"""Tuning tasks: the distinct fused groups (VTA programs) of a compiled model.

A task is one VTA program's structure: the board, the layers' LayerSpecs without their names
and with their requantisation shifts reduced to the class that fixes the ALU steps, the
residual sources and, for a group that is not a chain (a branch beside another layer on the
same resident input), each layer's data source. Two segments of a model with the same
structure (ResNet's repeated basic blocks) are one task, tuned once, and both use its best
record.

    tasks = extract_tasks("block_resnet18", board="zcu102", input_shape=(1, 3, 224, 224))
    mod = tasks[0].workload()     # the MetaSchedule workload (IRModule, key of the log)

The workload is the group's unscheduled TE PrimFunc with the task as a function attribute
("bctvm.task", JSON: board dict, layer specs, residual sources, data sources unless a
chain), so it is self-contained (the builder rebuilds the group from it) and its structural
hash is the task's identity in the tuning log.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property

import tvm

from boards import BoardConfig, board_from_dict, board_to_dict
from bctvm.errors import BadInputError
from schedules.block_conv2d import resolve_residuals, resolve_sources
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
    """One distinct group: board, layer specs (names dropped), residual sources, data
    sources (each layer's input: "input" or an earlier layer's index), and the segment names
    (g<i> of the compile) that share it."""

    cfg: BoardConfig
    specs: tuple
    residuals: list
    sources: list = None  # None: a chain (resolved in __post_init__)
    groups: list = field(default_factory=list)  # names of the segments with this structure
    layers: list = field(default_factory=list)  # layer names of the first such segment
    default_knobs: object = None  # ScheduleKnobs compile_group resolved with no knobs given
    macs: int = 0  # multiply-accumulates of one run of the group

    def __post_init__(self):
        self.sources = [s if s == "input" else int(s)
                        for s in resolve_sources(self.specs, self.sources)]

    @property
    def chain(self) -> bool:
        """Whether each layer reads the previous one (no data sources in the identity)."""
        return self.sources == resolve_sources(self.specs, None)

    @property
    def name(self) -> str:
        n = len(self.specs)
        return (f"{self.layers[0]}" + (f" +{n - 1}" if n > 1 else "")) if self.layers \
            else f"{n}-layer group"

    def to_json(self) -> str:
        d = {"board": board_to_dict(self.cfg), "layers": [_spec_dict(s) for s in self.specs],
             "residuals": self.residuals}
        if not self.chain:  # a chain's identity (and so its logs) stays as it was
            d["sources"] = self.sources
        return json.dumps(d, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "Task":
        d = json.loads(text)
        cfg = board_from_dict(d["board"], "tuning task")
        specs = tuple(LayerSpec(name=f"l{i}", **{k: tuple(v) if isinstance(v, list) else v
                                                  for k, v in s.items()})
                      for i, s in enumerate(d["layers"]))
        return Task(cfg, specs, d["residuals"], d.get("sources"))

    @cached_property
    def space(self) -> KnobSpace:
        return KnobSpace(self.cfg, self.specs, self.residuals, self.sources)

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


def task_of(cfg: BoardConfig, specs, residuals, name: str = "", layers=(),
            sources=None) -> Task:
    """The task of a group (specs made structural, residual and data sources resolved;
    `sources` None or empty: a chain)."""
    specs = tuple(_structural(cfg, s, i) for i, s in enumerate(specs))
    res = [r if r is None or isinstance(r, str) else int(r)
           for r in resolve_residuals(specs, list(residuals))]
    return Task(cfg, specs, res, list(sources) if sources else None,
                [name] if name else [], list(layers))


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
    segments and splits of segments that do not fit with the default knobs): every segment
    compiled as one program, chains and branch groups alike. `untuned`, if given, receives
    (group name, layer names) of every segment that is no task (run as several programs,
    layer by layer: they keep the planned fits)."""
    from bctvm.compiler.driver import compiled_segments

    cfg, compiled = compiled_segments(source, board=board, mode=mode, block_size=block_size,
                                      block_type=block_type, padding_mode=padding_mode,
                                      input_shape=input_shape, calib=calib, stem=stem,
                                      qnet=qnet, checkpoint=checkpoint, progress=progress)
    from bctvm.compiler.driver import is_task

    tasks = []
    for i, c in enumerate(compiled):
        if not is_task(c.seg):  # several programs keep the planned fits
            if untuned is not None:
                untuned.append((f"g{i}", list(c.seg.layers)))
            continue
        t = task_of(cfg, c.cg.specs, c.seg.residuals, f"g{i}", c.seg.layers, c.seg.sources)
        t.default_knobs = c.cg.knobs[0]
        t.macs = int(sum(s.macs() for s in c.cg.specs))
        tasks.append(t)
    return dedupe(tasks)
