"""The TIR passes of the bctvm pipeline: in-place epilogues, kernel tagging, emitted program."""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

from boards import load_board
from bctvm import isa
from bctvm.isa import AluOp, MemType
from bctvm.lower import build_program, lower_to_kernels
from bctvm.lower.inplace import InplaceEpilogue
from bctvm.lower.kernels import KERNEL_ATTR
from schedules import LayerKnobs, LayerSpec, ScheduleKnobs, layer_compute, scheduled_module

PYNQ = load_board("pynq")
POOL = LayerSpec("p", 16, 32, 8, 8, (4, 4), pool=True, shift=10, sign=True, residual_shift=3)


def _mod(spec=POOL, cfg=PYNQ, knobs=None):
    return scheduled_module(layer_compute(cfg, spec), knobs)[0]


def _kinds(mod):
    kinds = []

    def cb(v, visitor):
        if v.attr_key == KERNEL_ATTR:
            kinds.append(str(v.value.value))
        return visitor.default_visit(v)

    tvm_ffi.structural_visit(mod["main"].body, [(tirx.AttrStmt, cb)])
    return kinds


def test_inplace_epilogue_removes_the_intermediate_accumulator_buffers():
    mod = _mod()
    before = mod.script()
    after = InplaceEpilogue(mod).script()
    for name in ("l0_biased_local", "l0_epi_local", "l0_resalign_local"):
        assert name in before and name not in after
    assert "l0_conv_local" in after and "l0_res32_local" in after
    # the pooled epilogue writes phase 0 of the phase-major conv buffer
    assert "l0_conv_local_acc_buffer[v_n, v_bi, v_bj, 0, 0," in after


def test_tag_kernels_finds_every_vta_operation():
    kinds = _kinds(lower_to_kernels(_mod()))
    assert set(kinds) == {"load_wgt", "load_inp", "load_acc", "load_acc8", "reset", "gemm",
                          "alu", "store"}


def test_fused_chain_tags_an_on_chip_reload():
    cfg = load_board("zcu102")
    from schedules import group_compute
    a = LayerSpec("a", 32, 32, 8, 8, (4, 4), shift=10)
    b = LayerSpec("b", 32, 32, 8, 8, (4, 4), shift=10)
    mod = scheduled_module(group_compute(cfg, [a, b]))[0]
    kinds = _kinds(lower_to_kernels(mod))
    assert "load_out_inp" in kinds and kinds.count("store") == 1


def test_emitted_program_shape():
    spec = LayerSpec("c", 16, 16, 8, 8, (4, 4), shift=9)
    prog = build_program(PYNQ, _mod(spec, knobs=ScheduleKnobs((LayerKnobs(1, 4),), 1, True)))
    insns = prog.instructions
    loads = [i for i in insns if isinstance(i, isa.Load) and i.memory_type == MemType.INP]
    assert len(loads) == 4  # one zero-padded 2-D load per block
    assert all((i.y_pad_0, i.y_pad_1, i.x_pad_0, i.x_pad_1) == (1, 1, 1, 1) for i in loads)
    assert all((i.y_size, i.x_size, i.x_stride) == (4, 4, 8) for i in loads)
    gemms = [i for i in insns if isinstance(i, isa.Gemm) and not i.reset_reg]
    assert all((g.iter_out, g.iter_in, g.uop_end - g.uop_bgn) == (4, 4, 9) for g in gemms)
    alus = [(i.alu_opcode, i.use_imm) for i in insns if isinstance(i, isa.Alu)]
    # bias tile, then the requant shift (its rounding constant is in the bias data), clip
    assert alus[:4] == [(AluOp.ADD, False), (AluOp.SHR, True), (AluOp.MIN, True),
                        (AluOp.MAX, True)]
    assert (AluOp.ADD, True) not in alus
    assert isinstance(insns[-1], isa.Finish) and insns[-1].pop_next
    assert len(isa.encode_program(insns, PYNQ)) == 16 * len(insns)
    assert prog.layout.regions[prog.uop_region].kind == "uops"


def test_tvm_compile_with_the_bctvm_pipeline_runs_on_the_simulator():
    """tvm.compile(..., tir_pipeline="bctvm"): the host function runs the ahead-of-time
    program (registered by bctvm.lower.pipeline) on the simulator."""
    import numpy as np

    from blockconv_int_ref import random_layer_data, ref_spec
    from schedules.layout import pack_activation, pack_bias, pack_weight, unpack_activation

    spec = LayerSpec("tc", 16, 32, 8, 8, (4, 4), shift=10, relu=True)
    lib = tvm.compile(_mod(spec), target="llvm", tir_pipeline="bctvm")
    x, w, b, _, _ = random_layer_data(spec)
    args = [pack_activation(x, PYNQ), pack_weight(w, PYNQ), pack_bias(b, spec, PYNQ),
            np.zeros((1, 2, 8, 8, 1, 16), "int8")]
    targs = [tvm.runtime.tensor(a) for a in args]
    lib["main"](*targs)
    assert np.array_equal(unpack_activation(targs[-1].numpy(), 32), ref_spec(x, w, b, spec))
