"""LegalizeBlockConv: Before/Expected, every exported chain form, and numerics vs PyTorch."""

from __future__ import annotations

import numpy as np
import torch
import tvm
from torch import nn
from tvm import relax

from bctvm.models import BlockConv2d
from relay_passes import ops
from relay_passes.import_model import import_model
from relay_passes.legalize_block_conv import LegalizeBlockConv
from relay_passes.vm_run import run_module

from .conftest import calls_of, ops_in

CHAIN_OPS = {"relax.reshape", "relax.permute_dims", "relax.nn.pad", "relax.nn.conv2d",
             "relax.nn.max_pool2d"}


def _before_and_expected():
    rng = np.random.default_rng(0)
    w = ops.const(rng.standard_normal((8, 4, 3, 3)).astype("float32"))
    b = ops.const(rng.standard_normal(8).astype("float32"))
    x = relax.Var("x", relax.TensorType((1, 4, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.reshape(x, (1, 4, 2, 4, 2, 4)))
            y = bb.emit(relax.op.permute_dims(y, [0, 2, 4, 1, 3, 5]))
            y = bb.emit(relax.op.reshape(y, (4, 4, 4, 4)))
            y = bb.emit(relax.op.nn.pad(y, [0, 0, 0, 0, 1, 1, 1, 1], pad_mode="replicate"))
            y = bb.emit(relax.op.nn.conv2d(y, w))
            bias = bb.emit(relax.op.reshape(b, (1, 8, 1, 1)))
            y = bb.emit(relax.op.add(y, bias))
            y = bb.emit(relax.op.reshape(y, (1, 2, 2, 8, 4, 4)))
            y = bb.emit(relax.op.permute_dims(y, [0, 3, 1, 4, 2, 5]))
            y = bb.emit(relax.op.reshape(y, (1, 8, 8, 8)))
            y = bb.emit(relax.op.nn.max_pool2d(y, (2, 2), (2, 2)))
            gv = bb.emit_output(y)
        bb.emit_func_output(gv)
    before = bb.get()

    x2 = relax.Var("x", relax.TensorType((1, 4, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x2]):
        with bb.dataflow():
            gv = bb.emit_output(ops.block_conv2d(
                x2, w, b, block=(4, 4), padding=(1, 1, 1, 1), padding_mode="replicate",
                pool=True, layer="conv0"))
        bb.emit_func_output(gv)
    return before, bb.get()


def test_before_expected():
    before, expected = _before_and_expected()
    after = LegalizeBlockConv()(before)
    tvm.ir.assert_structural_equal(after["main"], expected["main"])


class Mixed(nn.Module):
    """One of every chain form torch.export produces for bctvm's layers."""

    def __init__(self):
        super().__init__()
        self.a = BlockConv2d(3, 8, 3, 4, padding=1, padding_mode="replicate", bias=True)
        self.b = BlockConv2d(8, 8, 3, (4, 2), stride=2, padding=1, padding_mode="reflect",
                             bias=False)
        self.c = BlockConv2d(8, 8, 3, 0, stride=2, padding=1, groups=8)  # one block
        self.d = BlockConv2d(8, 6, 3, 2, type="hierarchical", padding=2, dilation=2)
        self.e = nn.Conv2d(6, 4, 1)
        self.f = nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False)

    def forward(self, x):
        return self.f(self.e(self.d(self.c(self.b(self.a(x))))))


def test_exported_chains_become_one_op_each_and_equal_pytorch():
    torch.manual_seed(0)
    model = Mixed().eval()
    x = torch.randn(1, 3, 16, 16)
    mod = LegalizeBlockConv()(import_model(model, x).mod)
    assert not CHAIN_OPS & set(ops_in(mod))
    got = [ops.attrs_dict(c) for c in calls_of(mod, ops.BLOCK_CONV2D)]
    want = [  # layer, block, padding, mode, pool, groups, dilation, strides
        ("a", (4, 4), (1, 1, 1, 1), "replicate", False, 1, (1, 1), (1, 1)),
        ("b", (4, 2), (1, 1, 1, 1), "reflect", True, 1, (1, 1), (1, 1)),
        ("c", (8, 8), (1, 1, 1, 1), "constant", True, 8, (1, 1), (1, 1)),
        ("d", (2, 2), (2, 2, 2, 2), "constant", False, 1, (2, 2), (1, 1)),
        ("e", (4, 4), (0, 0, 0, 0), "constant", False, 1, (1, 1), (1, 1)),
        ("f", (4, 4), (1, 1, 1, 1), "constant", False, 1, (1, 1), (2, 2)),
    ]
    assert [(a["layer"], a["block"], a["padding"], a["padding_mode"], a["pool"], a["groups"],
             a["dilation"], a["strides"]) for a in got] == want
    out = run_module(mod, x.numpy())[0]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


class PoolTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = BlockConv2d(3, 4, 3, 4, padding=1)

    def forward(self, x):
        y = self.a(x)
        return nn.functional.max_pool2d(y, 2), y


def test_pool_of_a_conv_used_twice_is_not_folded():
    x = torch.randn(1, 3, 8, 8)
    model = PoolTwice().eval()
    mod = LegalizeBlockConv()(import_model(model, x).mod)
    (conv,) = calls_of(mod, ops.BLOCK_CONV2D)
    assert ops.attrs_dict(conv)["pool"] is False
    assert "relax.nn.max_pool2d" in ops_in(mod)
    outs = run_module(mod, x.numpy())
    for got, want in zip(outs, model(x)):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-5, atol=1e-5)


class Shuffle(nn.Module):
    def forward(self, x):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, 4, 4)


def test_other_reshape_chains_are_left_alone():
    im = import_model(Shuffle(), torch.randn(1, 2, 8, 8))
    after = LegalizeBlockConv()(im.mod)
    tvm.ir.assert_structural_equal(after["main"], im.mod["main"])
