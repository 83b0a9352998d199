"""PackLayout: packed VTA ops on each board, host stem policy, still bit-exact per layer."""

from __future__ import annotations

import numpy as np
import pytest

from bctvm.errors import BadInputError
from bctvm.quant import IntegerReference
from boards import load_board
from relay_passes import ops
from relay_passes.pack_layout import PackLayout
from relay_passes.vm_run import run_module, with_layer_outputs

from .conftest import calls_of, ops_in


@pytest.mark.parametrize("board,stem", [("pynq", "auto"), ("zcu102", "vta")])
def test_packed_module_is_bit_exact_per_layer(quantized, board, stem):
    _, qnet, x, _, qmod = quantized
    cfg = load_board(board)
    p = PackLayout(board, stem=stem)
    pmod = p(qmod)
    layout = f"NCHW{cfg.batch}n{cfg.block_in}c"
    convs = calls_of(pmod, ops.QBLOCK_CONV2D)
    host = ["stem", "pool"] if stem == "auto" else []  # 3 of 16 lanes: the stem stays home
    assert p.host_layers == host
    for c in convs:
        a = ops.attrs_dict(c)
        if a["layer"] in host:
            assert a["layout"] == "NCHW"
            continue
        assert a["layout"] == layout
        wshape = ops.static_shape(c.args[1])
        assert wshape[4:] == (cfg.block_out, cfg.block_in)
        assert ops.static_shape(c.args[0])[4:] == (cfg.batch, cfg.block_in)
        assert ops.static_shape(c.args[2]) == (wshape[0] * cfg.block_out,)
    names = ops_in(pmod)
    assert names.count(ops.PACK) == 1 and names.count(ops.UNPACK) == 1
    run = IntegerReference(qnet).run(x.numpy())
    mod, layers = with_layer_outputs(pmod)
    outs = run_module(mod, x.numpy())
    for name, got in zip(layers, outs[1:]):
        np.testing.assert_array_equal(got, run.tensors[qnet.layer(name).output],
                                      err_msg=f"layer {name} on {board}")


def test_unknown_stem_policy_is_bad_input():
    with pytest.raises(BadInputError, match="stem policy 'gpu'"):
        PackLayout("pynq", stem="gpu")
