"""How closely the int8 reference follows the float model.

float_tensors(model, qnet, x): the float value of every quantized tensor (by qnet name)
agreement(model, qnet, inputs): top-1 agreement, logit errors, boundary error in LSBs and,
with labels, both accuracies.
"""

from __future__ import annotations

import math

import numpy as np
from torch import nn
from tqdm import tqdm

from bctvm.errors import BadInputError

from .calibrate import capture
from .inputs import as_float_batch, iter_batches
from .qnet import QuantizedNet
from .reference import IntegerReference

__all__ = ["float_tensors", "agreement"]


def _tap(model: nn.Module, qnet: QuantizedNet, names: list[str]):
    """The model's float graph (captured as calibrate captures it) returning the float value
    of the qnet tensors `names` (input / layer outputs) after the model output."""
    from .calibrate import _Tap

    plan = capture(model, tuple(qnet.input_shape))
    by_var = {v.name: v for v in plan.values}
    by_var[plan.input.name] = plan.input
    nodes = {qnet.input_name: plan.input.name}
    nodes.update({layer.output: layer.node for layer in qnet.layers})
    missing = [n for n in names if nodes.get(n) not in by_var]
    if missing:
        raise BadInputError(
            f"the float model does not match the quantized net (tensors {missing[:3]} missing)")
    return _Tap(plan, [by_var[nodes[n]] for n in names])


def float_tensors(model: nn.Module, qnet: QuantizedNet, x) -> dict[str, np.ndarray]:
    """Float32 values (eval mode) of every quantized tensor by qnet name, plus 'output'."""
    names = [qnet.input_name] + [layer.output for layer in qnet.layers]
    values, out = _tap(model, qnet, names).run(as_float_batch(x))
    result = dict(zip(names, values))
    result["output"] = out
    return result


def agreement(
    float_model: nn.Module,
    qnet: QuantizedNet,
    inputs,
    labels=None,
    batch_size: int = 64,
    progress: bool = False,
) -> dict:
    """Compare the int8 reference with the float model on held-out `inputs`.

    inputs: tensor/array N x C x H x W (labels optional), a Dataset of (image, label) or an
    iterable of batches. Returns {"images", "top1_agreement" (fraction), "max_abs_err" and
    "mean_abs_err" of the outputs, "boundary_max_err_lsb" / "boundary_mean_err_lsb" (boundary
    error in units of 2**-boundary_exponent)} plus, with labels, "float_top1" and "int8_top1"
    (percent) and "top1_drop" (points).
    """
    tap = _tap(float_model, qnet, [qnet.boundary])
    ref = IntegerReference(qnet)
    lsb = math.ldexp(1.0, -qnet.boundary_exponent)
    n = agree = float_ok = int_ok = labelled = 0
    max_err = sum_err = b_max = b_sum = 0.0
    b_count = 0
    for x, y in tqdm(iter_batches(inputs, batch_size, labels, "agreement inputs"),
                     desc="agreement", disable=not progress, leave=False):
        (f_b,), f_out = tap.run(x)
        run = ref.run(x, keep_tensors=False)
        diff = np.abs(run.output.astype(np.float64) - f_out)
        max_err = max(max_err, float(diff.max()))
        sum_err += float(diff.mean()) * len(x)
        bd = np.abs(run.boundary.astype(np.float64) * lsb - f_b) / lsb
        b_max = max(b_max, float(bd.max()))
        b_sum += float(bd.sum())
        b_count += bd.size
        f_top = f_out.reshape(len(x), -1).argmax(1)
        i_top = run.output.reshape(len(x), -1).argmax(1)
        agree += int((f_top == i_top).sum())
        if y is not None:
            y = y.numpy()
            float_ok += int((f_top == y).sum())
            int_ok += int((i_top == y).sum())
            labelled += len(y)
        n += len(x)
    if n == 0:
        raise BadInputError("agreement inputs: no images")
    result = {
        "images": n,
        "top1_agreement": agree / n,
        "max_abs_err": max_err,
        "mean_abs_err": sum_err / n,
        "boundary_max_err_lsb": b_max,
        "boundary_mean_err_lsb": b_sum / max(b_count, 1),
    }
    if labelled:
        result["float_top1"] = 100.0 * float_ok / labelled
        result["int8_top1"] = 100.0 * int_ok / labelled
        result["top1_drop"] = result["float_top1"] - result["int8_top1"]
    return result
