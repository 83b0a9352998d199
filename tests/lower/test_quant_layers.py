"""Layers calibrated by bctvm.quant, compiled to VTA programs, equal bctvm.quant's
IntegerReference tensor by tensor (layer by layer on pynq, fused on zcu102)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from boards import load_board
from bctvm.lower.group import compile_group, run_group
from bctvm.models import BlockConv2d
from bctvm.quant import IntegerReference, calibrate
from schedules.from_quant import params_from_qconv, spec_from_qconv


class _Net(nn.Module):
    """replicate conv -> conv + identity residual -> stride-2 conv (BN with negative scales)."""

    def __init__(self):
        super().__init__()
        self.c1 = BlockConv2d(16, 32, 3, (8, 8), padding=1, padding_mode="replicate")
        self.b1 = nn.BatchNorm2d(32)
        self.c2 = BlockConv2d(32, 32, 3, (8, 8), padding=1)
        self.b2 = nn.BatchNorm2d(32)
        self.c3 = BlockConv2d(32, 32, 3, (8, 8), stride=2, padding=1)
        self.b3 = nn.BatchNorm2d(32)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        z = torch.relu(self.b2(self.c2(y)) + y)
        return torch.relu(self.b3(self.c3(z)))


@pytest.fixture(scope="module")
def quantized():
    torch.manual_seed(0)
    net = _Net().eval()
    with torch.no_grad():
        for bn in (net.b1, net.b2, net.b3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(-1.5, 1.5)
    x = torch.randn(2, 16, 16, 16)
    qnet = calibrate(net, x, progress=False)
    return qnet, IntegerReference(qnet).run(x[:1])


def test_layers_on_pynq_equal_the_integer_reference(quantized):
    qnet, run = quantized
    cfg = load_board("pynq")
    convs = qnet.conv_layers
    assert [c.sign is not None for c in convs][-1] and convs[1].residual
    for layer in convs:
        spec = spec_from_qconv(layer)
        p = params_from_qconv(layer)
        if layer.residual:
            p["residual"] = run.tensors[layer.residual]
        cg = compile_group(cfg, [spec], name=layer.name)
        out = run_group(cg, cg.image(run.tensors[layer.inputs[0]], [p])).output
        assert np.array_equal(out, run.tensors[layer.output]), layer.name


def test_fused_group_with_residual_from_an_inner_layer(quantized):
    qnet, run = quantized
    cfg = load_board("zcu102")
    convs = qnet.conv_layers
    specs = [spec_from_qconv(c) for c in convs]
    params = [params_from_qconv(c) for c in convs]
    # c2 adds c1's output: layer 0 of the group; c1 and c3 have none
    cg = compile_group(cfg, specs, mode="fused", residual_source=[None, 0, None])
    r = run_group(cg, cg.image(run.tensors["input"], params))
    assert np.array_equal(r.output, run.tensors[convs[-1].output])
    assert r.dram_bytes["feature_maps"] == 0
    lw = compile_group(cfg, specs, mode="layerwise", residual_source=[None, 0, None])
    r2 = run_group(lw, lw.image(run.tensors["input"], params))
    assert np.array_equal(r2.output, r.output)
    assert r2.dram_bytes["feature_maps"] > 0
