"""Exception hierarchy of bctvm; each class carries the CLI exit code it maps to.

Exit codes (one place, read by cli.py): 0 ok, 1 validation mismatch, 2 bad input
(file, layer, option, illegal program), 3 board or RPC failure.
"""


class BctvmError(Exception):
    """Base class of every error bctvm raises on purpose."""

    exit_code = 2


class BadInputError(BctvmError):
    """A user-supplied file, option, model or layer is not acceptable."""

    exit_code = 2


class BoardConfigError(BadInputError):
    """A board configuration is invalid (names the board and the field)."""


class EncodingError(BadInputError):
    """An instruction field value does not fit its bit width (names the field)."""


class ProgramFormatError(BadInputError):
    """A program or DRAM image file is malformed (names the file)."""


class UnsupportedOpError(BadInputError):
    """The graph holds an operator or layout bctvm cannot compile (names op and source)."""


class BlockShapeError(BadInputError):
    """A block size does not divide a feature map (names the layer and shapes)."""


class SimulatorError(BctvmError):
    """An instruction stream is illegal at run time on the simulator."""

    exit_code = 2


class ValidationMismatch(BctvmError):
    """A result differs from its reference."""

    exit_code = 1


class BoardError(BctvmError):
    """A board or an RPC connection failed or is unreachable."""

    exit_code = 3


# --- instruction-stream errors (raised by the ISA decoder and the simulator) ---------------


class UnknownOpcodeError(SimulatorError):
    """An instruction's opcode (or memory type / ALU opcode) is not defined."""


class IllegalInstructionError(SimulatorError):
    """A well-formed instruction the board cannot execute (wrong memory type, padding on a
    STORE, an onchip_reuse load on a board without it, ...)."""


class SramOutOfRangeError(SimulatorError):
    """An access outside an on-chip buffer (names buffer, index and depth)."""


class DramOutOfRangeError(SimulatorError):
    """An access outside the DRAM image (names address range and image size)."""


class UopOutOfRangeError(SimulatorError):
    """A GEMM/ALU micro-op range outside the micro-op buffer or past what was loaded."""


class DeadlockError(SimulatorError):
    """The dependency-token protocol can never be satisfied (names the waiting instruction)."""


class MissingFinishError(SimulatorError):
    """The instruction stream ended without a FINISH."""
