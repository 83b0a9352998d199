"""bctvm.lower: TIR of a scheduled block-conv group -> an ahead-of-time VTA program.

Public API:
    build_program(cfg, mod, layout=None, params=None, name) -> VtaProgram
    lower_to_kernels(mod) -> IRModule (tagged flat TIR, for inspection/tests)
    bctvm_passes() -> [pass]           the ordered TIR pass list
    VtaProgram, DramLayout, Region
The TIR pipeline is registered as "bctvm" (tvm.compile(..., tir_pipeline="bctvm")).
"""

from .pipeline import bctvm_passes, build_program, lower_to_kernels
from .program import DramLayout, Region, VtaProgram

__all__ = ["build_program", "lower_to_kernels", "bctvm_passes", "VtaProgram", "DramLayout",
           "Region"]
