"""Partition: one vta_group_<i> function per planned group, host ops stay in main, and the
module still equals the integer reference bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from bctvm.quant import IntegerReference
from relay_passes import ops
from relay_passes.pack_layout import PackLayout
from relay_passes.partition import Partition, vta_groups
from relay_passes.plan_fused_groups import PlanFusedGroups, plan_of
from relay_passes.vm_run import run_module, with_boundary_output

from .conftest import ops_in


@pytest.mark.parametrize("board", ["pynq", "zcu102"])
def test_groups_become_functions_and_stay_bit_exact(quantized, board):
    _, qnet, x, _, qmod = quantized
    planned = PlanFusedGroups(board)(PackLayout(board)(qmod))
    plan = plan_of(planned)
    part = Partition()(planned)
    groups = vta_groups(part)
    assert [name for name, _ in groups] == [f"vta_group_{g.index}" for g in plan.groups]
    for (name, func), g in zip(groups, plan.groups):
        assert list(func.attrs["bctvm.layers"]) == g.layers
        assert tuple(func.attrs["bctvm.grid"]) == g.grid
        assert len(func.params) == len(g.inputs)
        assert [str(ops.attrs_dict(v)["layer"]) for v in _calls(func)] == g.layers
    main_ops = ops_in(part)
    vta_in_main = [n for n in main_ops if n in ops.VTA_OPS]
    assert vta_in_main == [ops.QBLOCK_CONV2D, ops.QMAX_POOL2D]  # the host stem and its pool
    assert main_ops.count("") == len(plan.groups)  # one call per group
    assert plan_of(part).to_dict() == plan.to_dict()  # the plan travels with the module
    run = IntegerReference(qnet).run(x.numpy())
    out = run_module(with_boundary_output(part), x.numpy())
    np.testing.assert_array_equal(out[-1], run.boundary)
    np.testing.assert_allclose(out[0], run.output, rtol=1e-5, atol=1e-5)


def _calls(func):
    from relay_passes.graph import bindings

    return [v for _, v in bindings(func) if ops.op_name(v) in ops.VTA_OPS]
