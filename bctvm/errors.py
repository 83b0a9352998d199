"""Exception hierarchy of bctvm; each class carries the CLI exit code it maps to.

Exit codes (one place, read by cli.py): 0 ok, 1 validation mismatch, 2 bad input
(file, layer, option, illegal program, tampered artifact), 3 board or RPC failure, 4 internal
error (a bug: one line, BCTVM_DEBUG=1 shows the traceback), 130 interrupted by SIGINT (Ctrl-C),
143 terminated by SIGTERM (128 + the signal number, as a shell reports it).
"""

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2
EXIT_BOARD = 3
EXIT_INTERNAL = 4
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
DEBUG_ENV = "BCTVM_DEBUG"  # set to 1: unexpected exceptions print their traceback


class BctvmError(Exception):
    """Base class of every error bctvm raises on purpose."""

    exit_code = EXIT_BAD_INPUT


class BadInputError(BctvmError):
    """A user-supplied file, option, model or layer is not acceptable."""

    exit_code = EXIT_BAD_INPUT


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

    exit_code = EXIT_BAD_INPUT


class ValidationMismatch(BctvmError):
    """A result differs from its reference."""

    exit_code = EXIT_MISMATCH


class BoardError(BctvmError):
    """A board or an RPC connection failed or is unreachable."""

    exit_code = EXIT_BOARD


class Terminated(BaseException):
    """SIGTERM arrived (raised by the CLI's handler; like KeyboardInterrupt for SIGINT, it is
    not an Exception, so no `except Exception` swallows it)."""


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
