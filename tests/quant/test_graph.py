"""Fusion planning and the errors for what the int8 flow does not support."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bctvm.errors import UnsupportedOpError
from bctvm.models import BlockConv2d, get_model
from bctvm.quant import QConv, agreement, calibrate, capture

from .helpers import randomize_bn

X = torch.randn(2, 3, 8, 8)


def _conv(cin=3, cout=4, stride=1):
    return BlockConv2d(cin, cout, 3, 4, stride=stride, padding=1)


def test_resnet_block_fuses_bn_add_relu_and_takes_downsample_as_residual():
    model = get_model("block_resnet18", block_size=8, num_classes=10)
    plan = capture(model)
    by_name = {lp.name: lp for lp in plan.layers}
    conv2 = by_name["layer2.0.conv2"]
    assert set(conv2.nodes) == {"conv", "bn", "add", "relu"}
    assert by_name["layer2.0.downsample.0"].output is conv2.residual
    assert set(by_name["layer2.0.downsample.0"].nodes) == {"conv", "bn"}
    assert set(by_name["conv1"].nodes) == {"conv", "bn", "relu"}
    assert by_name["maxpool"].kind == "maxpool"
    # identity shortcut: the residual is the previous block's output
    assert by_name["layer1.1.conv2"].residual is by_name["layer1.0.conv2"].output
    assert [hp.kind for hp in plan.host] == ["adaptive_avg_pool2d", "flatten", "linear"]


def test_add_of_two_conv_branches_fuses_into_the_later_conv():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = _conv(), _conv()

        def forward(self, x):
            a = self.a(x)
            b = self.b(x)
            return F.relu(a + b)

    plan = capture(Net())
    names = [lp.name for lp in plan.layers]
    assert names == ["a", "b"]
    assert plan.layers[1].residual is plan.layers[0].output and "relu" in plan.layers[1].nodes


def test_dropout_and_identity_vanish_and_view_flatten_is_a_host_flatten():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = _conv()
            self.skip = nn.Identity()
            self.drop = nn.Dropout(0.3)
            self.fc = nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            y = self.drop(self.skip(F.relu(self.conv(x))))
            return torch.softmax(self.fc(F.dropout(y.view(y.size(0), -1))), dim=1)

    net = Net().eval()
    qnet = calibrate(net, X, progress=False)
    assert [layer.kind for layer in qnet.layers] == ["conv"] and qnet.layers[0].relu
    assert [op.kind for op in qnet.head] == ["flatten", "linear", "softmax"]
    from bctvm.quant import IntegerReference
    out = IntegerReference(qnet).run(X).output
    assert out.shape == (2, 3) and abs(out.sum(1) - 1).max() < 1e-5


def test_bn_not_after_conv_is_rejected():
    net = nn.Sequential(_conv(), nn.ReLU(), nn.BatchNorm2d(4))
    with pytest.raises(UnsupportedOpError, match="'2'.*BatchNorm2d must directly follow a conv"):
        calibrate(net.eval(), X, progress=False)


@pytest.mark.parametrize("module, text", [
    (nn.Sigmoid(), "module '1': Sigmoid is not supported"),
    (nn.ReLU6(), "module '1': ReLU6 is not supported"),
    (nn.Upsample(scale_factor=2), "module '1': Upsample is not supported"),
])
def test_unsupported_module_names_the_op_and_path(module, text):
    with pytest.raises(UnsupportedOpError, match=text):
        capture(nn.Sequential(_conv(), module))


def test_unsupported_function_and_constant_add():
    class Mul(nn.Module):
        def forward(self, x):
            return x * 2

    class AddConst(nn.Module):
        def forward(self, x):
            return x + 1.0

    with pytest.raises(UnsupportedOpError, match="function 'mul'"):
        capture(Mul())
    with pytest.raises(UnsupportedOpError, match="constant operand"):
        capture(AddConst())


def test_conv_after_the_host_head_is_rejected():
    net = nn.Sequential(_conv(), nn.AvgPool2d(2), _conv(4, 4))
    with pytest.raises(UnsupportedOpError, match="module '2'.*after the host head"):
        capture(net)


def test_branching_host_head_is_rejected():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = _conv()
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            y = self.conv(x)
            return torch.flatten(self.pool(y), 1) + torch.flatten(y, 1).mean(1, keepdim=True)

    with pytest.raises(UnsupportedOpError, match="function 'add'.*after the host head"):
        capture(Net())


def test_untraceable_model_is_reported():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedOpError, match="torch.fx cannot trace"):
        capture(Branchy())


def test_plain_conv2d_with_stride_and_reflect_padding():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="reflect"),
                        nn.BatchNorm2d(4), nn.ReLU())
    randomize_bn(net)
    qnet = calibrate(net, X, progress=False)
    (layer,) = qnet.layers
    assert isinstance(layer, QConv) and layer.stride == (2, 2) and layer.block == (8, 8)
    assert layer.padding_mode == "reflect" and not layer.pool and layer.sign is None
    from bctvm.quant import IntegerReference, float_tensors
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


def test_inplace_op_on_a_tensor_read_later_is_rejected():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = _conv()
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            a = self.conv(x)
            r = self.relu(a)  # mutates a, which the add reads afterwards
            return r + a

    with pytest.raises(UnsupportedOpError, match="module 'relu': in-place op on 'conv'"):
        capture(Net())

    class Fine(Net):
        def forward(self, x):
            a = self.conv(x)
            return self.relu(F.relu(a) + a)  # in place on the add's own result: fine

    plan = capture(Fine())
    assert [lp.kind for lp in plan.layers] == ["conv", "relu", "add"]
    assert set(plan.layers[2].nodes) == {"add", "relu"}
