"""The compile driver: a model -> a self-contained artifact directory for a board.

    summary = compile_model("block_resnet18", out_dir="build/r18", board="zcu102",
                            mode="fused", input_shape=(1, 3, 64, 64), block_size=16)

Steps (one way: model -> graph passes -> schedules -> VTA programs -> artifact):
1. relay_passes up to PlanFusedGroups (import, legalize, fold BN, one calibration, quantize,
   pack, plan);
2. segment the plan into VTA programs, each with its fit (plan.plan_segments: residual
   path, knobs, footprint by the one fit rule, bctvm.lower.fit; what `bctvm plan` prints),
   then compile each with exactly that fit with the schedules and the "bctvm" TIR pipeline
   (bctvm.lower.compile_group), ahead of time; a single layer that cannot fit is an error
   naming it and the buffer (or, with host_fallback, runs on the host);
3. Partition with the segments as groups, turn each group call into an external call
   (host_module.py) and build the host side for llvm (`export_library`);
4. write the artifact (bctvm.runtime.artifact documents the files) into a staging folder
   beside `out_dir`, record every file's size and SHA-256 in the manifest (written last),
   and rename the folder into place (bctvm.outputs.staged_dir): an interrupted or failed
   compile leaves `out_dir` as it was.
"""

from __future__ import annotations

import json
import platform
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tqdm import tqdm

import bctvm
from bctvm.errors import BadInputError
from bctvm.lower.group import CompiledGroup, compile_group
from bctvm.outputs import staged_dir
from bctvm.runtime.artifact import FORMAT as ARTIFACT_FORMAT
from bctvm.runtime.artifact import VERSION as ARTIFACT_VERSION
from bctvm.runtime.integrity import MANIFEST, files_digest, record_files
from boards import BoardConfig, board_to_dict, load_board
from relay_passes.fold_max_pool import folded_qnet
from relay_passes.partition import Partition, vta_groups
from relay_passes.pipeline import run_pipeline, zoo_kwargs
from relay_passes.plan_fused_groups import PLAN_ATTR, FusedPlan
from schedules.from_quant import params_from_qconv
from schedules.knobs import BufferFitError

from .host_module import dispatch_groups, group_signature
from .host_reasons import format_host_lines, host_reasons
from .plan import program_plan
from .segment import MODES, Segment, grid_changes, segment_specs

@dataclass
class CompiledSegment:
    seg: Segment
    cg: CompiledGroup
    seconds: float
    knobs: dict | None = None  # where the knobs came from (manifest group "knobs")


def is_task(seg: Segment) -> bool:
    """Whether a segment is one fused program (a chain, or a group with branches reading the
    same resident input): the programs a tuning task describes."""
    return len(seg.fits) == 1


def compile_segments(cfg: BoardConfig, segments: list[Segment], qnet, mode: str, batch: int,
                     progress: bool = True, tuned=None) -> list[CompiledSegment]:
    """Compile every planned segment (program_plan) with the fit the plan chose for it.
    `tuned`: a bctvm.tune.TuningLog; a one-program segment whose task has a record there is built
    with the record's knobs when they fit (the planned fit otherwise, with a warning); the
    manifest group's "knobs" says which."""
    qlayers = {layer.name: layer for layer in qnet.layers}
    done: list[CompiledSegment] = []
    bar = tqdm(total=sum(len(s.layers) for s in segments), desc="VTA programs", unit="layer",
               disable=not progress, leave=False)
    try:
        for seg in segments:
            name = f"g{len(done)}"
            bar.set_postfix_str(f"{seg.layers[0]}" + (f" +{len(seg.layers) - 1}"
                                                      if len(seg.layers) > 1 else ""))
            t0 = time.perf_counter()
            specs = segment_specs([qlayers[n] for n in seg.layers], batch, seg.sources)
            knobs = (tuned.knobs_for(cfg, specs, seg.residuals, seg.sources)
                     if tuned is not None and is_task(seg) else None)
            cg = None
            if knobs is not None:
                try:
                    cg = compile_group(cfg, specs, mode="fused" if len(specs) > 1 else mode,
                                       residual_source=list(seg.residuals), name=name,
                                       sources=list(seg.sources) or None,
                                       **knobs.compile_kwargs)
                except BufferFitError as err:
                    tqdm.write(f"warning: group {name}: the tuning log's knobs do not fit "
                               f"({err}); the planned knobs are used")
                    knobs = None
            if cg is None:  # compiled while planning (fused vs split weighed), or now
                cg = seg.compiled or compile_group(
                    cfg, specs, mode="fused" if len(specs) > 1 else mode,
                    residual_source=list(seg.residuals), name=name, fit=seg.fits,
                    sources=list(seg.sources))
            for prog in cg.programs:
                prog.name = name
            info = knobs.manifest(cg) if knobs else (
                tuned.default_manifest(cg) if tuned is not None else None)
            done.append(CompiledSegment(seg, cg, time.perf_counter() - t0, info))
            bar.update(len(seg.layers))
    finally:
        bar.close()
    return done


def tensor_kinds(plan: FusedPlan, compiled: list[CompiledSegment]) -> dict[str, str]:
    """Model-level kind of every tensor a VTA program reads or writes: "input" (made on the
    host before the first VTA program), "output" (the last program's output), else
    "feature_maps" (a group boundary through DRAM)."""
    first = min(plan.layers[c.seg.layers[0]].position for c in compiled)
    kinds = {}
    for c in compiled:
        for t in c.seg.inputs:
            info = plan.tensors[t]
            kinds[t] = "input" if info.producer is None and info.position < first \
                else "feature_maps"
        kinds[c.seg.output] = "feature_maps"
    kinds[compiled[-1].seg.output] = "output"
    return kinds


def compile_model(source, *, out_dir, force: bool = False, **kw) -> dict:
    """Compile `source` (zoo name, .pt2 file, file.py:factory or nn.Module) into `out_dir`;
    returns the manifest (also written as manifest.json); keywords as _compile_into.

    `out_dir` is checked first (a file, or a non-empty folder that holds no artifact unless
    `force`, is refused) and replaced as a whole only when the compile completes: the work
    goes into a staging folder beside it (bctvm.outputs.staged_dir)."""
    with staged_dir(out_dir, force) as stage:
        return _compile_into(source, stage, **kw)


@dataclass
class FrontEnd:
    """A model through the graph passes and segmented for a board (compile steps 1-2)."""

    cfg: BoardConfig
    result: object  # relay_passes PipelineResult
    plan: FusedPlan
    qnet: object
    vta_qnet: object  # convs as the graph has them after FoldMaxPool
    segments: list
    batch: int
    reasons: dict  # host layer -> why it runs on the host (host_reasons)
    fallbacks: dict = field(default_factory=dict)  # --host-fallback layers


def front_end(source, *, board="pynq", mode: str = "fused", block_size=None, block_type=None,
              padding_mode=None, input_shape=(1, 3, 224, 224), calib: int = 1,
              stem: str = "auto", qnet=None, progress: bool = True,
              checkpoint=None, host_fallback: bool = False, policy: str = "graph",
              need_vta: bool = True) -> FrontEnd:
    """Graph passes up to PlanFusedGroups (grouping `policy`), the program plan and its
    segments, made once (see compile_model); `need_vta`: a model with no VTA layer is an
    error."""
    if mode not in MODES:
        raise BadInputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    cfg = load_board(board)
    kw = zoo_kwargs(source, block_size, block_type, padding_mode, checkpoint)
    if qnet is not None and not hasattr(qnet, "layers"):
        from bctvm.quant.serialize import load_qnet

        qnet = load_qnet(qnet)
    result = run_pipeline(source, board=cfg, input_shape=tuple(input_shape), calib=calib,
                          stem=stem, qnet=qnet, stop_after="PlanFusedGroups",
                          progress=progress, policy=policy, **kw)
    plan, qnet, imported = result.plan, result.qnet, result.imported
    batch = int(imported.example_input.shape[0])
    vta_qnet = folded_qnet(plan, qnet)  # convs as the graph has them after FoldMaxPool
    fallbacks: dict[str, str] = {}
    seg_plan, segments = program_plan(plan, vta_qnet, mode, batch, cfg, host_fallback,
                                      fallbacks, progress)
    if need_vta and not segments and not fallbacks:
        raise BadInputError(f"{imported.name}: no layer of the model runs on VTA (board "
                            f"'{cfg.name}'); nothing to compile")
    reasons = host_reasons(plan, vta_qnet, segments, cfg, batch=batch, stem=stem,
                           fallbacks=fallbacks)
    return FrontEnd(cfg, result, seg_plan, qnet, vta_qnet, segments, batch, reasons, fallbacks)


def compiled_segments(source, *, mode: str = "fused", progress: bool = True, **kw):
    """(board config, [CompiledSegment]) of a model with the planned knobs: the VTA programs
    `bctvm compile` makes (the tuner's tasks come from them)."""
    fe = front_end(source, mode=mode, progress=progress, **kw)
    return fe.cfg, compile_segments(fe.cfg, fe.segments, fe.vta_qnet, mode, fe.batch, progress)


def _compile_into(source, out_dir, *, board="pynq", mode: str = "fused", block_size=None,
                  block_type=None, padding_mode=None, input_shape=(1, 3, 224, 224),
                  calib: int = 1, stem: str = "auto", qnet=None, host_fallback: bool = False,
                  opt_level: int = 2, progress: bool = True, checkpoint=None,
                  tuning_log=None) -> dict:
    """Compile `source` into the (staging) folder `out_dir`. `qnet`: a QuantizedNet or the
    path of a saved one (bctvm.quant.save_qnet) to use instead of calibrating (a .pt2 model
    has no nn.Module to calibrate). `host_fallback`: a layer that cannot fit the board's
    buffers runs on the host (recorded in the manifest's "host_fallbacks") instead of being
    an error. `checkpoint`: a PyTorch checkpoint file loaded into the model first.
    `tuning_log`: a `bctvm tune --log` directory; each group uses its task's best
    record (the planned knobs when there is none; the manifest's group "knobs" says which)."""
    out = Path(out_dir)
    tuned = None
    if tuning_log is not None:
        from bctvm.tune.log import TuningLog

        tuned = TuningLog(tuning_log, create=False)
    t_start = time.perf_counter()
    fe = front_end(source, board=board, mode=mode, block_size=block_size,
                   block_type=block_type, padding_mode=padding_mode, input_shape=input_shape,
                   calib=calib, stem=stem, qnet=qnet, progress=progress, checkpoint=checkpoint,
                   host_fallback=host_fallback)
    cfg, result, seg_plan, qnet, vta_qnet, segments, batch, reasons, fallbacks = (
        fe.cfg, fe.result, fe.plan, fe.qnet, fe.vta_qnet, fe.segments, fe.batch, fe.reasons,
        fe.fallbacks)
    plan = result.plan
    imported = result.imported
    t_pass = time.perf_counter()
    compiled = compile_segments(cfg, segments, vta_qnet, mode, batch, progress, tuned)
    if not compiled:
        raise BadInputError(f"{imported.name}: no layer fits board '{cfg.name}' "
                            f"({len(fallbacks)} left to the host); nothing to compile")
    t_vta = time.perf_counter()

    planned = result.stages["PlanFusedGroups"].with_attr(PLAN_ATTR, seg_plan.to_json())
    partitioned = Partition()(planned)
    key = uuid.uuid4().hex[:12]
    names = {gname: f"bctvm.vta.{key}.g{int(f.attrs['bctvm.vta_group'])}"
             for gname, f in vta_groups(partitioned)}
    host_mod = dispatch_groups(partitioned, names)
    out.mkdir(parents=True, exist_ok=True)
    target = tvm.target.Target({"kind": "llvm", "opt-level": int(opt_level)})
    ex = tvm.compile(host_mod, target=target)
    ex.export_library(str(out / "host.so"))
    t_host = time.perf_counter()

    kinds = tensor_kinds(plan, compiled)
    qlayers = {layer.name: layer for layer in vta_qnet.layers}
    groups = [_write_group(out, i, c, partitioned, names, kinds, qlayers, cfg, plan)
              for i, c in enumerate(compiled)]
    _write_references(out, imported, qnet)
    manifest = {
        "format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION, "key": key,
        "model": imported.name, "board": cfg.name, "board_config": board_to_dict(cfg),
        "mode": mode,
        "block": {"block_size": block_size, "type": block_type, "padding_mode": padding_mode,
                  "stem": stem},
        "input": {"name": "x", "shape": list(imported.input_shape), "dtype": "float32",
                  "exponent": int(qnet.input_exponent)},
        "boundary": {"shape": [int(batch), *qnet.boundary_shape],
                     "exponent": int(qnet.boundary_exponent)},
        "output": _output_signature(host_mod),
        "host_library": "host.so", "qnet": "qnet", "float_model": "model.pt2",
        "host_layers": list(reasons) + list(fallbacks),
        "host_reasons": {**reasons, **{k: f"does not fit the board: {v}"
                                       for k, v in fallbacks.items()}},
        "host_fallbacks": fallbacks,
        "groups": groups,
        "versions": {"bctvm": bctvm.__version__, "tvm": tvm.__version__,
                     "python": platform.python_version()},
        "compile_seconds": {"passes": round(t_pass - t_start, 2),
                            "vta_programs": round(t_vta - t_pass, 2),
                            "host_library": round(t_host - t_vta, 2)},
    }
    manifest["files"] = record_files(out)  # every file but the manifest: size + SHA-256
    manifest["digest"] = files_digest(manifest["files"])
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, allow_nan=False))
    return manifest


def _write_group(out: Path, i: int, c: CompiledSegment, mod, names, kinds, qlayers: dict,
                 cfg, plan: FusedPlan) -> dict:
    cg = c.cg
    params = [params_from_qconv(qlayers[n]) for n in c.seg.layers]
    template = cg.image(None, params)
    dram_file = f"g{i}.dram.bin"
    template.tofile(out / dram_file)
    programs = []
    for k, prog in enumerate(cg.programs):
        fname = f"g{i}.p{k}.bin"
        (out / fname).write_bytes(prog.encode(cfg))
        programs.append({"file": fname, "name": prog.name,
                         "instructions": len(prog.instructions)})
    # the model tensor behind each input/output region, then the group function's argument
    # k (c.seg.inputs[k]) -> the regions it fills
    external = iter(c.seg.external)  # one tensor per "external" residual, in layer order
    region_tensor = {"data": c.seg.data, "out": c.seg.output}
    region_tensor.update({f"l{j}_residual": next(external)
                          for j, r in enumerate(c.seg.residuals) if r == "external"})
    args = [[n for n, t in region_tensor.items() if n != "out" and t == tensor]
            for tensor in c.seg.inputs]
    gname = f"vta_group_{i}"
    regions = {}
    for name, reg in cg.layout.regions.items():
        t = region_tensor.get(name)
        regions[name] = {"start": reg.start, "nbytes": reg.nbytes, "shape": list(reg.shape),
                         "dtype": reg.dtype, "kind": kinds[t] if t else reg.kind}
        if t:
            regions[name]["tensor"] = t
    return {
        "name": f"g{i}", "function": names[gname], "layers": list(c.seg.layers),
        "grid": list(c.seg.grid), "signature": group_signature(mod, gname),
        "args": args, "programs": programs, "dram": dram_file, "dram_bytes": int(template.size),
        "regions": regions,
        "macs": int(sum(s.macs() for s in cg.specs)),
        "cut": c.seg.cut, "note": c.seg.note, "fit": [f.to_dict() for f in cg.fits],
        "grid_changes": grid_changes(c.seg, plan),
        "compile_seconds": round(c.seconds, 2),
        **({"knobs": c.knobs} if c.knobs is not None else {}),
    }


def _output_signature(host_mod) -> list:
    ret = host_mod["main"].ret_ty
    fields = ret.fields if hasattr(ret, "fields") else [ret]
    return [{"shape": [int(s) for s in f.shape], "dtype": str(f.dtype)} for f in fields[:-1]]


def _write_references(out: Path, imported, qnet) -> None:
    """The calibrated QuantizedNet (integer reference) and the float program (model.pt2)."""
    import torch

    from bctvm.quant.serialize import save_qnet
    from bctvm.runtime.float_model import load_float_model

    save_qnet(qnet, out / "qnet")
    torch.export.save(imported.exported, str(out / "model.pt2"))
    load_float_model(out / "model.pt2")  # `run` must be able to read it without unpickling
    np.save(out / "example_input.npy", imported.example_input.detach().numpy())


def describe(manifest: dict, out_dir) -> str:
    """What `bctvm compile -o DIR` prints: the groups and where the artifact is."""
    m = manifest
    lines = [f"{m['model']} -> {out_dir} for board {m['board']} ({m['mode']}): "
             f"{len(m['groups'])} VTA groups, {len(m['host_layers'])} host layers"]
    lines += format_host_lines({k: v for k, v in m.get("host_reasons", {}).items()
                                if k not in m.get("host_fallbacks", {})})
    for g in m["groups"]:
        n = sum(p["instructions"] for p in g["programs"])
        lines.append(f"  {g['name']:<4} {len(g['layers'])} layer(s) {g['layers'][0]}"
                     + (f" .. {g['layers'][-1]}" if len(g["layers"]) > 1 else "")
                     + f"  grid {g['grid'][0]}x{g['grid'][1]}  {n} instructions")
        kn = g.get("knobs")
        if kn:
            lines.append(f"       knobs: {kn['source']}" + (
                f" ({kn['log_cycles']} cycles in the log)" if "log_cycles" in kn else
                " (no record in the tuning log)"))
    for layer, why in m.get("host_fallbacks", {}).items():
        lines.append(f"  warning: layer {layer} runs on the host: {why}")
    cs = m["compile_seconds"]
    lines.append("compile seconds: " + ", ".join(f"{k} {v}" for k, v in cs.items()))
    return "\n".join(lines)
