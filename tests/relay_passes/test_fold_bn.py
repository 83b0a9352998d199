"""FoldBN (with BindParams): BatchNorm folds into block_conv2d; a sign follows a pool when a
scale is negative; the module still equals PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bctvm.models import BlockConv2d
from relay_passes import ops
from relay_passes.bind_params import BindParams
from relay_passes.fold_bn import FoldBN
from relay_passes.import_model import import_model
from relay_passes.legalize_block_conv import LegalizeBlockConv
from relay_passes.vm_run import run_module

from .conftest import calls_of, ops_in, randomize_bn


class TwoBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = BlockConv2d(3, 6, 3, 4, stride=2, padding=1, bias=True)  # conv -> pool -> BN
        self.b1 = nn.BatchNorm2d(6)
        self.c2 = BlockConv2d(6, 6, 3, 2, padding=1, padding_mode="replicate")
        self.b2 = nn.BatchNorm2d(6)

    def forward(self, x):
        return self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))


@pytest.mark.parametrize("negative", [True, False])
def test_fold_bn_equals_pytorch(negative):
    torch.manual_seed(1)
    model = randomize_bn(TwoBN(), seed=3, negative=negative)
    if negative:  # make sure the pooled layer really has negative scales
        with torch.no_grad():
            model.b1.weight[::2] = -model.b1.weight[::2].abs()
    x = torch.randn(1, 3, 8, 8)
    mod = FoldBN()(BindParams()(LegalizeBlockConv()(import_model(model, x).mod)))
    names = ops_in(mod)
    assert "relax.nn.batch_norm" not in names
    assert len(calls_of(mod, ops.BLOCK_CONV2D)) == 2
    # the sign multiply only for the pooled conv with negative scales
    assert names.count("relax.multiply") == (1 if negative else 0)
    assert len(mod["main"].params) == 1  # parameters are constants now
    out = run_module(mod, x.numpy())[0]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)
