"""Fusion planning on the captured graph (torch.export -> Relax) and the errors for what the
int8 flow does not support."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bctvm.errors import UnsupportedOpError
from bctvm.models import BlockConv2d, get_model
from bctvm.quant import IntegerReference, QConv, agreement, calibrate, capture, float_tensors

from .helpers import randomize_bn

X = torch.randn(2, 3, 8, 8)


def _conv(cin=3, cout=4, stride=1):
    return BlockConv2d(cin, cout, 3, 4, stride=stride, padding=1)


def test_resnet_block_fuses_add_relu_and_takes_downsample_as_residual():
    model = randomize_bn(get_model("block_resnet18", block_size=8, num_classes=10))
    plan = capture(model, (3, 32, 32))
    by_name = {lp.name: lp for lp in plan.layers}
    conv2 = by_name["layer2.0.conv2"]
    assert set(conv2.vars) == {"conv", "add", "relu"}  # BN is folded into the conv
    assert by_name["layer2.0.downsample.0"].output.same_as(conv2.residual)
    assert set(by_name["layer2.0.downsample.0"].vars) <= {"conv", "sign"}
    assert set(by_name["conv1"].vars) <= {"conv", "sign", "relu"}
    assert by_name["maxpool"].kind == "maxpool"
    # identity shortcut: the residual is the previous block's output
    assert by_name["layer1.1.conv2"].residual.same_as(by_name["layer1.0.conv2"].output)
    assert [hp.kind for hp in plan.host] == ["adaptive_avg_pool2d", "flatten", "linear"]
    assert plan.host[-1].name == "fc" and "bias" in plan.host[-1].weights


def test_add_of_two_conv_branches_fuses_into_the_later_conv():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = _conv(), _conv()

        def forward(self, x):
            a = self.a(x)
            b = self.b(x)
            return F.relu(a + b)

    plan = capture(Net(), X)
    names = [lp.name for lp in plan.layers]
    assert names == ["a", "b"]
    assert plan.layers[1].residual.same_as(plan.layers[0].output)
    assert "relu" in plan.layers[1].vars


def test_dropout_identity_and_view_heads():
    class Net(nn.Module):
        def __init__(self, view_minus_one):
            super().__init__()
            self.conv = _conv()
            self.skip = nn.Identity()
            self.drop = nn.Dropout(0.3)
            self.fc = nn.Linear(4 * 8 * 8, 3)
            self.minus_one = view_minus_one

        def forward(self, x):
            y = self.drop(self.skip(F.relu(self.conv(x))))
            y = y.view(-1, 4 * 8 * 8) if self.minus_one else y.view(y.size(0), -1)
            return torch.softmax(self.fc(F.dropout(y, training=self.training)), dim=1)

    for minus_one in (False, True):
        net = Net(minus_one).eval()
        qnet = calibrate(net, X, progress=False)
        assert [layer.kind for layer in qnet.layers] == ["conv"] and qnet.layers[0].relu
        assert [op.kind for op in qnet.head] == ["flatten", "linear", "softmax"]
        out = IntegerReference(qnet).run(X).output
        assert out.shape == (2, 3) and abs(out.sum(1) - 1).max() < 1e-5


def test_relu6_and_clamp_fuse_as_int8_bounds():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                        BlockConv2d(8, 8, 3, 4, padding=1), nn.Hardtanh(-0.25, 0.25))
    randomize_bn(net)
    qnet = calibrate(net, X, progress=False)
    c1, c2 = qnet.layers
    assert c1.clip_lo == 0 and not c1.relu
    e = c2.e_y  # 0.25 * 2**e_y on the int8 grid
    assert (c2.clip_lo, c2.clip_hi) == (max(-128, round(-0.25 * 2**e)),
                                         min(127, round(0.25 * 2**e)))
    got = IntegerReference(qnet).run(X).boundary
    assert got.max() <= c2.clip_hi and got.min() >= c2.clip_lo
    err = abs(got * 2.0 ** -e - float_tensors(net, qnet, X)[qnet.boundary]) * 2.0 ** e
    assert err.mean() <= 1.0 and err.max() <= 8  # in LSBs, after two quantized layers


def test_avg_pool_between_convs_is_an_integer_layer():
    torch.manual_seed(0)
    net = nn.Sequential(_conv(3, 8), nn.ReLU(), nn.AvgPool2d(2), _conv(8, 4),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    qnet = calibrate(net.eval(), X, progress=False)
    assert [layer.kind for layer in qnet.layers] == ["conv", "avgpool", "conv"]
    pool = qnet.layers[1]
    assert pool.divisor == 4 and pool.e_y == qnet.layers[0].e_y
    run = IntegerReference(qnet).run(X)
    x = run.tensors[pool.inputs[0]].astype("int64")
    s = x.reshape(2, 8, 4, 2, 4, 2).sum(axis=(3, 5))
    assert (run.tensors[pool.output] == (2 * s + 4) // 8).all()  # halves round up
    assert [op.kind for op in qnet.head] == ["adaptive_avg_pool2d", "flatten"]


def test_bn_not_after_conv_is_rejected():
    net = nn.Sequential(_conv(), nn.ReLU(), nn.BatchNorm2d(4))
    with pytest.raises(UnsupportedOpError, match="BatchNorm2d at layer '2'.*directly follow"):
        calibrate(net.eval(), X, progress=False)


@pytest.mark.parametrize("module, text", [
    (nn.Sigmoid(), "op 'sigmoid (Sigmoid)' at layer '1'"),
    (nn.Upsample(scale_factor=2), "(Upsample)' at layer '1'"),
    (nn.GELU(), "op 'gelu (GELU)' at layer '1'"),
])
def test_unsupported_module_names_the_op_and_path(module, text):
    with pytest.raises(UnsupportedOpError, match=text.replace("(", r"\(").replace(")", r"\)")):
        capture(nn.Sequential(_conv(), module), X)


def test_unsupported_function_and_constant_add():
    class Mul(nn.Module):
        def forward(self, x):
            return x * 2

    class AddConst(nn.Module):
        def forward(self, x):
            return x + 1.0

    with pytest.raises(UnsupportedOpError, match="op 'mul"):
        capture(Mul(), X)
    with pytest.raises(UnsupportedOpError, match="constant operand"):
        capture(AddConst(), X)


def test_conv_after_the_host_head_is_rejected():
    net = nn.Sequential(_conv(), nn.AdaptiveAvgPool2d(4), _conv(4, 4))
    with pytest.raises(UnsupportedOpError, match="conv .* at layer '2'.*after the host head"):
        capture(net, X)


def test_branching_host_head_is_rejected():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = _conv()
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            y = self.conv(x)
            return torch.flatten(self.pool(y), 1) + torch.flatten(y, 1).mean(1, keepdim=True)

    with pytest.raises(UnsupportedOpError, match="host head must be a chain"):
        capture(Net(), X)


def test_value_dependent_control_flow_is_reported():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedOpError, match="torch.export failed"):
        capture(Branchy(), X)


def test_shape_dependent_control_flow_is_captured():
    class ShapeBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.small, self.large = _conv(), _conv(3, 4, stride=2)

        def forward(self, x):
            return self.small(x) if x.shape[-1] <= 8 else self.large(x)

    net = ShapeBranch().eval()
    assert [lp.name for lp in capture(net, X).layers] == ["small"]
    assert [lp.name for lp in capture(net, (3, 16, 16)).layers] == ["large"]


def test_plain_conv2d_with_stride_and_reflect_padding():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="reflect"),
                        nn.BatchNorm2d(4), nn.ReLU())
    randomize_bn(net)
    qnet = calibrate(net, X, progress=False)
    (layer,) = qnet.layers
    assert isinstance(layer, QConv) and layer.stride == (2, 2) and layer.block == (8, 8)
    assert layer.padding_mode == "reflect" and not layer.pool and layer.sign is None
    got = IntegerReference(qnet).run(X).boundary * 2.0 ** -qnet.boundary_exponent
    want = float_tensors(net, qnet, X)[qnet.boundary]
    assert abs(got - want).max() <= 4 * 2.0 ** -qnet.boundary_exponent


def test_calibrate_leaves_the_model_in_its_mode():
    net = nn.Sequential(_conv(), nn.BatchNorm2d(4))
    before = net[1].running_mean.clone()
    for modes in ([True, True], [False, False], [False, True]):  # the last one mixed
        for m, flag in zip(net, modes):
            m.training = flag
        net.training = modes[0]
        qnet = calibrate(net, X, progress=False)
        assert [m.training for m in net] == modes and net.training == modes[0]
        assert torch.equal(net[1].running_mean, before)  # ran in eval mode
        agreement(net, qnet, X)
        assert [m.training for m in net] == modes


def test_inplace_ops_are_captured_with_their_meaning():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = _conv()
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            a = self.conv(x)
            r = self.relu(a)  # mutates a, which the add reads afterwards: r + a = 2 relu(a)
            return r + a

    net = Net().eval()
    qnet = calibrate(net, X, progress=False)
    got = IntegerReference(qnet).run(X).boundary * 2.0 ** -qnet.boundary_exponent
    with torch.no_grad():
        want = net(X).numpy()
    assert got.min() >= 0 and abs(got - want).max() <= 4 * 2.0 ** -qnet.boundary_exponent


def test_calibration_reads_the_exported_program_as_the_relax_graph_computes():
    """Calibration runs the exported program in PyTorch, reading each layer output at the
    node its Relax var was imported from; running the folded Relax graph on the VM instead
    gives the same maxima (to float rounding) and the same exponents."""
    from bctvm.quant import calibrate_graph
    from bctvm.quant.graph import capture_graph

    model = randomize_bn(get_model("block_resnet18", block_size=4, num_classes=10))
    x = torch.randn(2, 3, 32, 32)
    mod, ep = capture_graph(model, x[:1])
    by_torch = calibrate_graph(mod, x, progress=False, exported=ep)
    by_vm = calibrate_graph(mod, x, progress=False)
    assert by_torch.max_abs.keys() == by_vm.max_abs.keys()
    for k, v in by_torch.max_abs.items():
        assert v == pytest.approx(by_vm.max_abs[k], rel=1e-4), k
    assert by_torch.exponents == by_vm.exponents
