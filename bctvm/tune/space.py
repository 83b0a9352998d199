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
rule of the compiler) rejects a sample before it is built or measured: the search's
postprocessor uses the footprint-model part (cheap), the builder the whole rule.

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

from bctvm.errors import BadInputError
from bctvm.lower.fit import fits, residual_paths
from schedules.block_conv2d import group_compute, resolve_residuals, resolve_sources
from schedules.knobs import (LayerKnobs, ScheduleKnobs, block_count, per_pass_eligible,
                             resolve_knobs)

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


def _key(values: dict) -> tuple:
    return tuple(sorted(values.items()))


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
    """The knobs of a task (cfg, specs, residual sources, data sources: each layer's input,
    None a chain); see the module docstring."""

    def __init__(self, cfg, specs, residuals, sources=None):
        self.cfg = cfg
        self.specs = tuple(specs)
        self.residuals = list(resolve_residuals(self.specs, residuals))
        self.sources = resolve_sources(self.specs, sources)
        self.paths = residual_paths(cfg, self.specs, self.residuals)
        self.knobs = self._knobs()
        self.by_name = {k.name: k for k in self.knobs}
        self._checked: dict = {}  # (knob values, allocator) -> check's answer
        self._resolved: dict = {}  # knob values -> resolved knobs or the error

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
                                        identity_residuals=p[1], sources=self.sources)
                for p in self.paths}

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
        BadInputError / BufferFitError when they are invalid or do not fit (the fit rule).
        Memoised per knob values, like check."""
        key = _key(values)
        if key not in self._resolved:
            try:
                self._resolved[key] = self._resolve(values)
            except BadInputError as err:
                self._resolved[key] = err
        got = self._resolved[key]
        if isinstance(got, BadInputError):
            raise type(got)(*got.args)  # a fresh error: the cached one keeps no traceback
        return got

    def _resolve(self, values: dict) -> ScheduleKnobs:
        knobs, path = self.to_knobs(values)
        g = self.stages(path)
        kept = tuple(sorted({r for r, ls in zip(g.residuals, g.layers)
                             if isinstance(r, int) and ls.res_pad is None}))
        knobs = replace(knobs, input_on_chip=g.data_out is not None, kept_outputs=kept,
                        identity_residuals=g.identity_pairs())
        return resolve_knobs(self.cfg, self.specs, knobs)

    def check(self, values: dict, allocator: bool = True,
              canonical: bool = True) -> str | None:
        """None when the knobs are valid and fit the board as they are, else why not: a
        sample that resolve_knobs would change (it falls back to other tiles or one virtual
        thread when the sampled ones do not fit; rows_outer without row sub-tiles is
        canonically True) is refused, so every measured point is the program it names and
        no two points are one program (`canonical=False` skips this part: the search's
        FitRule, where it would refuse 94-99% of the multi-layer tasks' samples and starve
        MetaSchedule's sampling; the builder refuses such a point, a failed trial).
        `allocator=False`:
        only the footprint model (resolve_knobs: validation and check_fit, well under a
        millisecond), as the search's FitRule uses it; True adds the SRAM allocator on the
        scheduled group (bctvm.lower.fit.fits: a lowering, about 0.3 s), as the builder does.
        Memoised per knob values (the search revisits points of a small space often)."""
        key = (_key(values), allocator, canonical)
        if key not in self._checked:
            self._checked[key] = self._check(values, allocator, canonical)
        return self._checked[key]

    def _check(self, values: dict, allocator: bool, canonical: bool) -> str | None:
        try:
            knobs = self.resolved(values)
            other = {k: (v, values[k]) for k, v in self.from_knobs(knobs).items()
                     if v != values[k]}
            if other and canonical:  # resolve_knobs fell back (e.g. one virtual thread, tiles of 1), or a
                # knob has no effect here: the program is another point's (or its duplicate)
                return "the knobs resolve to other knobs: " + ", ".join(
                    f"{k} {b} -> {a}" for k, (a, b) in sorted(other.items()))
            _, (ioc, ident) = self.to_knobs(values)
            if allocator and not fits(self.cfg, self.specs, knobs, self.residuals, ioc, ident,
                                      self.sources):
                return "the SRAM allocator cannot place the group with these knobs"
        except BadInputError as err:  # invalid, or refused by the footprint model
            return str(err)
        return None

    def compile_kwargs(self, values: dict) -> dict:
        """Keyword arguments of bctvm.lower.compile_group for these knob values."""
        knobs, (ioc, ident) = self.to_knobs(values)
        return {"knobs": knobs, "input_on_chip": ioc, "identity_residuals": ident}
