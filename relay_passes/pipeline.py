"""The graph-pass pipeline: the one ordered list of passes and the functions that run it.

    ImportModel        PyTorch -> Relax (params kept as inputs, layer names recorded)
    LegalizeBlockConv  block-conv chains -> bctvm.block_conv2d
    BindParams         parameters -> constants
    FoldBN             inference BatchNorm -> conv weights/bias (+ sign after a pool)
    Quantize           float graph -> integer graph of the QuantizedNet (bctvm.quant)
    FoldMaxPool        conv + standalone 2x2/2 max-pool -> one pooling block conv
    PackLayout         VTA ops -> NCHW{b}n{c}c / OIHW{o}o{i}i of the board
    PlanFusedGroups    fused groups on one block grid (graph structure; plan in the module)
    Partition          each group -> a vta_group_<i> function; the rest stays on the host

`run_pipeline(model, board=...)` runs them all and keeps the module after each pass;
`plan_model(...)` stops after PlanFusedGroups and returns the FusedPlan. With
`verify=True` every stage is built for llvm and run on the Relax VM: float stages must equal
PyTorch (rtol 1e-4), integer stages must reproduce IntegerReference's boundary tensor bit for
bit (ValidationMismatch otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import tvm
from tqdm import tqdm

from bctvm.errors import BadInputError, ValidationMismatch
from boards import BoardConfig, load_board

from .bind_params import BindParams
from .fold_bn import FoldBN
from .fold_max_pool import FoldMaxPool
from .import_model import ImportedModel, ImportModel, example_image
from .legalize_block_conv import LegalizeBlockConv
from .pack_layout import PackLayout
from .partition import Partition
from .plan_fused_groups import FusedPlan, PlanFusedGroups
from .quantize import Quantize

#: the pass order, by name (ImportModel first; Quantize and later need the QuantizedNet)
PASS_ORDER = ("ImportModel", "LegalizeBlockConv", "BindParams", "FoldBN", "Quantize",
              "FoldMaxPool", "PackLayout", "PlanFusedGroups", "Partition")
FLOAT_STAGES = ("ImportModel", "LegalizeBlockConv", "BindParams", "FoldBN")


def make_passes(qnet, board: BoardConfig | str, stem: str = "auto", model: str = "") -> list:
    """The IR -> IR passes after ImportModel, in order."""
    board = load_board(board)
    return [LegalizeBlockConv(), BindParams(), FoldBN(), Quantize(qnet), FoldMaxPool(),
            PackLayout(board, stem=stem), PlanFusedGroups(board, model=model), Partition()]


@dataclass
class PipelineResult:
    """Modules after every pass (by pass name), the QuantizedNet and the plan."""

    imported: ImportedModel
    qnet: object
    board: BoardConfig
    stages: dict[str, tvm.IRModule] = field(default_factory=dict)
    plan: FusedPlan | None = None

    @property
    def mod(self) -> tvm.IRModule:
        """The module after the last pass that ran."""
        return list(self.stages.values())[-1]


def calibration_images(shape, count: int, seed: int = 0) -> torch.Tensor:
    """`count` random N(0, 1) images of `shape` (C, H, W) with a fixed seed (no data set is
    downloaded; pass real images for a meaningful calibration)."""
    if count < 1:
        raise BadInputError(f"--calib must be at least 1, got {count}")
    return example_image((count, *shape), seed)


def calibrate_for(imported: ImportedModel, folded: tvm.IRModule, calib_inputs=None,
                  calib: int = 1, seed: int = 0):
    """One calibration of the imported model, on its folded float graph (FoldBN's output):
    the int8 layers come from the same capture the compiler compiles."""
    from bctvm.quant import calibrate_graph

    if calib_inputs is None:
        calib_inputs = calibration_images(tuple(imported.example_input.shape[1:]), calib, seed)
    return calibrate_graph(folded, calib_inputs, progress=False, info={"model": imported.name},
                           exported=imported.exported)


def run_pipeline(source, *, board: BoardConfig | str = "pynq", qnet=None, calib_inputs=None,
                 calib: int = 1, example_input=None, stem: str = "auto", stop_after: str = None,
                 verify=False, progress: bool = True, seed: int = 0, policy: str = "graph",
                 **model_kw) -> PipelineResult:
    """Run the passes on a model source (see import_model.load_source for `source`).

    `qnet`: a QuantizedNet to use as is; otherwise one calibration on `calib_inputs` (or
    `calib` random images). `stop_after`: a pass name of PASS_ORDER. `verify`: True (every
    stage) or a collection of pass names to check on the Relax VM. `policy`: the grouping
    policy of PlanFusedGroups ("graph" or "chain")."""
    if stop_after is not None and stop_after not in PASS_ORDER:
        raise BadInputError(f"unknown pass '{stop_after}' (passes: {', '.join(PASS_ORDER)})")
    cfg = load_board(board)
    last = PASS_ORDER.index(stop_after) + 1 if stop_after else len(PASS_ORDER)
    steps = tqdm(total=last, desc="passes", disable=not progress, leave=False)
    try:
        return _run(source, cfg, steps, qnet, calib_inputs, calib, example_input, stem,
                    stop_after, verify, seed, policy, model_kw)
    finally:
        steps.close()  # clears the bar, also before an error message


def _run(source, cfg, steps, qnet, calib_inputs, calib, example_input, stem, stop_after,
         verify, seed, policy, model_kw) -> PipelineResult:
    steps.set_postfix_str("ImportModel")
    imported = ImportModel()(source, example_input, **model_kw)
    result = PipelineResult(imported=imported, qnet=qnet, board=cfg)
    result.stages["ImportModel"] = imported.mod
    steps.update()
    mod = imported.mod
    wanted = set(PASS_ORDER) if verify is True else set(verify or ())
    checker = _Checker(imported) if wanted else None
    if checker and "ImportModel" in wanted:
        checker.check("ImportModel", mod)
    factories = [LegalizeBlockConv, BindParams, FoldBN, lambda: Quantize(result.qnet),
                 FoldMaxPool, lambda: PackLayout(cfg, stem=stem),
                 lambda: PlanFusedGroups(cfg, model=imported.name, policy=policy), Partition]
    for name, factory in zip(PASS_ORDER[1:], factories):
        if stop_after and list(result.stages)[-1] == stop_after:
            break
        if name == "Quantize":
            if result.qnet is None:
                steps.set_postfix_str("calibrate")
                result.qnet = calibrate_for(imported, mod, calib_inputs, calib, seed)
            if checker:
                checker.set_qnet(result.qnet)
        p = factory()
        steps.set_postfix_str(p.name)
        mod = p(mod)
        result.stages[p.name] = mod
        if p.name == "PlanFusedGroups":
            result.plan = p.plan
        if checker and p.name in wanted:
            checker.check(p.name, mod)
        steps.update()
    return result


def plan_model(source, *, board: BoardConfig | str = "pynq", progress: bool = True,
               **kw) -> FusedPlan:
    """The fused-group plan of a model on a board (runs up to PlanFusedGroups)."""
    return run_pipeline(source, board=board, stop_after="PlanFusedGroups", progress=progress,
                        **kw).plan


class _Checker:
    """Runs each stage on the Relax VM against PyTorch / the integer reference."""

    def __init__(self, imported: ImportedModel):
        from .vm_run import run_module

        self.run = run_module
        self.x = imported.example_input.detach().numpy()
        model = imported.module
        with torch.no_grad():
            ref = model(imported.example_input) if model is not None else \
                imported.exported.module()(imported.example_input)
        self.float_ref = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else [ref])]
        self.int_run = None

    def set_qnet(self, qnet) -> None:
        from bctvm.quant import IntegerReference

        self.int_run = IntegerReference(qnet).run(self.x)

    def check(self, stage: str, mod: tvm.IRModule) -> None:
        from .vm_run import with_boundary_output

        if stage in FLOAT_STAGES:
            out = self.run(mod, self.x)
            for got, want in zip(out, self.float_ref):
                tol = 1e-4 * max(1.0, float(np.abs(want).max()))
                if got.shape != want.shape:
                    raise ValidationMismatch(f"after {stage}: output shape {got.shape} differs "
                                             f"from PyTorch's {want.shape}")
                if not np.allclose(got, want, rtol=1e-4, atol=tol):
                    raise ValidationMismatch(f"after {stage}: output differs from PyTorch by "
                                             f"{float(np.abs(got - want).max())}")
            return
        if stage == "PlanFusedGroups":
            return  # the IR is unchanged
        out = self.run(with_boundary_output(mod), self.x)
        boundary = out[-1]
        want = self.int_run.boundary
        if boundary.shape != want.shape or not np.array_equal(boundary, want):
            diff = int(np.sum(boundary != want)) if boundary.shape == want.shape else "shape"
            raise ValidationMismatch(
                f"after {stage}: int8 boundary tensor differs from the integer reference "
                f"({diff} values)")
        got = out[0]
        tol = 1e-4 * max(1.0, float(np.abs(self.int_run.output).max()))
        if not np.allclose(got, self.int_run.output, rtol=1e-4, atol=tol):
            raise ValidationMismatch(f"after {stage}: host head output differs from the "
                                     f"reference's float head")


def zoo_kwargs(source, block_size=None, block_type=None, padding_mode=None,
               checkpoint=None) -> dict:
    """Model keywords of the block options and checkpoint that were given. A zoo model is
    built with them; a model with code (nn.Module, file.py:factory) and no block convs of its
    own has its convs converted; a model with its own block convs or a .pt2 file refuses them
    (import_model.load_source)."""
    given = {k: v for k, v in (("block_size", block_size), ("type", block_type),
                               ("padding_mode", padding_mode), ("checkpoint", checkpoint))
             if v is not None}
    return given


