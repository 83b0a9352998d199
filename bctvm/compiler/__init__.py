"""The compile driver: model -> graph passes -> VTA programs + host library -> artifact.

    from bctvm.compiler import compile_model
    manifest = compile_model("block_resnet18", out_dir="build/r18", board="zcu102")

segment.py cuts the fused-group plan into VTA programs, host_module.py turns the group
calls into external calls of the runtime, driver.py runs it all and writes the artifact
(files: bctvm.runtime.artifact).
"""

from .driver import compile_model
from .segment import Segment, segment_plan

__all__ = ["compile_model", "segment_plan", "Segment"]
