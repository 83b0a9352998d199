"""MetaSchedule builder: a sampled candidate -> a VTA program and its DRAM image on disk.

The candidate's module is the task's workload with the sampled knobs as annotations
(space.py); the build is the project's own lowering: bctvm.lower.compile_group with those
knobs and the task's residual and data sources (the call compile_segments makes for the
group), then a DRAM image holding random layer data (fixed seed per task: cycles do not
depend on the values). Each candidate gets its own directory (the RemoveBuildArtifact
callback deletes it after the measurement):

    DIR/program.bin   the encoded instruction stream (16-byte instructions)
    DIR/dram.bin      the DRAM image (uint8)
    DIR/regions.json  {region: [byte_start, byte_end]}
    DIR/build.json    board name, knob values, resolved knobs

A candidate that fails the fit rule or the SRAM allocator is a failed build (its message is
the BuilderResult's error), so it is never measured.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
from tvm import s_tir
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder

from bctvm.errors import BctvmError
from bctvm.lower.group import compile_group

from .tasks import Task, task_from_workload


def random_layer_data(task: Task, seed: int = 0) -> tuple[np.ndarray, list]:
    """(NCHW int8 input, per-layer parameter dicts) of random values for a task's group."""
    rng = np.random.default_rng(seed)
    s0 = task.specs[0]
    x = rng.integers(-128, 128, (s0.batch, s0.in_channels, s0.height, s0.width), dtype=np.int8)
    layers = []
    for spec in task.specs:
        kh, kw = spec.kernel
        p = {"weight": rng.integers(-128, 128, (spec.out_channels, spec.in_channels
                                                 // spec.groups, kh, kw), dtype=np.int8),
             "bias": rng.integers(-1000, 1000, spec.out_channels, dtype=np.int32)}
        if spec.sign:
            p["sign"] = rng.choice(np.array([-1, 1], np.int32), spec.out_channels)
        if spec.residual_shift is not None:
            oh, ow = spec.out_size
            p["residual"] = rng.integers(-128, 128, (spec.batch, spec.out_channels, oh, ow),
                                         dtype=np.int8)
        layers.append(p)
    return x, layers


def build_candidate(task: Task, values: dict, out_dir: Path) -> Path:
    """Compile the task's group with knob values into out_dir; returns program.bin's path.
    Raises BctvmError (BadInputError / BufferFitError) when the knobs are refused: by the
    footprint model here, by the SRAM allocator in compile_group (its fit plan, with every
    knob fixed, is the allocator check of the fit rule: KnobSpace.check)."""
    why = task.space.check(values, allocator=False)
    if why is not None:
        raise BctvmError(f"knobs refused by the fit rule: {why}")
    cg = compile_group(task.cfg, task.specs, "fused", residual_source=list(task.residuals),
                       name="tune", sources=list(task.sources),
                       **task.space.compile_kwargs(values))
    x, layers = random_layer_data(task)
    img = cg.image(x, layers)
    out_dir.mkdir(parents=True, exist_ok=True)
    prog = out_dir / "program.bin"
    (program,) = cg.programs  # a task is one fused program (or one layer)
    prog.write_bytes(program.encode(task.cfg))
    img.tofile(out_dir / "dram.bin")
    (out_dir / "regions.json").write_text(json.dumps(cg.layout.region_map()))
    (out_dir / "build.json").write_text(json.dumps(
        {"board": task.cfg.name, "values": values,
         "resolved": dataclasses.asdict(cg.knobs[0])}, default=str))
    return prog


@derived_object
class VtaBuilder(PyBuilder):
    """PyBuilder over build_candidate; artifacts in fresh directories under `root`."""

    def __init__(self, root: str | None = None):
        super().__init__()
        self.root = root
        self._tasks: dict[str, Task] = {}

    def _task(self, mod) -> Task:
        key = str(mod["main"].attrs["bctvm.task"])
        if key not in self._tasks:
            self._tasks[key] = task_from_workload(mod)
        return self._tasks[key]

    def build(self, build_inputs):
        results = []
        for inp in build_inputs:
            try:
                task = self._task(inp.mod)
                values = task.space.values_of(s_tir.Schedule(inp.mod))
                d = Path(tempfile.mkdtemp(prefix="bctvm-tune-", dir=self.root))
                results.append(BuilderResult(str(build_candidate(task, values, d)), None))
            except BctvmError as err:
                results.append(BuilderResult(None, str(err)))
        return results
