"""Clear errors instead of wrong programs: buffer overflow, field overflow, bad inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from boards import load_board
from bctvm.errors import BadInputError
from bctvm.lower import lower_to_kernels
from bctvm.lower.group import compile_group
from bctvm.lower.sram import SramPlanner
from schedules import BufferFitError, LayerSpec, layer_compute, scheduled_module


def test_allocator_overflow_names_layer_and_buffer():
    cfg = load_board("zcu102")
    spec = LayerSpec("conv_big", 64, 64, 56, 56, (28, 28), shift=10)
    mod, knobs = scheduled_module(layer_compute(cfg, spec))
    func = lower_to_kernels(mod)["main"]
    small = dataclasses.replace(cfg, name="zcu102-small-acc", log_acc_buff_size=15)
    with pytest.raises(BufferFitError, match=r"conv_big.*acc buffer needs \d+ elements.*has 256"):
        SramPlanner(small, knobs.vthreads, {"l0": "conv_big"}).plan(func.body)
    # the real board fits
    sites = SramPlanner(cfg, knobs.vthreads, {"l0": "conv_big"}).plan(func.body)
    assert all(s.end <= {"inp": cfg.inp_depth, "wgt": cfg.wgt_depth, "acc": cfg.acc_depth}[s.kind]
               for s in sites.values())


def test_wrong_input_shape_is_a_bad_input():
    cfg = load_board("pynq")
    spec = LayerSpec("c", 16, 16, 8, 8, (4, 4))
    cg = compile_group(cfg, [spec])
    w = np.zeros((16, 16, 3, 3), np.int8)
    with pytest.raises(BadInputError, match="int8 \\(1, 16, 8, 8\\)"):
        cg.image(np.zeros((1, 16, 8, 9), np.int8), [dict(weight=w, bias=np.zeros(16, np.int32))])
    with pytest.raises(BadInputError, match="mode"):
        compile_group(cfg, [spec], mode="pipelined")
