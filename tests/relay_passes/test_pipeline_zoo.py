"""The whole pass pipeline on every zoo model at a small input: the float module equals
PyTorch after FoldBN, the partitioned module reproduces IntegerReference's boundary tensor bit
for bit (run_pipeline's verification raises ValidationMismatch otherwise)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bctvm.errors import BadInputError
from relay_passes.partition import vta_groups
from relay_passes.pipeline import PASS_ORDER, run_pipeline

from .conftest import randomize_bn

CASES = [  # model, board, block settings, input side
    ("block_resnet18", "zcu102", dict(block_size=8), 32),
    ("block_resnet34", "pynq",
     dict(block_size=2, type="hierarchical", padding_mode="replicate"), 32),
    ("block_resnet50", "ultra96", dict(block_size=8), 32),
    ("block_vgg16", "zcu102", dict(block_size=8, padding_mode="reflect"), 32),
    ("block_vgg16_bn", "pynq", dict(block_size=16), 32),
    ("block_mobilenet", "zcu102", dict(block_size=8, padding_mode="replicate"), 32),
]


@pytest.mark.parametrize("name,board,kw,side", CASES, ids=[c[0] for c in CASES])
def test_zoo_model_through_all_passes(name, board, kw, side):
    from bctvm.models import get_model

    torch.manual_seed(0)
    model = randomize_bn(get_model(name, num_classes=10, **kw), negative=True)
    x = torch.randn(1, 3, side, side)
    result = run_pipeline(model, example_input=x, board=board, calib=2, progress=False,
                          verify=("FoldBN", "Partition"))
    assert list(result.stages) == list(PASS_ORDER)
    plan = result.plan
    assert plan.board == board and sum(len(g.layers) for g in plan.groups) == len(plan.layers)
    assert len(vta_groups(result.mod)) == len(plan.groups)
    if not plan.onchip_reuse:
        assert all(len(g.layers) == 1 for g in plan.groups)


def test_pt2_calibrates_from_its_own_graph(tmp_path):
    """One capture: a .pt2 file calibrates from its exported program (no nn.Module needed)
    and gives the same QuantizedNet as the module it was exported from."""
    from bctvm.models import get_model

    model = get_model("block_resnet18", block_size=8, num_classes=10).eval()
    ep = torch.export.export(model, (torch.randn(1, 3, 32, 32),))
    torch.export.save(ep, str(tmp_path / "r18.pt2"))
    from_file = run_pipeline(str(tmp_path / "r18.pt2"), progress=False, stop_after="Quantize")
    from_module = run_pipeline(model, example_input=torch.randn(1, 3, 32, 32), progress=False,
                               stop_after="Quantize")
    a, b = from_file.qnet, from_module.qnet
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    assert a.exponents == b.exponents
    assert all(np.array_equal(x.weight, y.weight) for x, y in zip(a.conv_layers, b.conv_layers))


ZOO = ["block_resnet18", "block_resnet34", "block_resnet50", "block_vgg16", "block_vgg16_bn",
       "block_mobilenet"]


def test_every_zoo_model_plans_at_224():
    """Import -> ... -> PlanFusedGroups at 224x224 with the default block sizes (no VM run)."""
    from relay_passes.pipeline import plan_model

    for name in ZOO:
        plan = plan_model(name, board="zcu102", num_classes=10, progress=False)
        assert plan.input_shape == (1, 3, 224, 224)
        assert sum(len(g.layers) for g in plan.groups) == len(plan.layers) > 10, name
        assert plan.host_layers[0] in ("conv1", "features.0", "features.0.0"), name


@pytest.mark.slow
def test_block_resnet18_224_bit_exact():
    from bctvm.models import get_model

    torch.manual_seed(0)
    model = randomize_bn(get_model("block_resnet18", num_classes=10))
    run_pipeline(model, example_input=torch.randn(1, 3, 224, 224), board="zcu102",
                 progress=False, verify=("Partition",))


class UserNet(torch.nn.Module):
    """A user model of supported ops: a plain strided nn.Conv2d stem, a reflect-padded block
    conv with a residual, a stride-2 1x1 block conv, mean + linear + softmax on the host."""

    def __init__(self):
        from bctvm.models import BlockConv2d

        super().__init__()
        nn = torch.nn
        self.c0, self.b0 = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c1 = BlockConv2d(16, 16, 3, 4, padding=1, padding_mode="reflect")
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = BlockConv2d(16, 32, 1, 4, stride=2)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        x = torch.relu(self.b0(self.c0(x)))
        y = torch.relu(self.b1(self.c1(x)) + x)
        y = torch.relu(self.c2(y))
        return torch.softmax(self.fc(y.mean((2, 3))), 1)


def test_user_model_verified_after_every_pass():
    torch.manual_seed(0)
    model = randomize_bn(UserNet())
    result = run_pipeline(model, example_input=torch.randn(1, 3, 16, 16), board="zcu102",
                          stem="vta", progress=False, verify=True)
    # c0's one block (a plain conv works on the whole map) covers c1's 2x2 grid: the grids
    # nest (refine), so the graph group holds all three; c0 itself runs on the host
    assert [g.layers for g in result.plan.groups] == [["c0", "c1", "c2"]]
