"""Static allocation of the on-chip buffers (inp, wgt, acc) of a lowered group.

Every `T.alloc_buffer` in "local.inp_buffer" / "local.wgt_buffer" / "local.acc_buffer" is an
allocation *site* with a fixed element address range. Sites are placed per statement list:
a site is live from the first to the last statement of the list that uses it (the padded
inputs of a fused group, all allocated at the block scope, overlap only while two layers
need them: the current layer's and the next one's, chunk by chunk); sites live
at the same time never overlap, statements nested inside a list are placed above the sites live
around them, and a site whose statement list runs more than once (inside a loop) gets
`vthreads` copies (weight-buffer sites: `weight_copies`, streamed weights only live in loops),
used round-robin from one run to the next (double buffering; the dependency tokens derived
from exact address ranges keep reuse safe). Sizes count buffer *elements*
(BATCH x BLOCK tiles), the units of VTA addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import tirx

from boards import BoardConfig
from schedules.intrinsics import ACC_SCOPE, INP_SCOPE, WGT_SCOPE
from schedules.knobs import BufferFitError

from .exprs import LoweringError

SCOPE_KIND = {INP_SCOPE: "inp", WGT_SCOPE: "wgt", ACC_SCOPE: "acc"}


def lanes_of(cfg: BoardConfig, kind: str) -> int:
    """Scalars per element of an on-chip buffer kind."""
    return {"inp": cfg.batch * cfg.block_in, "wgt": cfg.block_out * cfg.block_in,
            "acc": cfg.batch * cfg.block_out}[kind]


def depth_of(cfg: BoardConfig, kind: str) -> int:
    return {"inp": cfg.inp_depth, "wgt": cfg.wgt_depth, "acc": cfg.acc_depth}[kind]


@dataclass
class Site:
    name: str
    kind: str
    elems: int  # per copy
    slots: int
    base: int

    @property
    def end(self) -> int:
        return self.base + self.elems * self.slots


def buffer_refs(stmt) -> set:
    """Buffer vars a statement reads, writes or passes to a marker call."""
    refs = set()

    def on_load(v, visitor):
        refs.add(v.source)
        return visitor.default_visit(v)

    def on_store(v, visitor):
        refs.add(v.buffer)
        return visitor.default_visit(v)

    def on_call(v, visitor):
        if getattr(v.op, "name", "") == "tirx.buffer_data":
            refs.add(v.args[0])
        return visitor.default_visit(v)

    tvm_ffi.structural_visit(stmt, [(tvm.ir.TensorLoad, on_load), (tirx.BufferStore, on_store),
                                    (tvm.ir.Call, on_call)])
    return refs


class SramPlanner:
    """Assigns every on-chip allocation site an address range (see the module docstring)."""

    def __init__(self, cfg: BoardConfig, vthreads: int, layer_names: dict | None = None,
                 weight_copies: int | None = None):
        self.cfg = cfg
        self.vthreads = vthreads
        self.copies = {"inp": vthreads, "acc": vthreads, "wgt": weight_copies or vthreads}
        self.layer_names = layer_names or {}
        self.sites: dict = {}  # buffer var -> Site
        self.peak = {"inp": 0, "wgt": 0, "acc": 0}

    def place(self, body) -> dict:
        """Place every site of `body` without checking the depths; the peak elements per
        buffer kind (bctvm.lower.fit measures groups with this)."""
        self._plan(body, {"inp": 0, "wgt": 0, "acc": 0}, 1)
        return dict(self.peak)

    def plan(self, body) -> dict:
        """Place every site; BufferFitError when a buffer kind overflows its depth."""
        self.place(body)
        for kind, need in self.peak.items():
            depth = depth_of(self.cfg, kind)
            if need > depth:
                users = sorted({self._layer(s.name) for s in self.sites.values() if s.kind == kind})
                detail = ", ".join(f"{s.name} {s.elems}x{s.slots}" for s in self.sites.values()
                                   if s.kind == kind)
                raise BufferFitError(
                    f"layer(s) {', '.join(users)}: {kind} buffer needs {need} elements, board "
                    f"'{self.cfg.name}' has {depth} ({detail})")
        return self.sites

    def _layer(self, buf_name: str) -> str:
        tag = buf_name.split("_", 1)[0]
        return self.layer_names.get(tag, tag)

    def _plan(self, stmt, base: dict, visits: int) -> None:
        if isinstance(stmt, tirx.For):
            self._plan(stmt.body, base, visits * int(stmt.extent))
        elif isinstance(stmt, tirx.SeqStmt):
            self._plan_seq(list(stmt.seq), base, visits)
        elif isinstance(stmt, tirx.AttrStmt):
            self._plan(stmt.body, base, visits)
        elif isinstance(stmt, tirx.AllocBuffer):
            self._plan_seq([stmt], base, visits)

    def _plan_seq(self, items: list, base: dict, visits: int) -> None:
        uses = [buffer_refs(c) for c in items]
        placed: list[tuple[Site, int, int]] = []  # (site, first, last statement)
        for pos, st in enumerate(items):
            if not isinstance(st, tirx.AllocBuffer):
                continue
            buf = st.buffer
            kind = SCOPE_KIND.get(buf.scope())
            if kind is None:
                raise LoweringError(f"buffer '{buf.name}' in unsupported scope '{buf.scope()}'")
            n = 1
            for d in buf.shape:
                n *= int(d)
            lanes = lanes_of(self.cfg, kind)
            if n % lanes:
                raise LoweringError(f"buffer '{buf.name}' of {n} scalars is not whole "
                                    f"{lanes}-lane elements")
            used = [j for j in range(pos, len(items)) if buf in uses[j]]
            first, last = (used[0], used[-1]) if used else (pos, pos)
            slots = self.copies[kind] if visits > 1 else 1
            size = n // lanes * slots
            clash = [s for s, a, b in placed if s.kind == kind and not (b < first or a > last)]
            addr = base[kind]
            for s in sorted(clash, key=lambda s: s.base):
                if addr + size <= s.base:
                    break
                addr = max(addr, s.end)
            site = Site(buf.name, kind, n // lanes, slots, addr)
            self.sites[buf] = site
            placed.append((site, first, last))
            self.peak[kind] = max(self.peak[kind], site.end)
        for j, st in enumerate(items):
            if isinstance(st, (tirx.AllocBuffer, tirx.DeclBuffer)):
                continue
            child = dict(base)
            for s, a, b in placed:
                if a <= j <= b:
                    child[s.kind] = max(child[s.kind], s.end)
            self._plan(st, child, visits)
