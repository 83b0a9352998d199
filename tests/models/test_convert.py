"""convert(): a deep copy with every nn.Conv2d a BlockConv2d holding the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bctvm.errors import UnsupportedOpError
from bctvm.models import BlockConv2d, convert


def plain_cnn(stride2: bool = True) -> nn.Module:
    torch.manual_seed(1)
    s = 2 if stride2 else 1
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, stride=s, padding=1, groups=8, bias=False),
                      nn.Conv2d(8, 12, 1)),
        nn.Conv2d(12, 12, 5, padding="same", dilation=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 5),
    )


def test_convert_preserves_weights_and_leaves_input_untouched():
    plain = plain_cnn()
    converted = convert(plain, 4, "fixed", "replicate")
    assert all(type(m) is not nn.Conv2d for m in converted.modules())
    blocks = [m for m in converted.modules() if isinstance(m, BlockConv2d)]
    assert len(blocks) == 4
    before, after = plain.state_dict(), converted.state_dict()
    assert list(before) == list(after)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    # a copy: changing the converted weights does not touch the plain model
    with torch.no_grad():
        converted[0].weight.add_(1.0)
    assert torch.equal(plain[0].weight, before["0.weight"])
    assert isinstance(plain[0], nn.Conv2d)
    dw = converted[3][0]
    assert dw.groups == 8 and dw.stride == (2, 2) and dw.bias is None and dw.pool
    assert converted[4].padding == (2, 2) and converted[4].padding_mode == "replicate"
    assert [m.layer_name for m in blocks] == ["0", "3.0", "3.1", "4"]


def test_converted_whole_side_blocks_equal_plain_model():
    plain = plain_cnn(stride2=False).eval()
    converted = convert(plain, 0).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), plain(x), rtol=1e-5, atol=1e-6)
    # hierarchical 1x1 blocks per side is the same single block
    one = convert(plain, 1, "hierarchical").eval()
    with torch.no_grad():
        torch.testing.assert_close(one(x), plain(x), rtol=1e-5, atol=1e-6)


def test_converted_small_blocks_differ_from_plain_model():
    plain = plain_cnn(stride2=False).eval()
    converted = convert(plain, 4).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert (converted(x) - plain(x)).abs().max() > 1e-4


def test_convert_padding_mode_none_keeps_each_conv_mode():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
                          nn.Conv2d(2, 2, 3, padding=1))
    converted = convert(model, 4, padding_mode=None)
    assert [m.padding_mode for m in converted] == ["reflect", "constant"]


def test_convert_keeps_shared_conv_shared():
    shared = nn.Conv2d(2, 2, 3, padding=1)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    converted = convert(model, 4)
    assert converted[0] is converted[2] and isinstance(converted[0], BlockConv2d)


@pytest.mark.parametrize(
    "conv, pattern",
    [
        (nn.Conv2d(3, 4, 3, stride=3), r"'body\.1'.*stride"),
        (nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), r"'body\.1'.*circular"),
    ],
)
def test_convert_rejects_convs_without_block_form(conv, pattern):
    model = nn.Module()
    model.body = nn.Sequential(nn.Identity(), conv)
    with pytest.raises(UnsupportedOpError, match=pattern):
        convert(model, 4, padding_mode=None)


def test_convert_single_conv_model():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    block = convert(conv, 0)
    assert isinstance(block, BlockConv2d)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), conv(x), rtol=1e-5, atol=1e-6)
