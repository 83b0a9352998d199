"""The knob space of one tuning task: which schedule knobs MetaSchedule samples, their
candidate values, and how a sample becomes the project's ScheduleKnobs (the one adapter
between MetaSchedule and schedules/knobs.py; extend `_knobs` when knobs are added).

A sample is recorded as annotations `bctvm.knob.<name>` on the workload's output block,
whose values are MetaSchedule random variables:

    v = sch.sample_perfect_tile(co_loop, n=2)[1]     # tile knobs: a divisor of the extent
    v = sch.sample_categorical([0, 1, ...], probs)   # choice knobs: an index into `values`
    sch.annotate(out_block, "bctvm.knob.l0.oc_chunk", v)

so a trace's decisions are the knobs: MetaSchedule's mutators change decisions, replaying
the trace re-annotates, and the builder (builder.py) reads the annotations back
(`KnobSpace.decode`) and compiles the group with those knobs. The fit rule
(`KnobSpace.check`: schedules.knobs.resolve_knobs with every knob fixed, which validates
the knobs, then bctvm.lower.fit.fits, the SRAM allocator on the scheduled group: the one fit
rule of the compiler) rejects a sample before it is built or measured.

Knobs (per task; a knob with one possible value is left out):
- per layer `oc_chunk` (tile of the layer's output-channel tiles), `ci_chunk` (tile of its
  input-channel tiles per packed group, i.e. GEMM passes);
- last layer `sub_rows` (a divisor of the block's output rows), `rows_outer` (loop order of
  row sub-tiles and channel chunks), `inp_per_pass` (one-layer ungrouped groups);
- `chunked_handover` (groups of several layers: each finished output-channel chunk of an
  inner layer moves to the next layer's input at once, or the whole block after the layer);
- `blocks_inside` (groups over several blocks: blocks inside output-channel chunks, so
  streamed weights are read once, or chunks inside blocks; a group of several layers then
  keeps the maps between its layers whole on chip);
- `vthreads` (1 or 2), `weight_copies` (copies of streamed weight tiles, 1 or 2,
  independently of vthreads), `weights_resident`, `bias_resident`;
- `residual_path`: how residuals from the group input / an earlier layer are kept (input in
  the accumulator, identity GEMM from the input buffer, or re-read from DRAM), as
  bctvm.lower.group offers them for the task.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from bctvm.errors import BadInputError
from bctvm.lower.fit import fits, residual_paths
from schedules.block_conv2d import group_compute, resolve_residuals
from schedules.knobs import (LayerKnobs, ScheduleKnobs, block_count, estimate_dram_bytes,
                             group_footprint, per_pass_eligible, resolve_knobs)

ANN = "bctvm.knob."


@dataclass(frozen=True)
class Knob:
    """One sampled knob. kind "tile": sample_perfect_tile of a loop of `extent` (values are
    its divisors); kind "choice": sample_categorical over `values`."""

    name: str
    kind: str
    values: tuple
    block: str = ""  # tile knobs: the block whose loop is tiled
    loop: int = 0  # tile knobs: index of the loop in get_loops(block)


def _overlap_knobs(cfg, specs) -> list[Knob]:
    """Loop order and weight buffering: `blocks_inside` where the group runs over several
    blocks, `weight_copies` (streamed weights double-buffered independently of vthreads)."""
    out = []
    if block_count(cfg, specs[0]) > 1:
        out.append(Knob("blocks_inside", "choice", (False, True)))
    out.append(Knob("weight_copies", "choice", (2, 1)))
    return out


def _divisors(n: int) -> tuple:
    return tuple(d for d in range(1, n + 1) if n % d == 0)


class KnobSpace:
    """The knobs of a task (cfg, specs, residual sources); see the module docstring."""

    def __init__(self, cfg, specs, residuals):
        self.cfg = cfg
        self.specs = tuple(specs)
        self.residuals = list(resolve_residuals(self.specs, residuals))
        self.paths = residual_paths(cfg, self.specs, self.residuals)
        self.knobs = self._knobs()
        self.by_name = {k.name: k for k in self.knobs}

    # ---- the space --------------------------------------------------------------------------
    def _knobs(self) -> list[Knob]:
        cfg, specs = self.cfg, self.specs
        g = self.stages(self.paths[0])
        last = len(specs) - 1
        out = []
        for i, (spec, ls) in enumerate(zip(specs, g.layers)):
            if spec.co_tiles(cfg) > 1:  # loop 3 of the epilogue: (n, bi, bj, co, y, x, b, o)
                out.append(Knob(f"l{i}.oc_chunk", "tile", _divisors(spec.co_tiles(cfg)),
                                ls.epi.op.name, 3))
            tig = spec.ci_tiles_per_group(cfg)
            if tig > 1:  # the conv's reduction over input tiles: 4th loop from the end
                out.append(Knob(f"l{i}.ci_chunk", "tile", _divisors(tig), ls.conv.op.name, -4))
        oh = specs[last].out_block[0]
        if oh > 1:
            out.append(Knob(f"l{last}.sub_rows", "choice", _divisors(oh)))
            out.append(Knob(f"l{last}.rows_outer", "choice", (True, False)))
        if per_pass_eligible(cfg, specs):
            out.append(Knob(f"l{last}.inp_per_pass", "choice", (False, True)))
        if len(specs) > 1:
            out.append(Knob("chunked_handover", "choice", (True, False)))
        out += _overlap_knobs(cfg, specs)
        out.append(Knob("vthreads", "choice", (2, 1)))
        out.append(Knob("weights_resident", "choice", (True, False)))
        out.append(Knob("bias_resident", "choice", (True, False)))
        if len(self.paths) > 1:
            out.append(Knob("residual_path", "choice", tuple(range(len(self.paths)))))
        return out

    def stages(self, path) -> object:
        """The TE stages of the group for a residual path (input_on_chip, identity)."""
        return self._stages[tuple(path)]

    @cached_property
    def _stages(self) -> dict:
        return {tuple(p): group_compute(self.cfg, self.specs, self.residuals, input_on_chip=p[0],
                                        identity_residuals=p[1]) for p in self.paths}

    @property
    def output_block(self) -> str:
        return self.stages(self.paths[0]).output.op.name

    # ---- MetaSchedule side ------------------------------------------------------------------
    def sample(self, sch, decisions: dict | None = None):
        """The design space: sample every knob into annotations of the output block.
        `decisions` {knob name: value} fixes the samples (the default knobs' record)."""
        decisions = decisions or {}
        out = sch.get_sblock(self.output_block)
        for k in self.knobs:
            v = decisions.get(k.name)
            if k.kind == "tile":
                loop = sch.get_loops(sch.get_sblock(k.block))[k.loop]
                n = k.values[-1]
                dec = None if v is None else [n // v, v]
                rv = sch.sample_perfect_tile(loop, n=2, max_innermost_factor=n, decision=dec)[1]
            else:
                probs = [1.0 / len(k.values)] * len(k.values)
                dec = None if v is None else k.values.index(v)
                rv = sch.sample_categorical(list(range(len(k.values))), probs, decision=dec)
            sch.annotate(out, ANN + k.name, rv)
        return sch

    def values_of(self, sch) -> dict:
        """{knob name: value} of a sampled schedule (its output block's annotations)."""
        ann = sch.get(sch.get_sblock(self.output_block)).annotations
        vals = {}
        for k in self.knobs:
            a = ann.get(ANN + k.name)
            if a is None:
                raise BadInputError(f"sample has no knob {k.name}")
            a = int(a)
            vals[k.name] = a if k.kind == "tile" else k.values[a]
        return vals

    # ---- project side -----------------------------------------------------------------------
    def to_knobs(self, values: dict) -> tuple[ScheduleKnobs, tuple]:
        """(ScheduleKnobs, residual path (input_on_chip, identity_residuals)) of knob values."""
        layers = []
        last = len(self.specs) - 1
        for i, spec in enumerate(self.specs):
            oh = spec.out_block[0]
            sub = values.get(f"l{i}.sub_rows", oh) if i == last else None
            layers.append(LayerKnobs(
                oc_chunk=values.get(f"l{i}.oc_chunk", spec.co_tiles(self.cfg)),
                sub_rows=sub,
                rows_outer=values.get(f"l{i}.rows_outer", True) if (sub or oh) < oh else True,
                ci_chunk=values.get(f"l{i}.ci_chunk", spec.ci_tiles_per_group(self.cfg)),
                inp_per_pass=values.get(f"l{i}.inp_per_pass", False)))
        knobs = ScheduleKnobs(layers=tuple(layers), vthreads=values["vthreads"],
                              weights_resident=values["weights_resident"],
                              bias_resident=values["bias_resident"],
                              chunked_handover=values.get("chunked_handover", True),
                              blocks_inside=values.get("blocks_inside", False),
                              weight_copies=values.get("weight_copies"))
        return knobs, tuple(self.paths[values.get("residual_path", 0)])

    def from_knobs(self, knobs: ScheduleKnobs) -> dict:
        """Knob values of resolved ScheduleKnobs (what compile_group chose): the inverse of
        to_knobs, for the default knobs' record."""
        path = (bool(knobs.input_on_chip), bool(knobs.identity_residuals))
        vals = {"vthreads": knobs.vthreads, "weights_resident": bool(knobs.weights_resident),
                "bias_resident": bool(knobs.bias_resident),
                "chunked_handover": bool(knobs.chunked_handover),
                "blocks_inside": bool(knobs.blocks_inside),
                "weight_copies": knobs.wgt_copies}
        if "residual_path" in self.by_name:
            vals["residual_path"] = [tuple(p) for p in self.paths].index(path)
        last = len(self.specs) - 1
        for i, spec in enumerate(self.specs):
            lk = knobs.layer(i)
            vals[f"l{i}.oc_chunk"] = lk.oc_chunk
            vals[f"l{i}.ci_chunk"] = lk.ci_chunk
            if i == last:
                vals[f"l{i}.sub_rows"] = lk.sub_rows
                vals[f"l{i}.rows_outer"] = lk.rows_outer is not False
                vals[f"l{i}.inp_per_pass"] = bool(lk.inp_per_pass)
        return {k.name: vals[k.name] for k in self.knobs}

    def resolved(self, values: dict) -> ScheduleKnobs:
        """The knobs as the schedule will use them (group-set fields filled); raises
        BadInputError / BufferFitError when they are invalid or do not fit (the fit rule)."""
        knobs, path = self.to_knobs(values)
        g = self.stages(path)
        kept = tuple(sorted({r for r, ls in zip(g.residuals, g.layers)
                             if isinstance(r, int) and ls.res_pad is None}))
        knobs = replace(knobs, input_on_chip=g.data_out is not None, kept_outputs=kept,
                        identity_residuals=g.identity_pairs())
        return resolve_knobs(self.cfg, self.specs, knobs)

    def check(self, values: dict) -> str | None:
        """None when the knobs are valid and fit the board, else why not."""
        try:
            knobs = self.resolved(values)
        except BadInputError as err:
            return str(err)
        _, (ioc, ident) = self.to_knobs(values)
        if not fits(self.cfg, self.specs, knobs, self.residuals, ioc, ident):
            return "the SRAM allocator cannot place the group with these knobs"
        return None

    def compile_kwargs(self, values: dict) -> dict:
        """Keyword arguments of bctvm.lower.compile_group for these knob values."""
        knobs, (ioc, ident) = self.to_knobs(values)
        return {"knobs": knobs, "input_on_chip": ioc, "identity_residuals": ident}

    # ---- cost-model features ----------------------------------------------------------------
    def features(self, values: dict) -> np.ndarray:
        """One feature row of a sample: every knob value (tiles as a fraction of their
        extent), the buffer footprints as fractions of the depths and the estimated DRAM bytes
        (log2) of the project's models; zeros for the derived part when the sample does not
        resolve."""
        row = []
        for k in self.knobs:
            v = values[k.name]
            row.append(v / k.values[-1] if k.kind == "tile" else float(k.values.index(v)))
        try:
            r = self.resolved(values)
            fp = group_footprint(self.cfg, self.specs, r)
            cfg = self.cfg
            dram = sum(estimate_dram_bytes(cfg, s, r.layer(i).oc_chunk, r.layer(i).sub_rows
                                           or s.out_block[0], r.layer(i).rows_outer is not False,
                                           bool(r.weights_resident), i == 0, r.bias_resident,
                                           bool(r.layer(i).inp_per_pass),
                                           bool(r.blocks_inside))
                       for i, s in enumerate(self.specs))
            passes = sum(s.ci_tiles_per_group(cfg) // (r.layer(i).ci_chunk or 1)
                         * s.co_tiles(cfg) // r.layer(i).oc_chunk for i, s in enumerate(self.specs))
            row += [fp["inp"] / cfg.inp_depth, fp["wgt"] / cfg.wgt_depth,
                    fp["acc"] / cfg.acc_depth, float(np.log2(max(dram, 1))),
                    float(np.log2(passes)), float(r.vthreads)]
        except BadInputError:
            row += [0.0] * 6
        return np.asarray(row, dtype="float32")
