"""Compile a block-conv group to VTA programs (fused or layer by layer) and run them.

This is what the compile driver calls per fused group:

    cg = compile_group(cfg, specs, mode="fused" | "layerwise", knobs=None,
                       residual_source="external" | "input", name="g0")
    img = cg.image(x, layers)           # DRAM image with input, weights, biases, residuals
    run = run_group(cg, img)            # on the simulator: output, cycles, DRAM bytes by kind

- fused: one program; every intermediate block goes from the output buffer to the input buffer
  on chip (OUT_INP), so needs a board with `onchip_reuse`; the group's DRAM traffic is its
  input, weights, output and micro-ops (and residual inputs) only.
- layerwise: stock VTA, one program per layer, each layer's output goes to DRAM ("fm<i>",
  kind feature_maps) and is read back by the next program.
- residuals from the group input or an earlier layer of a fused group: kept whole in the
  accumulator (input_on_chip / kept outputs), else read from the input buffer by an identity
  GEMM (identity_residuals: no whole block in the accumulator, the input read once), else
  (the group input only) read from DRAM a second time; the first that fits is used.
DRAM region names: "data" (group input), "l<i>_weight|bias|sign|residual", "identity" (the
identity weight tile of residual GEMMs, kind weights), "fm<i>", "out", "uops:<program>".
`layers[i]` is a dict with "weight" (OIHW int8), "bias" (int32 [Co]), optional "sign" (int32
+-1 [Co]) and "residual" (NCHW int8) in NCHW terms; packing is done here (biases with their
folded rounding constant, schedules.layout.pack_bias; the identity tile by image() itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from boards import BoardConfig
from bctvm.errors import BadInputError
from schedules.block_conv2d import group_compute, resolve_residuals, resolve_sources
from schedules.layer import LayerSpec
from schedules.layout import (identity_weight, pack_activation, pack_bias, pack_channel_vector,
                              pack_weight, unpack_activation)
from schedules.schedule import scheduled_module

from .fit import GroupFit, fit_group
from .pipeline import build_program
from .program import DramLayout, VtaProgram

MODES = ("fused", "layerwise")


@dataclass
class CompiledGroup:
    cfg: BoardConfig
    specs: tuple
    mode: str
    residual_source: str
    layout: DramLayout
    programs: list
    knobs: list = field(default_factory=list)  # resolved ScheduleKnobs per program
    fits: list = field(default_factory=list)  # GroupFit per program (bctvm.lower.fit)

    @property
    def input_region(self) -> str:
        return "data"

    @property
    def output_region(self) -> str:
        return "out"

    def image(self, x: np.ndarray, layers: list) -> np.ndarray:
        """DRAM image holding the NCHW int8 input `x`, every layer's packed parameters, the
        residual inputs and the programs' micro-ops. x=None and layers without "residual"
        leave those regions zero (an artifact's template image, filled at run time)."""
        cfg = self.cfg
        if len(layers) != len(self.specs):
            raise BadInputError(f"{len(layers)} layer parameter sets for {len(self.specs)} layers")
        s0 = self.specs[0]
        want = (s0.batch, s0.in_channels, s0.height, s0.width)
        arrays = {}
        if x is not None:
            if tuple(x.shape) != want or x.dtype != np.int8:
                raise BadInputError(f"group input must be int8 {want}, got {x.dtype} "
                                    f"{tuple(x.shape)}")
            arrays["data"] = pack_activation(x, cfg)
        for i, (spec, p) in enumerate(zip(self.specs, layers)):
            arrays[f"l{i}_weight"] = pack_weight(np.asarray(p["weight"], np.int8), cfg, spec.groups)
            arrays[f"l{i}_bias"] = pack_bias(np.asarray(p["bias"], np.int32), spec, cfg)
            if spec.sign:
                arrays[f"l{i}_sign"] = pack_channel_vector(np.asarray(p["sign"], np.int32), cfg, 1)
            rname = f"l{i}_residual"
            if (spec.residual_shift is not None and rname in self.layout.regions
                    and p.get("residual") is not None):
                arrays[rname] = pack_activation(np.asarray(p["residual"], np.int8), cfg, cfg.block_out)
        if "identity" in self.layout.regions:
            arrays["identity"] = identity_weight(cfg)
        for prog in self.programs:
            arrays.update(prog.static_arrays())
        return self.layout.image(arrays)

    def read_output(self, dram: np.ndarray) -> np.ndarray:
        """NCHW int8 output of the group from a final DRAM image."""
        return unpack_activation(self.layout.read(dram, "out"), self.specs[-1].out_channels)


def _param_shapes(cfg: BoardConfig, spec: LayerSpec) -> dict:
    nb = spec.batch // cfg.batch
    oh, ow = spec.out_size
    vec = (spec.co_tiles(cfg), cfg.batch, cfg.block_out)
    return {
        "weight": ((spec.co_tiles(cfg), spec.ci_tiles_per_group(cfg), *spec.kernel,
                    cfg.block_out, cfg.block_in), "int8"),
        "bias": (vec, "int32"),
        "sign": (vec, "int32"),
        "residual": ((nb, spec.co_tiles(cfg), oh, ow, cfg.batch, cfg.block_out), "int8"),
        "out": ((nb, spec.co_tiles(cfg), oh, ow, cfg.batch, cfg.block_out), "int8"),
    }


def _layout(cfg: BoardConfig, specs, mode: str, residuals: list,
            identity: bool = False) -> DramLayout:
    lay = DramLayout(cfg)
    s0 = specs[0]
    lay.add("data", "input", (s0.batch // cfg.batch, s0.ci_tiles(cfg), s0.height, s0.width,
                              cfg.batch, cfg.block_in), "int8")
    if identity:
        lay.add("identity", "weights", (cfg.block_out, cfg.block_in), "int8")
    last = len(specs) - 1
    for i, spec in enumerate(specs):
        sh = _param_shapes(cfg, spec)
        lay.add(f"l{i}_weight", "weights", *sh["weight"])
        lay.add(f"l{i}_bias", "weights", *sh["bias"])
        if spec.sign:
            lay.add(f"l{i}_sign", "weights", *sh["sign"])
        if residuals[i] == "external":
            lay.add(f"l{i}_residual", "input", *sh["residual"])
        if mode == "layerwise" and i < last:
            lay.add(f"fm{i}", "feature_maps", *sh["out"])
    lay.add("out", "output", *_param_shapes(cfg, specs[-1])["out"])
    return lay


def plan_fits(cfg: BoardConfig, specs, mode: str = "fused", residual_source="external",
              knobs=None, input_on_chip: bool | None = None,
              identity_residuals: bool | None = None, sources=None) -> list:
    """The GroupFit of every program of a group: one (fused, or one layer) or one per layer
    (layerwise, each with its residual from DRAM). `knobs` as for compile_group. Raises
    BufferFitError naming the layer(s) when a program cannot fit."""
    specs = tuple(specs)
    if mode == "fused" or len(specs) == 1:
        k = knobs[0] if isinstance(knobs, (list, tuple)) else knobs
        return [fit_group(cfg, specs, residual_source, k, input_on_chip, identity_residuals,
                          sources)]
    return [fit_group(cfg, [s], "external", knobs[i] if isinstance(knobs, (list, tuple))
                      else knobs) for i, s in enumerate(specs)]


def compile_group(cfg: BoardConfig, specs, mode: str = "fused", knobs=None,
                  residual_source="external", name: str = "g",
                  input_on_chip: bool | None = None,
                  identity_residuals: bool | None = None, fit=None,
                  sources=None) -> CompiledGroup:
    """VTA programs of a chain of block-conv layers (see the module docstring).

    knobs: a ScheduleKnobs for the fused program, or (layerwise) a list with one per layer;
    None resolves defaults that fit the board. residual_source: "external", "input" (the last
    layer adds the group input) or per layer None / "external" / "input" / an earlier layer's
    index (schedules.block_conv2d.resolve_residuals). input_on_chip (fused, a residual from
    the group input): keep the input block in the accumulator so it is read from DRAM once;
    None = when it fits. identity_residuals (fused, residuals from the group input or an
    earlier layer): read them from the input buffer by an identity GEMM; None = when the
    accumulator ways do not fit (before re-reading the input from DRAM). The path taken is in
    `knobs[0]` (input_on_chip, kept_outputs, identity_residuals). fit: the GroupFit (fused)
    or one per layer (layerwise) a planner chose (plan_fits); None plans here. The programs
    are built with exactly those knobs: no retry, the fit rule is bctvm.lower.fit.
    sources: each layer's data input, "input" or an earlier layer's index (default a chain;
    schedules.block_conv2d.resolve_sources): a branch reads the group input."""
    specs = tuple(specs)
    if mode not in MODES:
        raise BadInputError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "fused" and len(specs) > 1 and not cfg.onchip_reuse:
        raise BadInputError(f"group {name}: fused mode keeps blocks on chip and needs a board with "
                            f"onchip_reuse; board '{cfg.name}' has none (use mode='layerwise')")
    residuals = resolve_residuals(specs, residual_source)
    srcs = resolve_sources(specs, sources)
    single = mode == "fused" or len(specs) == 1
    if fit is None:
        fit = plan_fits(cfg, specs, mode, residuals, knobs, input_on_chip, identity_residuals,
                        srcs)
    fits = [fit] if isinstance(fit, GroupFit) else list(fit)
    if len(fits) != (1 if single else len(specs)):
        raise BadInputError(f"group {name}: {len(fits)} fits for {len(specs)} layers ({mode})")
    programs: list[VtaProgram] = []
    if single:
        f = fits[0]
        group = group_compute(cfg, specs, residuals, input_on_chip=f.input_on_chip,
                              identity_residuals=f.identity_residuals, sources=srcs)
        layout = _layout(cfg, specs, mode, residuals, identity=group.identity is not None)
        mod, _ = scheduled_module(group, f.knobs)
        programs.append(build_program(cfg, mod, layout, {"data": "data", "out": "out"},
                                      name=name))
    else:
        layout = _layout(cfg, specs, mode, residuals)
        last = len(specs) - 1
        for i, (spec, f) in enumerate(zip(specs, fits)):
            group = group_compute(cfg, [spec], "external")
            mod, _ = scheduled_module(group, f.knobs)
            r = residuals[i]
            params = {
                "data": "data" if srcs[i] == "input" else f"fm{srcs[i]}",
                "out": "out" if i == last else f"fm{i}",
                "l0_weight": f"l{i}_weight", "l0_bias": f"l{i}_bias", "l0_sign": f"l{i}_sign",
                "l0_residual": ("data" if r == "input" else f"fm{r}" if isinstance(r, int)
                                else f"l{i}_residual"),
            }
            programs.append(build_program(cfg, mod, layout, params, name=f"{name}.l{i}"))
    used = [f.knobs for f in fits]
    return CompiledGroup(cfg, specs, mode, residual_source, layout, programs, used, fits)


@dataclass
class GroupRun:
    """Result of running a compiled group on the simulator."""

    output: np.ndarray  # NCHW int8
    dram: np.ndarray
    cycles: int
    latency_ms: float
    dram_bytes: dict  # kind -> bytes read + written (+ "instructions", "total")
    counters: list  # per program
    results: list

    def macs(self) -> int:
        return sum(int(c.get("macs", 0)) for c in self.counters)


def run_group(cg: CompiledGroup, dram: np.ndarray, sim=None) -> GroupRun:
    """Run the group's programs in order on one DRAM image (bctvm.sim)."""
    from bctvm.sim import Simulator

    sim = sim or Simulator(cg.cfg)
    regions = cg.layout.region_map()
    results, counters = [], []
    cycles = 0
    by_kind = {k: 0 for k in ("input", "output", "weights", "feature_maps", "uops")}
    insn_bytes = 0
    for prog in cg.programs:
        res = sim.run(prog.instructions, dram, regions=regions)
        dram = res.dram
        cycles += int(res.cycles)
        c = res.counters
        for k, v in cg.layout.bytes_by_kind(c.get("region_read_bytes", {})).items():
            by_kind[k] += v
        for k, v in cg.layout.bytes_by_kind(c.get("region_write_bytes", {})).items():
            by_kind[k] += v
        insn_bytes += int(c.get("insn_bytes", 0))
        results.append(res)
        counters.append(c)
    by_kind["instructions"] = insn_bytes
    by_kind["total"] = sum(by_kind.values())
    return GroupRun(cg.read_output(dram), dram, cycles, cycles / (cg.cfg.clock_mhz * 1e3),
                    by_kind, counters, results)
