"""The integer reference against an independent numpy int64 re-implementation, bit for bit."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bctvm.errors import BadInputError
from bctvm.models import BlockConv2d
from bctvm.quant import IntegerReference, QAdd, QConv, QMaxPool, QRelu, calibrate

from .helpers import TwoLayer, randomize_bn

NP_MODES = {"constant": "constant", "replicate": "edge", "reflect": "reflect"}


def np_wrap(v):
    return ((v + 2**31) % 2**32) - 2**31


def np_round_shift(v, s):
    if s <= 0:
        return np_wrap(v << -s)
    return np_wrap(v + (1 << (s - 1))) >> s


def np_block_conv(x, w, block, pad, mode):
    """Direct block convolution, groups=1, stride 1: loop over blocks and kernel taps."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    bh, bw = block
    ph, pw = pad
    out = np.zeros((n, o, h, wd), dtype=np.int64)
    for i in range(0, h, bh):
        for j in range(0, wd, bw):
            blk = np.pad(x[:, :, i:i + bh, j:j + bw], ((0, 0), (0, 0), (ph, ph), (pw, pw)),
                         mode=NP_MODES[mode])
            for ky in range(kh):
                for kx in range(kw):
                    out[:, :, i:i + bh, j:j + bw] += np.einsum(
                        "nchw,oc->nohw", blk[:, :, ky:ky + bh, kx:kx + bw], w[:, :, ky, kx])
    return out


def np_pool2(v):
    n, c, h, w = v.shape
    return v.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def np_conv_layer(layer: QConv, x, env):
    acc = np_block_conv(x, layer.weight.astype(np.int64), layer.block, layer.padding,
                        layer.padding_mode)
    acc = np_wrap(acc + layer.bias.astype(np.int64)[None, :, None, None])
    if layer.pool:
        acc = np_pool2(acc)
    if layer.sign is not None:
        acc = np_wrap(acc * layer.sign.astype(np.int64)[None, :, None, None])
    if layer.residual is not None:
        r = env[layer.residual]
        s = layer.e_a - layer.e_r
        acc = np_wrap(acc + (np_wrap(r << s) if s >= 0 else np_round_shift(r, -s)))
    v = np_round_shift(acc, layer.e_a - layer.e_y)
    return np.clip(v, 0 if layer.relu else -128, 127)


@pytest.fixture(scope="module")
def two_layer():
    torch.manual_seed(1)
    model = randomize_bn(TwoLayer(), seed=1, negative=0.4)
    calib = torch.randn(32, 3, 8, 8)
    return model, calibrate(model, calib, batch_size=8, progress=False), calib


def test_two_layer_net_is_planned_as_two_fused_convs(two_layer):
    _, qnet, _ = two_layer
    c1, c2 = qnet.layers
    assert (c1.name, c2.name) == ("conv1", "conv2")
    assert c1.pool and c1.relu and c1.residual is None and c1.block == (4, 4)
    assert c1.sign is not None and int((c1.sign < 0).sum()) >= 1
    assert c2.residual == "conv1" and c2.relu and not c2.pool and c2.sign is None
    assert c2.block == (2, 2) and c2.padding_mode == "replicate"
    # sources: module paths (the shared ReLU module appears in both) or FX names of functions
    assert c1.sources == {"conv": "conv1", "bn": "bn1", "relu": "relu"}
    assert c2.sources == {"conv": "conv2", "bn": "bn2", "add": "add", "relu": "relu"}
    assert qnet.boundary == "conv2" and [op.kind for op in qnet.head] == [
        "adaptive_avg_pool2d", "flatten", "linear"]


def test_exponents_follow_the_calibration_formula(two_layer):
    model, qnet, calib = two_layer
    m = float(calib.abs().max())
    assert qnet.input_exponent == math.floor(math.log2(127 / m))
    c1, c2 = qnet.layers
    with torch.no_grad():
        y = model.relu(model.bn1(model.conv1(calib)))
        out = model.relu(model.bn2(model.conv2(y)) + y)
    assert c1.e_y == math.floor(math.log2(127 / float(y.abs().max())))
    assert c2.e_y == math.floor(math.log2(127 / float(out.abs().max())))
    assert c2.e_x == c1.e_y and c2.e_r == c1.e_y and c2.e_a == c2.e_x + c2.e_w
    assert c1.weight.dtype == np.int8 and c1.bias.dtype == np.int32
    assert int(np.abs(c1.weight).max()) >= 64  # e_w uses the range: max |w_q| in [64, 127]


@pytest.mark.parametrize("scale", [1.0, 3.0])  # 3.0: inputs beyond the calibration range
def test_integer_reference_matches_numpy_reimplementation(two_layer, scale):
    _, qnet, _ = two_layer
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(7)) * scale
    run = IntegerReference(qnet).run(x, keep_accumulators=True)

    xq = np.clip(np.round(x.numpy().astype(np.float64) * 2.0 ** qnet.input_exponent),
                 -128, 127).astype(np.int64)
    env = {"input": xq}
    for layer in qnet.layers:
        env[layer.output] = np_conv_layer(layer, env[layer.inputs[0]], env)
    for name, want in env.items():
        got = run.tensors[name]
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got.astype(np.int64), want, err_msg=name)
    np.testing.assert_array_equal(run.boundary, env["conv2"].astype(np.int8))
    assert set(run.accumulators) == {"conv1", "conv2"}
    assert run.accumulators["conv1"].dtype == np.int32
    # float head on the dequantized boundary
    fc = qnet.head[-1].weights
    feat = (env["conv2"] * 2.0 ** -qnet.boundary_exponent).mean(axis=(2, 3))
    logits = feat @ fc["weight"].T.astype(np.float64) + fc["bias"]
    np.testing.assert_allclose(run.output, logits, rtol=1e-5, atol=1e-5)
    if scale > 1:  # saturation happened and still agrees
        assert (run.tensors["input"] == 127).any() and (run.tensors["input"] == -128).any()


class Skewed(nn.Module):
    """A residual far finer than the accumulator: residual_shift < 0 (rounding right shift)."""

    def __init__(self):
        super().__init__()
        self.a = BlockConv2d(3, 4, 1, 0, layer_name="a")
        self.b = BlockConv2d(3, 4, 3, 4, padding=1, padding_mode="reflect", layer_name="b")
        with torch.no_grad():
            self.a.weight.mul_(1e-3)
            self.b.weight.mul_(10.0)

    def forward(self, x):
        r = self.a(x)
        return self.b(x) + r


def test_negative_residual_shift_matches_numpy():
    torch.manual_seed(2)
    net = Skewed().eval()
    x = torch.randn(4, 3, 8, 8) * 20
    qnet = calibrate(net, x, progress=False)
    a, b = qnet.layers
    assert b.residual == "a" and b.residual_shift < 0 and b.residual_shift == b.e_a - b.e_r
    run = IntegerReference(qnet).run(x)
    xq = np.clip(np.round(x.numpy().astype(np.float64) * 2.0 ** qnet.input_exponent),
                 -128, 127).astype(np.int64)
    env = {"input": xq}
    for layer in qnet.layers:
        env[layer.output] = np_conv_layer(layer, env[layer.inputs[0]], env)
    for name, want in env.items():
        np.testing.assert_array_equal(run.tensors[name].astype(np.int64), want, err_msg=name)


def test_sign_flip_of_int32_min_wraps():
    """acc * -1 on -2**31 stays -2**31 (two's complement) and the layer saturates at -128."""
    conv = BlockConv2d(1, 1, 1, 0, stride=2, bias=True)
    bn = nn.BatchNorm2d(1)
    net = nn.Sequential(conv, bn).eval()
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(0.0)
        bn.weight.fill_(-1.0)
    qnet = calibrate(net, torch.ones(1, 1, 2, 2), progress=False)
    (layer,) = qnet.layers
    assert layer.sign.tolist() == [-1]
    layer.weight[:] = 0  # acc = 0 * x + bias = -2**31 everywhere
    layer.bias[:] = np.int32(-(2**31))
    run = IntegerReference(qnet).run(torch.ones(1, 1, 2, 2), keep_accumulators=True)
    assert run.accumulators[layer.name].tolist() == [[[[-(2**31)]]]]
    assert run.boundary.tolist() == [[[[-128]]]]


def test_standalone_ops_and_their_exponents():
    """Ops that cannot fuse run on int8: relu, max-pool (padded), add [+ relu]."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = BlockConv2d(2, 4, 3, 0, padding=1, layer_name="a")
            self.b = BlockConv2d(2, 4, 1, 0, layer_name="b")
            self.pool = nn.MaxPool2d(3, 1, padding=1)

        def forward(self, x):
            a = self.a(x)  # two users: not fused with anything
            m = self.pool(self.b(x))
            s = F.relu(torch.relu(a) + m)
            return (s + a).relu()

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.b.weight.mul_(8.0)  # a different range than conv a -> unequal exponents
    x = torch.randn(3, 2, 6, 6)
    qnet = calibrate(net, x, progress=False)
    kinds = [(layer.name, layer.kind) for layer in qnet.layers]
    assert kinds == [("a", "conv"), ("b", "conv"), ("pool", "maxpool"), ("relu", "relu"),
                     ("add", "add"), ("add_1", "add")]
    pool, relu, add, add1 = qnet.layers[2:]
    assert isinstance(relu, QRelu) and relu.e_y == qnet.exponents["a"]
    assert isinstance(pool, QMaxPool) and pool.e_y == qnet.exponents["b"]
    assert pool.kernel == (3, 3) and pool.padding == (1, 1)
    assert isinstance(add, QAdd) and add.relu and add1.relu
    assert add.e_x != add.e_r and add.e_a == max(add.e_x, add.e_r)
    run = IntegerReference(qnet).run(x)
    t = {k: v.astype(np.int64) for k, v in run.tensors.items()}
    np.testing.assert_array_equal(t["relu"], np.maximum(t["a"], 0))
    padded = np.pad(t["b"], ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-128)
    want = np.stack([[padded[:, :, i:i + 3, j:j + 3].max(axis=(2, 3))
                      for j in range(6)] for i in range(6)]).transpose(2, 3, 0, 1)
    np.testing.assert_array_equal(t["pool"], want)
    for layer, (u, v) in ((add, ("relu", "pool")), (add1, ("add", "a"))):
        acc = (t[u] << (layer.e_a - layer.e_x)) + (t[v] << (layer.e_a - layer.e_r))
        np.testing.assert_array_equal(t[layer.name],
                                      np.clip(np_round_shift(acc, layer.shift), 0, 127))
    assert qnet.boundary == "add_1" and qnet.head == []
    np.testing.assert_allclose(run.output, t["add_1"] * 2.0 ** -qnet.boundary_exponent)


def test_run_rejects_another_image_size(two_layer):
    _, qnet, _ = two_layer
    with pytest.raises(BadInputError, match="differs from the calibrated"):
        IntegerReference(qnet).run(torch.zeros(1, 3, 16, 16))
