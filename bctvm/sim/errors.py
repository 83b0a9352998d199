"""Simulator errors beyond bctvm.errors (all SimulatorError, exit code 2)."""

from bctvm.errors import SimulatorError


class CycleLimitError(SimulatorError):
    """The program ran past the max_cycles the caller allowed."""
