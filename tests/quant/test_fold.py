"""BN folding: ordinary fold, and the sign-after-pool fold of stride-2 block convs."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bctvm.errors import UnsupportedOpError
from bctvm.models import BlockConv2d, block_conv2d
from bctvm.quant import IntegerReference, calibrate, fold_conv_bn

from .helpers import randomize_bn


def _conv_bn(stride: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(BlockConv2d(3, 6, 3, 4, stride=stride, padding=1), nn.BatchNorm2d(6))
    randomize_bn(net, seed, negative=0.5)
    return net.double()


def _folded_forward(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    conv, bn = net[0], net[1]
    f = fold_conv_bn(conv.weight, conv.bias, bn, conv.pool)
    y = block_conv2d(x, f.weight, f.bias, conv.block_for(8, 8), conv.padding,
                     conv.padding_mode, pool=conv.pool)
    return y if f.sign is None else y * f.sign.view(1, -1, 1, 1)


@pytest.mark.parametrize("stride", [1, 2])
def test_fold_reproduces_the_float_order_of_operations(stride):
    net = _conv_bn(stride)
    assert bool((net[1].weight < 0).any())  # the test needs negative BN scales
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    f = fold_conv_bn(net[0].weight, net[0].bias, net[1], net[0].pool)
    assert (f.sign is not None) == (stride == 2)
    if stride == 2:
        assert f.sign.tolist() == [1.0 if g >= 0 else -1.0 for g in net[1].weight.tolist()]
        a = net[1].weight / torch.sqrt(net[1].running_var + net[1].eps)
        torch.testing.assert_close(f.weight, net[0].weight * a.abs().view(-1, 1, 1, 1))
    torch.testing.assert_close(_folded_forward(net, x), net(x), rtol=1e-12, atol=1e-12)


def test_plain_fold_before_pool_is_wrong_for_negative_scales():
    """Why the sign exists: folding a < 0 into the weights swaps max-pool for min-pool."""
    net = _conv_bn(2)
    conv, bn = net[0], net[1]
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    c = bn.bias - a * bn.running_mean
    naive = F.max_pool2d(F.conv2d(x, conv.weight * a.view(-1, 1, 1, 1), conv.bias * a + c,
                                  padding=1), 2)
    neg = (a < 0).nonzero().flatten()
    assert not torch.allclose(naive[:, neg], net(x)[:, neg])


def test_fold_without_bn_and_without_bias():
    w = torch.randn(4, 2, 3, 3)
    f = fold_conv_bn(w, None, None, pool=True)
    assert f.sign is None and torch.equal(f.bias, torch.zeros(4, dtype=torch.float64))
    assert torch.equal(f.weight, w.double())


def test_bn_without_running_stats_is_rejected():
    bn = nn.BatchNorm2d(4, track_running_stats=False)
    with pytest.raises(UnsupportedOpError, match="running statistics"):
        fold_conv_bn(torch.randn(4, 2, 3, 3), None, bn, pool=False)


def test_negative_scale_with_pool_in_the_integer_reference():
    """Integer order acc -> pool -> sign -> requant matches the float conv -> pool -> BN."""
    net = _conv_bn(2, seed=3).float()
    x = torch.randn(16, 3, 8, 8)
    qnet = calibrate(net, x, progress=False)
    (layer,) = qnet.layers
    assert layer.pool and layer.sign is not None and int((layer.sign < 0).sum()) >= 1
    run = IntegerReference(qnet).run(x)
    got = run.boundary.astype("float64") * 2.0 ** -qnet.boundary_exponent
    want = net(x).detach().double().numpy()
    lsb = 2.0 ** -qnet.boundary_exponent
    err = abs(got - want) / lsb
    # weight (<= 0.5 LSB of e_w per tap) + input rounding + output rounding: a few LSBs
    assert err.max() <= 4.0 and err.mean() <= 1.0
    # the negative-scale channels are the ones that would break without the sign
    neg = (layer.sign < 0).nonzero()[0]
    assert abs(got[:, neg] - want[:, neg]).max() / lsb <= 4.0
