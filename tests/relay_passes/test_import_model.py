"""ImportModel: sources, the batch_norm fix, parameter names, errors naming op and source."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bctvm.errors import BadInputError, UnsupportedOpError
from relay_passes.import_model import import_model
from relay_passes.vm_run import run_module

from .conftest import calls_of, randomize_bn


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, eps=1e-3)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def test_batch_norm_keeps_eps_and_inference_mode():
    """TVM 0.27 reads aten.batch_norm with the wrong argument order (eps = momentum,
    training = True); bctvm's importer must give the module's eps and inference mode."""
    model = randomize_bn(ConvBN())
    x = torch.randn(1, 3, 6, 6)
    im = import_model(model, x)
    (bn,) = calls_of(im.mod, "relax.nn.batch_norm")
    assert bn.attrs["epsilon"] == pytest.approx(1e-3)
    assert not bool(bn.attrs["training"])
    out = run_module(im.mod, x.numpy())[0]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_params_stay_inputs_with_their_qualified_names():
    im = import_model(ConvBN(), torch.randn(1, 3, 6, 6))
    main = im.mod["main"]
    names = [p.name for p in main.params]
    assert names[0] == "x" and int(main.attrs["num_input"]) == 1
    fqn = {str(k): str(v) for k, v in main.attrs["bctvm.param_fqn"].items()}
    assert fqn == {"p_conv_weight": "conv.weight", "p_conv_bias": "conv.bias",
                   "p_bn_weight": "bn.weight", "p_bn_bias": "bn.bias"}
    assert set(names[1:]) == set(fqn)


def test_pt2_file_and_factory_sources(tmp_path):
    model = randomize_bn(ConvBN())
    x = torch.randn(1, 3, 6, 6)
    ep = torch.export.export(model, (x,))
    torch.export.save(ep, str(tmp_path / "net.pt2"))
    im = import_model(str(tmp_path / "net.pt2"))
    assert im.module is None and im.input_shape == (1, 3, 6, 6)
    out = run_module(im.mod, x.numpy())[0]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)

    (tmp_path / "nets.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.ReLU())\n")
    im2 = import_model(f"{tmp_path / 'nets.py'}:make", input_shape=(1, 3, 5, 5))
    assert im2.name == "make" and im2.input_shape == (1, 3, 5, 5)
    with pytest.raises(BadInputError, match="no factory function 'nope'"):
        import_model(f"{tmp_path / 'nets.py'}:nope")
    with pytest.raises(BadInputError, match="not found"):
        import_model(str(tmp_path / "missing.pt2"))


class Frac(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.frac(self.conv(x))


def test_unsupported_op_names_op_and_source():
    with pytest.raises(UnsupportedOpError) as err:
        import_model(Frac(), torch.randn(1, 3, 4, 4))
    msg = str(err.value)
    assert "frac" in msg and "test_import_model.py:" in msg
    assert "\n" not in msg  # one line, no TVM stack trace


def test_zoo_model_and_example_input_are_the_same_every_time():
    """A model without a checkpoint is built under a fixed seed (same weights, same artifact
    on every compile), and the caller's random state is left as it was."""
    from relay_passes.import_model import load_source

    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, _, xa, _ = load_source("block_resnet18", input_shape=(1, 3, 32, 32), block_size=8)
    after = torch.rand(3)
    b, _, xb, _ = load_source("block_resnet18", input_shape=(1, 3, 32, 32), block_size=8)
    assert torch.equal(before, after)
    assert torch.equal(xa, xb)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
