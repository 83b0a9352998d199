"""BlockConv2d against the NumPy reference, block resolution rules, errors, export chain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bctvm.errors import BadInputError, BlockShapeError, UnsupportedOpError
from bctvm.models import BlockConv2d, block_conv2d, blockify, resolve_block, unblockify

from .reference import ref_block_conv

MODES = ["constant", "replicate", "reflect"]


def run_layer(layer: BlockConv2d, shape, seed=0):
    """Float64 forward of `layer` and of the NumPy reference on the same random input."""
    gen = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64))
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        got = layer(x).numpy()
    block = layer.block_for(shape[2], shape[3])
    bias = None if layer.bias is None else layer.bias.detach().numpy()
    want = ref_block_conv(
        x.numpy(), layer.weight.detach().numpy(), bias, block, layer.padding,
        layer.padding_mode, layer.dilation, layer.groups, pool=layer.stride == (2, 2),
    )
    return got, want, block


# (in, out, kernel, H, W, block_size, type, padding, stride, dilation, groups, bias, expect block)
CASES = {
    "fixed_3to5": (3, 5, 3, 8, 8, 4, "fixed", 1, 1, 1, 1, True, (4, 4)),
    "fixed_stride2": (3, 5, 3, 8, 8, 4, 0, 1, 2, 1, 1, True, (4, 4)),
    "hier_2x2": (3, 5, 3, 12, 12, 2, "hierarchical", 1, 1, 1, 1, True, (6, 6)),
    "hier_3x2_stride2": (4, 6, 3, 12, 8, (3, 2), 1, 1, 2, 1, 1, False, (4, 4)),
    "non_square_block": (3, 5, 3, 8, 8, (4, 2), "fixed", 1, 1, 1, 1, True, (4, 2)),
    "non_square_map": (2, 3, 3, 8, 12, 4, "fixed", 1, 1, 1, 1, True, (4, 4)),
    "depthwise": (6, 6, 3, 8, 8, 4, "fixed", 1, 1, 1, 6, False, (4, 4)),
    "depthwise_stride2": (6, 6, 3, 8, 8, 4, "fixed", 1, 2, 1, 6, False, (4, 4)),
    "grouped": (4, 6, 3, 8, 8, 4, "fixed", 1, 1, 1, 2, True, (4, 4)),
    "dilation2": (3, 5, 3, 12, 12, 6, "fixed", 2, 1, 2, 1, True, (6, 6)),
    "stem_7x7": (3, 4, 7, 16, 16, 8, "fixed", 3, 2, 1, 1, False, (8, 8)),
    "pointwise_stride2": (5, 7, 1, 8, 8, 4, "fixed", 0, 2, 1, 1, False, (4, 4)),
    "shrinking_no_pad": (3, 5, 3, 8, 8, 4, "fixed", 0, 1, 1, 1, True, (4, 4)),
    "odd_block_stride2": (3, 5, 3, 6, 6, 3, "fixed", 1, 2, 1, 1, True, (3, 3)),
    "single_zero": (3, 5, 3, 8, 8, 0, "fixed", 1, 1, 1, 1, True, (8, 8)),
    "single_larger": (3, 5, 3, 8, 8, 16, "fixed", 1, 2, 1, 1, True, (8, 8)),
    "single_hier_one": (3, 5, 3, 8, 8, 1, "hierarchical", 1, 1, 1, 1, True, (8, 8)),
    "hier_not_dividing": (3, 5, 3, 8, 8, 3, "hierarchical", 1, 1, 1, 1, True, (8, 8)),
    "hier_mixed_sides": (3, 5, 3, 8, 9, 2, "hierarchical", 1, 1, 1, 1, True, (4, 9)),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_block_conv_matches_numpy_reference(case, mode):
    cin, cout, k, h, w, bs, kind, pad, stride, dil, groups, bias, expect = CASES[case]
    layer = BlockConv2d(cin, cout, k, bs, type=kind, stride=stride, padding=pad, dilation=dil,
                        groups=groups, bias=bias, padding_mode=mode)
    got, want, block = run_layer(layer, (2, cin, h, w))
    assert block == expect
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    mode=st.sampled_from(MODES),
    nh=st.integers(1, 3), nw=st.integers(1, 3), bh=st.integers(2, 5), bw=st.integers(2, 5),
    k=st.sampled_from([1, 3, 5]), stride=st.sampled_from([1, 2]),
    cin=st.integers(1, 4), cout=st.integers(1, 4), seed=st.integers(0, 1000),
)
def test_block_conv_property_against_reference(mode, nh, nw, bh, bw, k, stride, cin, cout, seed):
    pad = min(k // 2, bh - 1, bw - 1)  # reflect needs padding < block side
    if bh + 2 * pad < k or bw + 2 * pad < k:
        pad = k // 2
        mode = "constant" if mode == "reflect" else mode
    layer = BlockConv2d(cin, cout, k, (bh, bw), stride=stride, padding=pad, padding_mode=mode)
    got, want, block = run_layer(layer, (1, cin, nh * bh, nw * bw), seed)
    assert block == (bh, bw)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_block_conv_differs_from_plain_conv_at_block_borders():
    """Guard against the reference and the layer agreeing by both ignoring the blocks."""
    layer = BlockConv2d(2, 3, 3, 4, padding=1).double()
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        blocked = layer(x)
        plain = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
    inner = (blocked - plain).abs()
    # inside a block (rows/cols 1..2 of block 0) identical; on block borders (row 3/4) different
    assert inner[..., 1:3, 1:3].max() < 1e-12
    assert inner[..., 3:5, :].max() > 1e-3


def test_functional_form_on_float64_integers_is_exact():
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(-128, 128, (1, 4, 8, 8), generator=gen).double()
    w = torch.randint(-128, 128, (6, 4, 3, 3), generator=gen).double()
    b = torch.randint(-1000, 1000, (6,), generator=gen).double()
    y = block_conv2d(x, w, b, (4, 4), 1, "replicate", pool=True)
    want = ref_block_conv(x.numpy(), w.numpy(), b.numpy(), (4, 4), (1, 1), "replicate", pool=True)
    assert y.dtype == torch.float64 and y.shape == (1, 6, 4, 4)
    assert np.array_equal(y.numpy(), want)
    assert np.array_equal(y.numpy(), np.round(y.numpy()))


def test_blockify_order_and_roundtrip():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    blocks = blockify(x, 2, 3)
    assert blocks.shape == (2 * 2 * 2, 3, 2, 3)
    # block (n=1, i=1, j=0) sits at index n*4 + i*2 + j and holds that slice
    assert torch.equal(blocks[1 * 4 + 1 * 2 + 0], x[1, :, 2:4, 0:3])
    assert torch.equal(unblockify(blocks, 2, 2, 2), x)


@pytest.mark.parametrize(
    "h, w, block_size, kind, expect",
    [
        (56, 56, 28, "fixed", (28, 28)),
        (56, 56, 28, 0, (28, 28)),
        (14, 14, 28, "fixed", (14, 14)),  # clipped to the map
        (56, 28, (28, 0), "fixed", (28, 28)),  # 0 = whole side
        (56, 56, 0, "fixed", (56, 56)),
        (56, 56, 2, "hierarchical", (28, 28)),
        (56, 56, 2, 1, (28, 28)),
        (7, 56, 2, "hierarchical", (7, 28)),  # 7 not divisible by 2: whole side
        (56, 56, (4, 1), "hierarchical", (14, 56)),
        (1, 1, 2, "hierarchical", (1, 1)),
        (4, 4, 0, "hierarchical", (4, 4)),
    ],
)
def test_resolve_block(h, w, block_size, kind, expect):
    assert resolve_block(h, w, block_size, kind) == expect


def test_resolve_block_error_names_layer_shape_and_block():
    with pytest.raises(BlockShapeError, match=r"'layer1\.0\.conv2'.*12x12.*30x30"):
        resolve_block(30, 30, 12, "fixed", layer="layer1.0.conv2")


def test_forward_error_names_layer_for_non_dividing_block():
    layer = BlockConv2d(3, 4, 3, 5, padding=1, layer_name="features.3")
    with pytest.raises(BlockShapeError, match=r"features\.3.*8x8"):
        layer(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(stride=3), UnsupportedOpError, "stride"),
        (dict(stride=(2, 1)), UnsupportedOpError, "stride"),
        (dict(type="tiled"), BadInputError, "block type"),
        (dict(padding_mode="circular"), BadInputError, "padding mode"),
        (dict(block_size=-1), BadInputError, "block_size"),
        (dict(groups=2), BadInputError, "groups"),
        (dict(kernel_size=(3, 3, 3)), BadInputError, "kernel_size"),
    ],
)
def test_constructor_rejects_bad_settings(kwargs, error, pattern):
    args = dict(in_channels=3, out_channels=4, kernel_size=3, block_size=4, layer_name="c1")
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        BlockConv2d(**args)


def test_reflect_padding_wider_than_block_is_an_error():
    layer = BlockConv2d(3, 4, 3, 2, type="hierarchical", padding=1, padding_mode="reflect",
                        layer_name="layer3.0.conv1")
    with pytest.raises(BlockShapeError, match=r"layer3\.0\.conv1.*reflect"):
        layer(torch.randn(1, 3, 2, 2))  # 1x1 blocks


def test_wrong_channel_count_names_layer():
    layer = BlockConv2d(3, 4, 3, 4, padding=1, layer_name="conv1")
    with pytest.raises(BadInputError, match="conv1.*5 channels"):
        layer(torch.randn(1, 5, 8, 8))


def test_parameters_and_repr_match_conv2d_conventions():
    layer = BlockConv2d(3, 8, 3, (4, 2), type=1, stride=2, padding=1, bias=False,
                        padding_mode="zeros")
    plain = torch.nn.Conv2d(3, 8, 3, 2, 1, bias=False)
    assert list(layer.state_dict()) == list(plain.state_dict()) == ["weight"]
    assert layer.weight.shape == plain.weight.shape
    assert layer.padding_mode == "constant" and layer.type == "hierarchical" and layer.pool
    text = repr(layer)
    assert "block=hierarchical 4x2 blocks per side" in text and "stride=(2, 2)" in text


# --- export: the op chain the graph passes rely on ----------------------------------------

BLOCKED = ["reshape", "permute", "reshape", "pad", "conv2d", "reshape", "permute", "reshape"]


def exported_ops(module, shape):
    ep = torch.export.export(module.eval(), (torch.randn(shape),))
    nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
    return [n.target._opname for n in nodes], nodes, ep


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "block, stride, chain",
    [
        (4, 1, BLOCKED),
        (4, 2, BLOCKED + ["max_pool2d"]),
        (0, 1, ["pad", "conv2d"]),
        (8, 2, ["pad", "conv2d", "max_pool2d"]),
    ],
)
def test_export_chain(mode, block, stride, chain):
    layer = BlockConv2d(3, 5, 3, block, stride=stride, padding=1, padding_mode=mode)
    ops, nodes, ep = exported_ops(layer, (1, 3, 8, 8))
    assert ops == chain
    pad = next(n for n in nodes if n.target._opname == "pad")
    conv = next(n for n in nodes if n.target._opname == "conv2d")
    assert list(pad.args[1]) == [1, 1, 1, 1] and pad.args[2] == mode
    assert len(conv.args) == 3  # input, weight, bias: stride 1, padding 0 by default
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(ep.module()(x), layer(x))


def test_export_keeps_explicit_zero_pad_for_pointwise():
    layer = BlockConv2d(4, 6, 1, 4, bias=False)
    ops, nodes, _ = exported_ops(layer, (1, 4, 8, 8))
    assert ops == BLOCKED
    pad = next(n for n in nodes if n.target._opname == "pad")
    assert list(pad.args[1]) == [0, 0, 0, 0]


def test_relax_import_is_one_to_one():
    """The Relax importer (pad modes kept) sees reshape/permute/pad/conv2d(+bias add)/pool."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    layer = BlockConv2d(3, 5, 3, 4, stride=2, padding=1, padding_mode="reflect")
    ep = torch.export.export(layer.eval(), (torch.randn(1, 3, 8, 8),))
    mod = from_exported_program(ep, run_ep_decomposition=False)
    calls = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
                calls.append(value)
    names = [c.op.name for c in calls]
    assert names == [
        "relax.reshape", "relax.permute_dims", "relax.reshape", "relax.nn.pad",
        "relax.nn.conv2d", "relax.reshape", "relax.add", "relax.reshape",
        "relax.permute_dims", "relax.reshape", "relax.nn.max_pool2d",
    ]
    pad = calls[names.index("relax.nn.pad")]
    assert pad.attrs.pad_mode == "reflect"
    conv = calls[names.index("relax.nn.conv2d")]
    assert [int(v) for v in conv.attrs.padding] == [0, 0, 0, 0]
    assert [int(v) for v in conv.attrs.strides] == [1, 1]
