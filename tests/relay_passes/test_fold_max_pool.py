"""FoldMaxPool / bctvm.quant.fold_max_pools: conv + standalone 2x2/2 max-pool -> one pooling
conv, bit-exact with the unfolded integer reference; pairs that must not fold stay apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bctvm
from bctvm.models import BlockConv2d
from bctvm.quant import IntegerReference, QConv, calibrate, fold_max_pools
from relay_passes import ops
from relay_passes.fold_max_pool import FoldMaxPool
from relay_passes.pipeline import run_pipeline
from relay_passes.quantize import Quantize
from relay_passes.vm_run import run_module, with_layer_outputs

from .conftest import calls_of, float_module, ops_in, randomize_bn


def _same_run(qnet, folded_qnet, x):
    """Boundary, logits and every tensor of the folded net equal the original's bit for bit."""
    want = IntegerReference(qnet).run(x)
    got = IntegerReference(folded_qnet).run(x)
    np.testing.assert_array_equal(got.boundary, want.boundary)
    np.testing.assert_array_equal(got.output, want.output)
    for name, t in got.tensors.items():
        np.testing.assert_array_equal(t, want.tensors[name], err_msg=name)
    return want, got


def test_vgg16_pools_fold_bit_exact():
    torch.manual_seed(0)
    model = bctvm.models.get_model("block_vgg16", num_classes=10, block_size=8).eval()
    qnet = calibrate(model, torch.randn(2, 3, 32, 32), progress=False)
    q2, folded = fold_max_pools(qnet)
    pools = [layer.name for layer in qnet.layers if layer.kind == "maxpool"]
    assert len(pools) == 5 and sorted(folded) == sorted(pools)
    assert all(layer.kind == "conv" for layer in q2.layers)
    assert len(q2.layers) == len(qnet.layers) - 5 and q2.boundary == qnet.boundary
    for pool_name, conv_name in folded.items():
        conv, pool, merged = qnet.layer(conv_name), qnet.layer(pool_name), q2.layer(conv_name)
        assert isinstance(merged, QConv) and merged.pool and not conv.pool
        assert merged.output == pool.output and merged.out_shape == pool.out_shape
        assert merged.e_y == pool.e_y == conv.e_y and merged.shift == conv.shift
        assert conv.output not in q2.exponents
    assert not any(layer.pool for layer in qnet.conv_layers)  # the input net is untouched
    want, got = _same_run(qnet, q2, torch.randn(2, 3, 32, 32))
    assert set(want.tensors) - set(got.tensors) == set(folded.values())  # pre-pool tensors


class _Pair(nn.Module):
    """conv [+ residual] -> ReLU -> pool [, the conv output used again] -> head."""

    def __init__(self, block=4, pool=(2, 2, 0), stride=1, residual=False, twice=False):
        super().__init__()
        self.conv = BlockConv2d(4, 4, 3, block, stride=stride, padding=1)
        self.pool = nn.MaxPool2d(pool[0], pool[1], padding=pool[2])
        self.other = BlockConv2d(4, 4, 3, block, stride=2, padding=1) if twice else None
        self.residual = residual
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        y = self.conv(x)
        y = torch.relu(y + x if self.residual else y)
        z = self.pool(y)
        if self.other is not None:
            z = z + self.other(y)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(z, 1), 1))


@pytest.mark.parametrize("kw,why", [
    (dict(block=3), "odd block side: the pool windows cross blocks"),
    (dict(pool=(2, 1, 0)), "stride-1 pool"),
    (dict(pool=(3, 2, 1)), "3x3 pool"),
    (dict(twice=True), "conv output used twice"),
    (dict(residual=True), "conv with a residual"),
    (dict(stride=2), "conv that already pools"),
])
def test_pairs_that_must_not_fold(kw, why):
    torch.manual_seed(0)
    model = _Pair(**kw).eval()
    x = torch.randn(2, 4, 12, 12)
    qnet = calibrate(model, x, progress=False)
    assert any(layer.kind == "maxpool" for layer in qnet.layers), why
    q2, folded = fold_max_pools(qnet)
    assert folded == {}, why
    assert [layer.name for layer in q2.layers] == [layer.name for layer in qnet.layers]
    p = FoldMaxPool()
    qmod = Quantize(qnet)(float_module(model, x[:1]))
    assert ops_in(p(qmod)) == ops_in(qmod) and p.folded == {}, why


def test_fold_then_positive_control():
    """_Pair with the defaults does fold (so the cases above are not vacuous)."""
    torch.manual_seed(0)
    model = _Pair().eval()
    x = torch.randn(2, 4, 12, 12)
    qnet = calibrate(model, x, progress=False)
    q2, folded = fold_max_pools(qnet)
    assert folded == {"pool": "conv"}
    _same_run(qnet, q2, x)


class _Mixed(nn.Module):
    """c0 (4x4 blocks, BN with negative scales) -> pool: folds; c1 (3x3 blocks: odd) -> pool
    and c2 -> 3x3/2 pool: stay apart."""

    def __init__(self):
        super().__init__()
        self.c0 = BlockConv2d(3, 8, 3, 4, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.p0 = nn.MaxPool2d(2, 2)
        self.c1 = BlockConv2d(8, 8, 3, 3, padding=1)
        self.p1 = nn.MaxPool2d(2, 2)
        self.c2 = BlockConv2d(8, 8, 3, 6, padding=1)
        self.p2 = nn.MaxPool2d(3, 2, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.p0(torch.relu(self.bn0(self.c0(x))))
        x = self.p1(torch.relu(self.c1(x)))
        x = self.p2(torch.relu(self.c2(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="module")
def mixed():
    torch.manual_seed(1)
    model = randomize_bn(_Mixed())
    qnet = calibrate(model, torch.randn(2, 3, 24, 24), progress=False)
    x = torch.randn(1, 3, 24, 24)
    return model, qnet, x, Quantize(qnet)(float_module(model, x))


def test_pass_folds_what_the_qnet_folds_and_stays_bit_exact(mixed):
    _, qnet, x, qmod = mixed
    p = FoldMaxPool()
    fmod = p(qmod)
    q2, folded = fold_max_pools(qnet)
    assert p.folded == folded == {"p0": "c0"}
    assert qnet.layer("c0").sign is None  # a negative BN scale without a pool: no sign
    names = ops_in(fmod)
    assert names.count(ops.QMAX_POOL2D) == 2 and names.count(ops.QBLOCK_CONV2D) == 3
    pooled = [ops.attrs_dict(c)["layer"] for c in calls_of(fmod, ops.QBLOCK_CONV2D)
              if ops.attrs_dict(c)["pool"]]
    assert pooled == ["c0"]
    run = IntegerReference(q2).run(x.numpy())
    mod, layers = with_layer_outputs(fmod)
    outs = run_module(mod, x.numpy())
    assert layers == [layer.name for layer in q2.layers]
    for name, got in zip(layers, outs[1:]):
        np.testing.assert_array_equal(got, run.tensors[q2.layer(name).output], err_msg=name)
    np.testing.assert_array_equal(run.boundary, IntegerReference(qnet).run(x.numpy()).boundary)


def test_pipeline_runs_fold_max_pool_and_verifies(mixed):
    model, qnet, x, _ = mixed
    res = run_pipeline(model, board="zcu102", qnet=qnet, example_input=x,
                       stop_after="PackLayout", verify=("FoldMaxPool", "PackLayout"),
                       progress=False)
    assert list(res.stages)[-3:] == ["Quantize", "FoldMaxPool", "PackLayout"]
    assert ops_in(res.stages["FoldMaxPool"]).count(ops.QMAX_POOL2D) == 2
    assert res.qnet is qnet  # the reference stays the unfolded net
