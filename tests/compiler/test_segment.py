"""segment_plan: plan groups -> VTA programs (chains with one output, residual sources)."""

from __future__ import annotations

import pytest

from bctvm.compiler.segment import host_layers, segment_plan, split_segment
from bctvm.errors import BadInputError
from relay_passes.pipeline import run_pipeline


@pytest.fixture(scope="module")
def r18():
    """block_resnet18 at 32x32, block 8, planned for zcu102 (onchip_reuse) and pynq."""
    kw = dict(input_shape=(1, 3, 32, 32), block_size=8, stop_after="PlanFusedGroups",
              progress=False)
    return {b: run_pipeline("block_resnet18", board=b, **kw) for b in ("zcu102", "pynq")}


def _check_chain(seg, plan):
    """Each layer reads the segment input or an earlier layer's output (`sources`: a chain,
    or branches); no inner output escapes the segment."""
    for j, (name, src) in enumerate(zip(seg.layers, seg.sources)):
        want = seg.data if src == "input" else seg.layers[src]
        assert plan.layers[name].inputs[0] == want and (src == "input" or src < j)
    for i, name in enumerate(seg.layers[:-1]):
        t = plan.tensors[name]
        assert not t.host_use and set(t.consumers) <= set(seg.layers[i + 1:])


def test_fused_segments_are_chains_with_resolved_residuals(r18):
    res = r18["zcu102"]
    segs = segment_plan(res.plan, res.qnet, "fused")
    assert any(len(s.layers) > 1 for s in segs)
    for s in segs:
        _check_chain(s, res.plan)
        for j, (name, r) in enumerate(zip(s.layers, s.residuals)):
            info = res.plan.layers[name]
            if not info.residual:
                assert r is None
            elif r == "input":
                assert info.inputs[-1] == s.data
            elif isinstance(r, int):
                assert s.layers[r] == info.inputs[-1] and r < j
            else:
                assert r == "external" and info.inputs[-1] in s.external
    # a basic block: conv2 adds the segment input (the block's input) as its residual
    first = next(s for s in segs if s.layers[0] == "layer1.0.conv1")
    assert first.layers[:2] == ["layer1.0.conv1", "layer1.0.conv2"]
    assert first.residuals[1] == "input"
    # every VTA conv is in exactly one segment; the host stem stays outside
    names = [n for s in segs for n in s.layers]
    assert len(names) == len(set(names)) == 19
    assert host_layers(res.plan, segs) == []


def test_layerwise_and_boards_without_reuse_give_one_layer_per_segment(r18):
    for board, mode in (("zcu102", "layerwise"), ("pynq", "fused"), ("pynq", "layerwise")):
        res = r18[board]
        segs = segment_plan(res.plan, res.qnet, mode)
        assert all(len(s.layers) == 1 for s in segs), (board, mode)
        assert len(segs) == 19


def test_split_re_resolves_residuals(r18):
    res = r18["zcu102"]
    seg = next(s for s in segment_plan(res.plan, res.qnet, "fused") if len(s.layers) >= 4)
    a, b = split_segment(seg, res.plan, 2)
    assert a.layers + b.layers == seg.layers
    assert b.data == a.output
    for name, r in zip(b.layers, b.residuals):
        if res.plan.layers[name].residual:
            assert r in ("input", "external") or isinstance(r, int)
            assert r != "external" or all(t not in b.layers for t in b.external)


def test_unknown_mode_is_an_error(r18):
    res = r18["zcu102"]
    with pytest.raises(BadInputError, match="--mode"):
        segment_plan(res.plan, res.qnet, "streaming")
