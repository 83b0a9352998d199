"""bctvm: block-convolution CNNs from PyTorch to the VTA accelerator, built on Apache TVM.

Data flows one way: model (bctvm.models) -> graph passes (relay_passes) -> schedules
(schedules) -> VTA program (bctvm.isa / lowering) -> board (bctvm.sim or a driver).
Hardware parameters live in `boards/` only.
"""

__version__ = "0.1.0"
