"""Integer primitives of bctvm's int8 arithmetic contract (docs/quantization.md).

Every function takes and returns torch.int64 tensors that hold int32 values (except where
stated); each result is wrapped to 32-bit two's complement exactly as the VTA accumulator
would wrap it. Exponents are integers e with value = q * 2**-e.
"""

from __future__ import annotations

import math

import torch

from bctvm.errors import BadInputError

__all__ = [
    "INT8_MIN",
    "INT8_MAX",
    "INT32_MIN",
    "INT32_MAX",
    "MAX_SHIFT",
    "QuantizationError",
    "exponent_for",
    "wrap32",
    "shift_left",
    "round_shift_right",
    "align",
    "requantize",
    "clip_int8",
    "quantize",
    "dequantize",
    "saturate_int32",
]

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_SHIFT = 31  # the largest shift an int32 ALU SHR / shift-left step may be asked for


class QuantizationError(BadInputError):
    """A tensor or layer cannot be represented in the int8 scheme (names the layer)."""


def exponent_for(max_abs: float) -> int:
    """e = floor(log2(127 / max_abs)), the exponent that maps max_abs into int8; 0 for 0.

    Computed exactly: the result satisfies max_abs * 2**e <= 127 < max_abs * 2**(e + 1).
    """
    m = float(max_abs)
    if not math.isfinite(m) or m < 0:
        raise QuantizationError(f"cannot choose an exponent for max |t| = {max_abs!r}")
    if m == 0.0:
        return 0
    e = math.floor(math.log2(INT8_MAX / m))
    while math.ldexp(m, e) > INT8_MAX:  # guard against log2 rounding at powers of two
        e -= 1
    while math.ldexp(m, e + 1) <= INT8_MAX:
        e += 1
    return e


def wrap32(v: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap of int64 values to the int32 range (result dtype int64)."""
    return ((v + 2**31) & (2**32 - 1)) - 2**31


def shift_left(v: torch.Tensor, s: int) -> torch.Tensor:
    """v << s (s >= 0) with int32 wrap."""
    if s < 0:
        raise ValueError(f"shift_left needs s >= 0, got {s}")
    return wrap32(v << s)


def round_shift_right(v: torch.Tensor, s: int) -> torch.Tensor:
    """Rounding arithmetic shift: (v + (1 << (s - 1))) >> s for s > 0 (round half up,
    i.e. towards +inf), the add wrapped to int32; v unchanged for s == 0."""
    if s < 0:
        raise ValueError(f"round_shift_right needs s >= 0, got {s}")
    if s == 0:
        return v
    return wrap32(v + (1 << (s - 1))) >> s


def align(v: torch.Tensor, s: int) -> torch.Tensor:
    """Bring a value to an exponent s steps finer: v << s for s >= 0, else
    round_shift_right(v, -s)."""
    return shift_left(v, s) if s >= 0 else round_shift_right(v, -s)


def requantize(acc: torch.Tensor, shift: int, relu: bool = False) -> torch.Tensor:
    """int32 accumulator at exponent e_a -> int8 at e_y, shift = e_a - e_y.

    shift > 0: rounding arithmetic shift right; shift < 0: shift left (wrapping); then clip
    to [-128, 127], or [0, 127] with ReLU fused. Returns int64 holding int8 values.
    """
    v = round_shift_right(acc, shift) if shift >= 0 else shift_left(acc, -shift)
    return clip_int8(v, relu)


def clip_int8(v: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """Clip to [-128, 127] ([0, 127] with relu): the ALU MAX/MIN pair before narrowing."""
    return v.clamp(0 if relu else INT8_MIN, INT8_MAX)


def quantize(t: torch.Tensor, e: int) -> torch.Tensor:
    """Float tensor -> int8 at exponent e: clip(round_half_even(t * 2**e), -128, 127).

    Computed in float64 (scaling by a power of two is exact); returns torch.int8.
    """
    scaled = t.to(torch.float64) * math.ldexp(1.0, e)
    return torch.round(scaled).clamp(INT8_MIN, INT8_MAX).to(torch.int8)


def dequantize(q: torch.Tensor, e: int) -> torch.Tensor:
    """int tensor at exponent e -> float32 q * 2**-e."""
    return (q.to(torch.float64) * math.ldexp(1.0, -e)).to(torch.float32)


def saturate_int32(v: torch.Tensor) -> torch.Tensor:
    """Clamp int64 values to the int32 range (used for stored int32 constants only)."""
    return v.clamp(INT32_MIN, INT32_MAX)
