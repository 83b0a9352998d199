"""Every zoo model at 32x32: calibrate, run the integer reference, compare the boundary.

Tolerance, in LSBs of the boundary exponent (1 LSB = 2**-e_b): mean |error| <= 1.5,
99th percentile <= 8, and relative L2 error <= 0.12. Measured over these 7 cases (seed 0,
4 images, random weights, randomised BN statistics with 25% negative scales): mean
0.23-0.71 LSB, p99 1.29-3.71 LSB, max 1.67-6.11 LSB, relative L2 0.022-0.091 (per-model
table in docs/quantization.md).
"""

import numpy as np
import pytest
import torch
from torch import nn

from bctvm.models import ZOO, BlockConv2d, get_model
from bctvm.quant import IntegerReference, QConv, calibrate, float_tensors

from .helpers import randomize_bn

CASES = [(name, "fixed", 8) for name in sorted(ZOO)] + [("block_resnet18", "hierarchical", 2)]


@pytest.mark.parametrize("name, block_type, block_size", CASES)
def test_zoo_model_boundary_is_close_to_float(name, block_type, block_size):
    torch.manual_seed(0)
    model = get_model(name, block_size=block_size, type=block_type, num_classes=10)
    randomize_bn(model, seed=0)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    qnet = calibrate(model, x, progress=False)

    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, BlockConv2d))]
    qconvs = [layer for layer in qnet.layers if isinstance(layer, QConv)]
    assert len(qconvs) == len(convs)  # one integer layer per conv, every BN folded
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum("bn" in layer.sources for layer in qconvs) == n_bn
    assert qnet.layers[-1].output == qnet.boundary
    assert qnet.head[0].kind == "adaptive_avg_pool2d" and qnet.head[-1].kind == "linear"
    if name.startswith("block_resnet"):
        assert sum(layer.residual is not None for layer in qconvs) == sum(
            len(getattr(model, f"layer{i}")) for i in range(1, 5))

    run = IntegerReference(qnet).run(x)
    ref = float_tensors(model, qnet, x)
    lsb = 2.0 ** -qnet.boundary_exponent
    want = ref[qnet.boundary]
    err = np.abs(run.boundary * lsb - want) / lsb
    assert np.abs(want).max() / lsb > 32  # the boundary uses the int8 range
    assert err.mean() <= 1.5, f"mean error {err.mean():.2f} LSB"
    assert np.percentile(err, 99) <= 8.0, f"p99 error {np.percentile(err, 99):.2f} LSB"
    rel = np.linalg.norm(run.boundary * lsb - want) / np.linalg.norm(want)
    assert rel <= 0.12
    assert run.output.shape == ref["output"].shape == (4, 10)
