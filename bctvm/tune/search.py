"""The project's MetaSchedule plug-ins for a knob space (space.py):

- FitRule (PyPostproc): rejects a sampled candidate whose knobs are invalid or do not fit
  the board (schedules.knobs' footprint model, the same rule the compiler resolves knobs
  with) before it is built or measured; MetaSchedule's search strategies drop candidates a
  postprocessor refuses. The builder adds the rest (KnobSpace.check): a sample that resolves
  to other knobs (a fallback) and the SRAM allocator (a lowering per candidate) refuse a
  candidate as a failed build, never measured.
- KnobMutator (PyMutator): re-draws one `sample_categorical` decision (vthreads, residency,
  loop order, sub-tile rows, residual path). MetaSchedule's MutateTileSize varies the
  `sample_perfect_tile` knobs (channel chunks); no built-in mutator changes a categorical
  decision that is not an unroll annotation.
- KnobFeatures (PyFeatureExtractor): XGBModel's features (features.py): the knob values and
  derived figures (chunks, passes, sub-tiles, per-chunk bytes, footprints, DRAM bytes, GEMM
  instructions, a roofline prediction). MetaSchedule's PerStoreFeature reads the loop nests
  of the scheduled TIR, but here every candidate is the same unscheduled TIR with different
  annotations (the knobs act in the project's lowering), so it would see one feature vector
  for all.
- TuneProgress (PyMeasureCallback): the per-task progress bar with the best cycles so far,
  and the measured curve (cycles per trial, in order).
"""

from __future__ import annotations

import math
import random

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.feature_extractor import PyFeatureExtractor
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
from tvm.s_tir.meta_schedule.mutator import PyMutator
from tvm.s_tir.meta_schedule.postproc import PyPostproc

from bctvm.errors import BadInputError

from .features import knob_features

FAILED = math.inf


@derived_object
class FitRule(PyPostproc):
    """Accept a candidate only when its knobs resolve and fit the board."""

    def __init__(self, space):
        super().__init__()
        self.space = space

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch) -> bool:
        try:
            values = self.space.values_of(sch)
        except BadInputError:
            return False
        return self.space.check(values, allocator=False, canonical=False) is None

    def clone(self):
        return FitRule(self.space)


@derived_object
class KnobMutator(PyMutator):
    """Change one SampleCategorical decision of a trace to another of its candidates."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, trace, rand_state):
        rng = random.Random(int(rand_state) ^ self.seed)
        insts = [i for i in trace.insts if i.kind.name == "SampleCategorical"
                 and len(i.attrs[0]) > 1]
        if not insts:
            return None
        inst = rng.choice(insts)
        old = int(trace.get_decision(inst))
        new = rng.choice([d for d in range(len(inst.attrs[0])) if d != old])
        return trace.with_decision(inst, new, True)

    def clone(self):
        return KnobMutator(self.seed)


@derived_object
class KnobFeatures(PyFeatureExtractor):
    """One feature row per candidate: KnobSpace.features of its knob values."""

    def __init__(self, space):
        super().__init__()
        self.space = space

    def extract_from(self, context, candidates):
        out = []
        for c in candidates:
            row = knob_features(self.space, self.space.values_of(c.sch))
            out.append(tvm.runtime.tensor(row.reshape(1, -1)))
        return out


@derived_object
class TuneProgress(PyMeasureCallback):
    """Progress bar (tqdm) of a task's measurements with the best cycles so far; `curve`
    holds every measured cost in order (inf for a failed build or run)."""

    def __init__(self, bar, best: float = FAILED):
        super().__init__()
        self.bar = bar
        self.best = best
        self.curve: list[float] = []

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
              runner_results) -> None:
        for b, r in zip(builder_results, runner_results):
            ok = b.error_msg is None and r.error_msg is None and r.run_secs
            cost = float(np.mean([float(v) for v in r.run_secs])) if ok else FAILED
            self.curve.append(cost)
            self.best = min(self.best, cost)
        self.bar.update(len(runner_results))
        if self.best < FAILED:
            self.bar.set_postfix_str(f"best {int(self.best):,} cycles")
