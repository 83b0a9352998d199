"""Post-training int8 quantization with power-of-two scales and its bit-exact integer reference.

    from bctvm.quant import calibrate, IntegerReference, agreement
    qnet = calibrate(model, calib_images)            # fold BN, calibrate, quantize
    run = IntegerReference(qnet).run(x)              # run.tensors, run.boundary, run.output
    qnet.save("build/net/qnet"); QuantizedNet.load("build/net/qnet")
    agreement(model, qnet, test_images, labels)      # top-1 agreement, errors, accuracies

The arithmetic contract (what the graph passes and the VTA programs must reproduce bit for
bit) is written out in docs/quantization.md; intops.py holds its primitives.
"""

from .agreement import agreement, float_tensors
from .calibrate import calibrate, calibrate_graph, capture, collect_stats
from .fold import FoldedConv, bn_scale_shift, fold_conv_bn
from .fold_pool import fold_max_pools, foldable_pool
from .intops import (
    QuantizationError,
    align,
    clip_int8,
    dequantize,
    exponent_for,
    quantize,
    requantize,
    round_shift_right,
    shift_left,
    wrap32,
)
from .qnet import HostOp, QAdd, QAvgPool, QConv, QLayer, QMaxPool, QRelu, QuantizedNet
from .reference import IntegerReference, IntRun, conv_accumulator
from .serialize import load_qnet, save_qnet

__all__ = [
    "calibrate",
    "capture",
    "calibrate_graph",
    "collect_stats",
    "IntegerReference",
    "IntRun",
    "conv_accumulator",
    "agreement",
    "float_tensors",
    "QuantizedNet",
    "QLayer",
    "QConv",
    "QMaxPool",
    "QRelu",
    "QAdd",
    "QAvgPool",
    "HostOp",
    "save_qnet",
    "load_qnet",
    "FoldedConv",
    "fold_conv_bn",
    "bn_scale_shift",
    "fold_max_pools",
    "foldable_pool",
    "QuantizationError",
    "exponent_for",
    "quantize",
    "dequantize",
    "requantize",
    "round_shift_right",
    "shift_left",
    "align",
    "clip_int8",
    "wrap32",
]
