"""Quantize: the integer graph of a QuantizedNet equals IntegerReference bit for bit, layer by
layer; mismatched graphs and nets are errors naming the layer."""

from __future__ import annotations

import numpy as np
import pytest

from bctvm.errors import BadInputError
from bctvm.quant import IntegerReference
from relay_passes import ops
from relay_passes.quantize import Quantize
from relay_passes.vm_run import run_module, with_layer_outputs

from .conftest import SmallNet, calls_of, float_module, ops_in, randomize_bn


def test_integer_graph_structure(quantized):
    _, qnet, _, _, qmod = quantized
    names = ops_in(qmod)
    assert names[0] == ops.QUANTIZE
    assert names.count(ops.QBLOCK_CONV2D) == len(qnet.conv_layers) == 5
    assert names.count(ops.QMAX_POOL2D) == 1 and names.count(ops.QADD) == 1
    assert names.count(ops.QRELU) == 1 and names.count(ops.DEQUANTIZE) == 1
    assert ops.BLOCK_CONV2D not in names and "relax.nn.relu" not in names
    residual = [c for c in calls_of(qmod, ops.QBLOCK_CONV2D) if len(c.args) == 5]
    (c2,) = residual
    q = qnet.layer("c2")
    a = ops.attrs_dict(c2)
    assert (a["layer"], a["shift"], a["residual_shift"], a["relu"]) == \
        ("c2", q.shift, q.residual_shift, True)
    np.testing.assert_array_equal(c2.args[1].value.numpy(), q.weight)


def test_bit_exact_layer_by_layer(quantized):
    model, qnet, x, _, qmod = quantized
    run = IntegerReference(qnet).run(x.numpy())
    mod, layers = with_layer_outputs(qmod)
    outs = run_module(mod, x.numpy())
    logits, tensors = outs[0], outs[1:]
    assert layers == [layer.name for layer in qnet.layers]
    for name, got in zip(layers, tensors):
        want = run.tensors[qnet.layer(name).output]
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, want, err_msg=f"layer {name}")
    np.testing.assert_allclose(logits, run.output, rtol=1e-5, atol=1e-5)


def test_graph_and_net_must_agree(quantized):
    model, qnet, x, _, _ = quantized
    other = randomize_bn(SmallNet(block=2))  # same layers, other block size
    with pytest.raises(BadInputError, match="layer 'stem': block is"):
        Quantize(qnet)(float_module(other, x))


def test_pipeline_verification_catches_a_wrong_shift(quantized):
    """The per-stage check is not vacuous: one layer requantized by one more bit differs."""
    import copy

    from bctvm.errors import ValidationMismatch
    from relay_passes.import_model import import_model
    from relay_passes.pipeline import _Checker

    model, qnet, x, fmod, qmod = quantized
    bad = copy.deepcopy(qnet)
    bad.layer("c1").shift += 1
    checker = _Checker(import_model(model, x))
    checker.set_qnet(qnet)
    checker.check("Quantize", qmod)  # the right numbers pass
    with pytest.raises(ValidationMismatch, match="boundary tensor differs"):
        checker.check("Quantize", Quantize(bad)(fmod))
