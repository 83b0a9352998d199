"""Zoo models build, run and export (224x224 and small inputs); names, registry and MACs."""

from __future__ import annotations

import gc

import pytest
import torch

from bctvm.errors import BadInputError, BlockShapeError
from bctvm.models import (
    ZOO,
    BlockConv2d,
    count_macs,
    default_block_size,
    get_model,
    layer_macs,
)

NAMES = sorted(ZOO)


def op_names(ep) -> list[str]:
    return [n.target._opname for n in ep.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_builds_runs_and_exports_at_224(name):
    torch.manual_seed(0)
    model = get_model(name, num_classes=10).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 10) and torch.isfinite(y).all()
    ep = torch.export.export(model, (x,))
    ops = op_names(ep)
    convs = [m for m in model.modules() if isinstance(m, (BlockConv2d, torch.nn.Conv2d))]
    assert ops.count("conv2d") == len(convs)
    assert ops.count("pad") == sum(isinstance(m, BlockConv2d) for m in convs)
    del model, ep
    gc.collect()


F8 = ((1, 3, 32, 32), dict(block_size=8))
H2 = ((2, 3, 32, 32), dict(block_size=2, type="hierarchical", padding_mode="replicate"))
F8_REFLECT = ((1, 3, 64, 64), dict(block_size=8, padding_mode="reflect"))
SMALL = {
    "resnet18-F8": ("block_resnet18", *F8),
    "resnet18-H2-replicate": ("block_resnet18", *H2),
    "resnet18-F8-reflect-64": ("block_resnet18", *F8_REFLECT),
    "mobilenet-F8": ("block_mobilenet", *F8),
    "mobilenet-H2-replicate": ("block_mobilenet", *H2),
    "mobilenet-F8-reflect-64": ("block_mobilenet", *F8_REFLECT),
    "resnet50-H2-replicate": ("block_resnet50", *H2),
    "vgg16_bn-F8-reflect-64": ("block_vgg16_bn", *F8_REFLECT),
}


@pytest.mark.parametrize("case", list(SMALL))
def test_zoo_model_small_inputs_run_and_export_identically(case):
    name, shape, kw = SMALL[case]
    torch.manual_seed(0)
    kwargs = dict(num_classes=4, **kw)
    if name == "block_mobilenet":
        kwargs["width_mult"] = 0.25
    model = get_model(name, **kwargs).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (shape[0], 4) and torch.isfinite(y).all()
    ep = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), y)
    del model, ep
    gc.collect()


def test_block_resnet18_macs_at_224():
    model = get_model("block_resnet18")
    macs = count_macs(model, (1, 3, 224, 224))
    assert abs(macs - 2.75e9) / 2.75e9 < 0.01
    per_layer = layer_macs(model, (1, 3, 224, 224))
    # stride-2 convs are counted at their stride-1 block-conv resolution
    assert per_layer["conv1"] == 224 * 224 * 64 * 3 * 7 * 7
    assert per_layer["layer2.0.conv1"] == 56 * 56 * 128 * 64 * 3 * 3
    assert per_layer["layer2.0.downsample.0"] == 56 * 56 * 128 * 64
    assert per_layer["layer1.0.conv1"] == 56 * 56 * 64 * 64 * 3 * 3
    assert per_layer["fc"] == 512 * 1000
    assert macs == sum(per_layer.values())


def test_macs_scale_with_batch_and_count_depthwise_and_pointwise():
    model = get_model("block_mobilenet", num_classes=10, block_size=8)
    one = layer_macs(model, (1, 3, 32, 32))
    two = count_macs(model, (2, 3, 32, 32))
    assert two == 2 * sum(one.values())
    assert one["features.1.depthwise"] == 32 * 16 * 16 * 9  # groups=C: one input channel each
    assert one["features.1.pointwise"] == 64 * 32 * 16 * 16


def test_layer_names_are_qualified_module_names():
    model = get_model("block_resnet18", num_classes=10)
    names = {name for name, m in model.named_modules() if isinstance(m, BlockConv2d)}
    assert "layer1.0.conv2" in names and "layer3.0.downsample.0" in names and "conv1" in names
    for name, module in model.named_modules():
        if isinstance(module, BlockConv2d):
            assert module.layer_name == name


def test_structure_follows_torchvision():
    r18 = get_model("block_resnet18")
    assert isinstance(r18.maxpool, torch.nn.MaxPool2d) and r18.maxpool.kernel_size == 2
    assert r18.conv1.kernel_size == (7, 7) and r18.conv1.stride == (2, 2)
    assert r18.conv1.padding == (3, 3) and r18.conv1.block_size == (28, 28)
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512  # torchvision resnet18
    r50 = get_model("block_resnet50")
    assert r50.layer2[0].conv2.stride == (2, 2) and r50.layer2[0].conv1.stride == (1, 1)
    assert r50.conv1.block_size == (56, 56)
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032  # torchvision resnet50
    mob = get_model("block_mobilenet")
    dws = [m for m in mob.modules() if isinstance(m, BlockConv2d) and m.groups > 1]
    assert len(dws) == 13 and all(m.groups == m.in_channels for m in dws)
    pws = [m for m in mob.modules() if type(m) is torch.nn.Conv2d]
    assert len(pws) == 13 and all(m.kernel_size == (1, 1) for m in pws)
    assert mob.classifier.in_features == 1024


def test_vgg_structure():
    vgg = get_model("block_vgg16_bn", num_classes=10)
    convs = [m for m in vgg.features if isinstance(m, BlockConv2d)]
    pools = [m for m in vgg.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 13 and len(pools) == 5
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in vgg.features) == 13
    assert vgg.avgpool.output_size == (7, 7) and vgg.classifier[0].in_features == 512 * 49
    assert all(c.bias is not None for c in convs)


def test_registry_and_defaults():
    assert set(ZOO) == {"block_resnet18", "block_resnet34", "block_resnet50", "block_vgg16",
                        "block_vgg16_bn", "block_mobilenet"}
    assert default_block_size("block_resnet50") == 56
    assert default_block_size("block_resnet18") == 28
    with pytest.raises(BadInputError, match="unknown model 'resnet18'.*block_resnet18"):
        get_model("resnet18")
    with pytest.raises(BadInputError, match="block_mobilenet.*depth"):
        get_model("block_mobilenet", depth=3)


def test_block_size_that_does_not_divide_names_the_layer():
    model = get_model("block_resnet18", block_size=16, num_classes=10).eval()
    # stem at 224 takes 16x16 blocks; layer1 runs at 56x56, which 16 does not divide
    with pytest.raises(BlockShapeError, match=r"'layer1\.0\.conv1'.*56x56"):
        with torch.no_grad():
            model(torch.randn(1, 3, 224, 224))


def test_parse_input_shape():
    from bctvm.models.zoo import parse_input_shape

    assert parse_input_shape("1,3,224,224") == (1, 3, 224, 224)
    with pytest.raises(BadInputError, match="--input-shape"):
        parse_input_shape("1,3,0,224")
    with pytest.raises(BadInputError, match="--input-shape"):
        parse_input_shape("a,b")


def test_cli_zoo_bad_input_shape_exits_2():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", "zoo", "--macs", "--input-shape", "1,3"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "--input-shape" in proc.stderr
