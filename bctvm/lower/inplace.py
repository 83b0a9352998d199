"""bctvm.InplaceEpilogue: compute element-wise accumulator stages in place (s_tir level).

Matches: an s_tir block `dst[i] = spine(A[j], operands...)` (bctvm.lower.alu) where dst and
the spine leaf A are both in "local.acc_buffer", A has no other consumer, and every index of A
is either one of dst's indices (same order) or a constant (e.g. the pool phase 0 of a
phase-major conv buffer).
Produces: the same function with `dst` replaced everywhere by A (its accesses rewritten through
that index map, its allocation dropped), so the stage reads and writes A at the same element:
exactly what the VTA ALU does (`acc[dst] = op(acc[dst], src)`).
Requires: a scheduled function before buffer compaction (buffers still have logical shapes).
A stage that does not match is left unchanged (lowering then reports it).
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from schedules.intrinsics import ACC_SCOPE

from .alu import spine
from .exprs import LoweringError


def _is_acc(buf) -> bool:
    try:
        return buf.scope() == ACC_SCOPE
    except Exception:  # noqa: BLE001 - not a buffer var
        return False


def _blocks(stmt) -> list:
    found = []

    def cb(v, visitor):
        found.append(v)
        return visitor.default_visit(v)

    tvm_ffi.structural_visit(stmt, [(s_tir.SBlock, cb)])
    return found


def _loads(e) -> list:
    found = []

    def cb(v, visitor):
        found.append(v)
        return visitor.default_visit(v)

    tvm_ffi.structural_visit(e, [(tvm.ir.TensorLoad, cb)])
    return found


def _index_map(store_idx, leaf_idx, old_shape, new_shape):
    """For each new-buffer dim: ('var', k) -> old dim k, or ('const', c). None if not a map."""
    spec, used = [], []
    for j, e in enumerate(leaf_idx):
        if isinstance(e, tirx.IntImm):
            spec.append(("const", int(e.value)))
            continue
        ks = [k for k, s in enumerate(store_idx) if s.same_as(e)]
        if len(ks) != 1 or int(old_shape[ks[0]]) != int(new_shape[j]):
            return None
        spec.append(("var", ks[0]))
        used.append(ks[0])
    if sorted(used) != list(range(len(store_idx))) or used != sorted(used):
        return None
    return spec


def _apply(spec, idx):
    return [idx[a] if kind == "var" else tirx.IntImm("int32", a) for kind, a in spec]


def _apply_ranges(spec, ranges):
    return [ranges[a] if kind == "var" else tvm.ir.Range.from_min_extent(a, 1) for kind, a in spec]


def _substitute(body, old, new, spec):
    def on_load(v, m):
        if v.source.same_as(old):
            return tirx.BufferLoad(new, _apply(spec, [m.mutate(i) for i in v.indices]))
        return m.default_mutate(v)

    def on_store(v, m):
        if v.buffer.same_as(old):
            return tirx.BufferStore(new, m.mutate(v.value), _apply(spec, [m.mutate(i) for i in v.indices]))
        return m.default_mutate(v)

    def on_region(v, m):
        if v.source.same_as(old):
            return tirx.BufferRegion(new, _apply_ranges(spec, list(v.region)))
        return m.default_mutate(v)

    def on_block(v, m):
        r = m.default_mutate(v)
        if any(b.same_as(old) for b in r.alloc_buffers):
            r = s_tir.SBlock(r.iter_vars, r.reads, r.writes, r.name_hint, r.body, r.init,
                             [b for b in r.alloc_buffers if not b.same_as(old)], r.match_buffers,
                             r.annotations)
        return r

    return tvm_ffi.structural_mutate(body, [
        (tvm.ir.TensorLoad, on_load), (tirx.BufferStore, on_store),
        (tvm.ir.TensorRegion, on_region), (s_tir.SBlock, on_block)])


def _candidate(blocks):
    """(dst buffer, leaf buffer, index spec) of one stage that can run in place, or None."""
    consumers: dict = {}
    for b in blocks:
        writes = [w.source for w in b.writes]
        for r in b.reads:
            if not any(r.source.same_as(w) for w in writes):
                consumers.setdefault(r.source, []).append(b)
    for b in blocks:
        st = b.body
        if not isinstance(st, tirx.BufferStore) or not _is_acc(st.buffer):
            continue
        try:
            leaf, _ = spine(st.value, lambda ld: _is_acc(ld.source))
        except LoweringError:
            continue
        a = leaf.source
        if a.same_as(st.buffer) or len(consumers.get(a, [])) != 1:
            continue
        spec = _index_map(list(st.indices), list(leaf.indices), st.buffer.shape, a.shape)
        if spec is None:
            continue
        consts = [j for j, (k, _) in enumerate(spec) if k == "const"]
        others = [ld for ld in _loads(st.value) if ld.source.same_as(a) and not ld.same_as(leaf)]
        safe = all(any(isinstance(ld.indices[j], tirx.IntImm)
                       and int(ld.indices[j].value) != spec[j][1] for j in consts)
                   for ld in others)
        if safe:
            return st.buffer, a, spec
    return None


@tirx.transform.prim_func_pass(opt_level=0, name="bctvm.InplaceEpilogue")
def InplaceEpilogue(func, mod, ctx):  # noqa: N802 - TVM pass naming
    """Rewrite element-wise accumulator stages to run in place (see the module docstring)."""
    body = func.body
    while True:
        found = _candidate(_blocks(body))
        if found is None:
            break
        body = _substitute(body, *found)
    return func.with_body(body)
