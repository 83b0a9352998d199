"""Hand-checked tiny cases of every integer rule of the contract (docs/quantization.md)."""

import pytest
import torch

from bctvm.quant import (
    QuantizationError,
    align,
    clip_int8,
    dequantize,
    exponent_for,
    quantize,
    requantize,
    round_shift_right,
    shift_left,
    wrap32,
)

T = lambda *v: torch.tensor(v, dtype=torch.int64)  # noqa: E731


@pytest.mark.parametrize("max_abs, e", [
    (0.0, 0), (127.0, 0), (126.9, 0), (127.5, -1), (1.0, 6), (0.5, 7), (1.984375, 6),
    (1.9843751, 5), (254.0, -1), (254.1, -2), (1e-3, 16),
])
def test_exponent_is_floor_log2_of_127_over_max(max_abs, e):
    assert exponent_for(max_abs) == e
    if max_abs:
        assert max_abs * 2.0 ** e <= 127 < max_abs * 2.0 ** (e + 1)


def test_exponent_rejects_nan():
    with pytest.raises(QuantizationError):
        exponent_for(float("nan"))


def test_quantize_rounds_half_to_even_and_saturates():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.26, 200.0, -200.0])
    assert quantize(x, 0).tolist() == [0, 2, 2, 0, -2, -2, 0, 127, -128]
    # exponent 2: value * 4 then round; 0.375 * 4 = 1.5 -> 2, -0.125 * 4 = -0.5 -> 0
    assert quantize(torch.tensor([0.375, -0.125, 31.9, 32.0]), 2).tolist() == [2, 0, 127, 127]
    assert quantize(x, 0).dtype == torch.int8
    assert dequantize(torch.tensor([3, -128], dtype=torch.int8), 2).tolist() == [0.75, -32.0]


def test_rounding_shift_right_with_negative_values():
    v = T(-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 5, 6)
    # (v + 1) >> 1: halves round towards +inf (-2.5 -> -2, -1.5 -> -1, -0.5 -> 0, 2.5 -> 3)
    assert round_shift_right(v, 1).tolist() == [-3, -2, -2, -1, -1, 0, 0, 1, 1, 2, 3, 3]
    # (v + 2) >> 2: -6/4 = -1.5 -> -1, -5/4 -> -1, -7/4 -> -2, 6/4 = 1.5 -> 2
    assert round_shift_right(T(-7, -6, -5, -2, 2, 5, 6), 2).tolist() == [-2, -1, -1, 0, 1, 1, 2]
    assert round_shift_right(T(-7, 7), 0).tolist() == [-7, 7]


def test_requantize_positive_and_negative_shift_and_clip():
    acc = T(1000, -1000, 64, -65, 3, -3)
    # shift 3: (acc + 4) >> 3 -> 125, -125, 8, -8 (-65/8 = -8.125), 0, 0
    assert requantize(acc, 3).tolist() == [125, -125, 8, -8, 0, 0]
    # shift 2: 250 / -250 saturate
    assert requantize(acc, 2).tolist() == [127, -128, 16, -16, 1, -1]
    # negative shift: multiply by 2**2 before clipping
    assert requantize(T(3, -3, 40, -40), -2).tolist() == [12, -12, 127, -128]
    # ReLU fused: clip to [0, 127]
    assert requantize(acc, 3, relu=True).tolist() == [125, 0, 8, 0, 0, 0]
    assert clip_int8(T(-129, -128, 127, 128)).tolist() == [-128, -128, 127, 127]
    assert clip_int8(T(-1, 0, 5, 300), relu=True).tolist() == [0, 0, 5, 127]


def test_int32_wrap_in_every_step():
    big, small = 2**31 - 1, -(2**31)
    assert wrap32(T(big + 1, small - 1, 2**32 + 5, -5)).tolist() == [small, big, 5, -5]
    assert shift_left(T(2**30, 3, -(2**30) - 1), 1).tolist() == [small, 6, 2**31 - 2]
    # the rounding constant is added in int32: 2**31 - 1 + 1 wraps to -2**31 before the shift
    assert round_shift_right(T(big), 1).tolist() == [-(2**30)]
    # requantization of a wrapped (negative) accumulator saturates low
    assert requantize(T(big), 1).tolist() == [-128]


def test_align_both_directions():
    # finer accumulator (s > 0): plain left shift
    assert align(T(3, -3, 127), 2).tolist() == [12, -12, 508]
    # coarser accumulator (s < 0): rounding right shift, halves up
    assert align(T(7, -7, 6, -6, 2, -2), -2).tolist() == [2, -2, 2, -1, 1, 0]
    assert align(T(5), 0).tolist() == [5]
