"""Graph passes that turn a PyTorch block-convolution CNN into a Relax module ready for VTA.

These are **Relax** passes (Apache TVM 0.27 no longer ships Relay); the folder keeps the name
`relay_passes/` because that is the project layout users know. One pass per file, named after
its class; the order is the single list in `pipeline.py`:

    ImportModel -> LegalizeBlockConv -> BindParams -> FoldBN -> Quantize -> FoldMaxPool
                -> PackLayout -> PlanFusedGroups -> Partition

After every pass the module still builds for `llvm` and, on the Relax VM, equals the PyTorch
float model (before Quantize) or the integer reference `bctvm.quant.IntegerReference` (after,
bit for bit up to the host float head).

Custom operators (`ops.py`, TE definitions in `te_compute.py`): `bctvm.block_conv2d` (float),
`bctvm.qblock_conv2d` (int8 block conv + int32 epilogue), `bctvm.qmax_pool2d`, `bctvm.qadd`,
`bctvm.qrelu`, host-side `bctvm.quantize` / `bctvm.dequantize`, and `bctvm.pack` /
`bctvm.unpack` layout changes.
"""

from . import ops  # noqa: F401  (registers the bctvm.* Relax operators)
