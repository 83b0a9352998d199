"""Dependency tokens from on-chip address ranges (bctvm.lower.tokens)."""

from __future__ import annotations

from bctvm import isa
from bctvm.isa import MemType
from bctvm.lower.tokens import Emitted, insert_tokens, module_of


def _e(insn, reads=(), writes=()):
    return Emitted(insn, module_of(insn), tuple(reads), tuple(writes))


def _flags(i):
    return {k for k in ("pop_prev", "pop_next", "push_prev", "push_next") if getattr(i, k)}


def test_load_compute_store_handshakes_and_buffer_reuse():
    ld = isa.Load(memory_type=MemType.INP)
    gm = isa.Gemm()
    st = isa.Store()
    prog = [
        _e(ld, writes=[("inp", 0, 10)]),                            # 0
        _e(gm, reads=[("inp", 0, 10)], writes=[("acc", 0, 4)]),     # 1 RAW on 0
        _e(st, reads=[("acc", 0, 4)]),                              # 2 RAW on 1
        _e(ld, writes=[("inp", 0, 10)]),                            # 3 WAR on 1
        _e(gm, reads=[("inp", 0, 10)], writes=[("acc", 0, 4)]),     # 4 RAW on 3, WAR on 2
        _e(st, reads=[("acc", 0, 4)]),                              # 5 RAW on 4
        _e(isa.Finish()),                                           # 6 after 5
    ]
    out = insert_tokens(prog)
    assert [_flags(i) for i in out] == [
        {"push_next"},
        {"pop_prev", "push_next", "push_prev"},
        {"pop_prev", "push_prev"},
        {"pop_next", "push_next"},
        {"pop_prev", "pop_next", "push_next"},
        {"pop_prev", "push_prev"},
        {"pop_next"},
    ]


def test_independent_buffers_need_no_tokens_between_them():
    ld = isa.Load(memory_type=MemType.INP)
    gm = isa.Gemm()
    prog = [
        _e(ld, writes=[("inp", 0, 10)]),
        _e(gm, reads=[("inp", 0, 10)], writes=[("acc", 0, 4)]),
        _e(ld, writes=[("inp", 10, 20)]),   # other copy: no wait for the GEMM
        _e(gm, reads=[("inp", 10, 20)], writes=[("acc", 4, 8)]),
        _e(isa.Finish()),
    ]
    out = insert_tokens(prog)
    assert "pop_next" not in _flags(out[2])
    assert _flags(out[3]) == {"pop_prev"}
    # pushes and pops on the load->compute queue pair up one to one
    assert sum(i.push_next for i in out if isinstance(i, isa.Load)) == \
        sum(i.pop_prev for i in out if not isinstance(i, (isa.Load, isa.Store)))
