"""QuantizedNet round trip through npz + json, and the errors for broken files."""

import json
from dataclasses import fields

import numpy as np
import pytest
import torch

from bctvm.errors import ProgramFormatError
from bctvm.models import get_model
from bctvm.quant import IntegerReference, QuantizedNet, calibrate, load_qnet

from .helpers import TwoLayer, randomize_bn


def _assert_same(a: QuantizedNet, b: QuantizedNet) -> None:
    for f in fields(QuantizedNet):
        if f.name not in ("layers", "head"):
            assert getattr(a, f.name) == getattr(b, f.name), f.name
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert type(la) is type(lb)
        for f in fields(la):
            va, vb = getattr(la, f.name), getattr(lb, f.name)
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and np.array_equal(va, vb), (la.name, f.name)
            else:
                assert va == vb, (la.name, f.name)
    for ha, hb in zip(a.head, b.head):
        assert (ha.name, ha.kind, ha.params) == (hb.name, hb.kind, hb.params)
        assert ha.weights.keys() == hb.weights.keys()
        assert all(np.array_equal(ha.weights[k], hb.weights[k]) for k in ha.weights)


@pytest.mark.parametrize("which", ["two_layer", "resnet18"])
def test_round_trip_keeps_every_field_and_the_results(tmp_path, which):
    torch.manual_seed(0)
    model = TwoLayer() if which == "two_layer" else get_model("block_resnet18", block_size=8,
                                                              num_classes=4)
    randomize_bn(model)
    x = torch.randn(3, 3, 8 if which == "two_layer" else 32, 8 if which == "two_layer" else 32)
    qnet = calibrate(model, x, progress=False)
    jpath, npath = qnet.save(tmp_path / "net" / "qnet")
    assert jpath.name == "qnet.json" and npath.name == "qnet.npz"
    back = QuantizedNet.load(tmp_path / "net" / "qnet.json")
    _assert_same(qnet, back)
    a, b = IntegerReference(qnet).run(x), IntegerReference(back).run(x)
    assert a.tensors.keys() == b.tensors.keys()
    assert all(np.array_equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert np.array_equal(a.output, b.output)
    meta = json.loads(jpath.read_text())
    assert meta["format"] == "bctvm-qnet" and meta["version"] == 1


def test_broken_files_are_reported(tmp_path):
    qnet = calibrate(randomize_bn(TwoLayer()), torch.randn(2, 3, 8, 8), progress=False)
    jpath, npath = qnet.save(tmp_path / "q")
    with pytest.raises(ProgramFormatError, match="not found"):
        load_qnet(tmp_path / "missing")
    meta = json.loads(jpath.read_text())
    meta["version"] = 99
    jpath.write_text(json.dumps(meta))
    with pytest.raises(ProgramFormatError, match="version 99"):
        load_qnet(jpath)
    meta["version"] = 1
    meta["layers"][0]["kind"] = "conv3d"
    jpath.write_text(json.dumps(meta))
    with pytest.raises(ProgramFormatError, match="conv3d"):
        load_qnet(jpath)
    for text, why in (("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")):
        jpath.write_text(text)
        with pytest.raises(ProgramFormatError, match=why):
            load_qnet(jpath)
    qnet.save(tmp_path / "q")
    arrays = dict(np.load(npath))
    arrays["L0.weight"] = arrays["L0.weight"].astype(np.float32)
    np.savez(npath, **arrays)
    with pytest.raises(ProgramFormatError, match="L0.weight: dtype float32"):
        load_qnet(jpath)
