"""Split the fused-group plan into VTA programs the schedules can compile.

A plan group (relay_passes.PlanFusedGroups) is any set of layers that share a block grid and
fit the planning model. One VTA program (bctvm.lower.compile_group) runs a *segment*: a chain
of stride-1 block convs where each layer reads the previous one's output, whose only output
leaving the segment is the last layer's, and whose residuals come from the segment input, an
earlier layer of the segment, or DRAM ("external", a tensor computed before the segment).

    segs = segment_plan(plan, qnet, mode)          # [Segment] in graph order
    host = host_layers(plan, segs)                  # VTA-side layers that run on the host

Rules, in order:
1. Only convs (QConv, stride 1, accepted by LayerSpec.validate) run on VTA; a standalone
   max-pool / add / relu of the plan stays on the host (its packed TE definition is compiled
   for llvm), and so do a strided plain nn.Conv2d and a stride-2 block conv whose per-block
   output has an odd side. Each such layer closes the current segment.
2. mode "layerwise", or a board without onchip_reuse: one layer per segment.
3. mode "fused": a conv joins the open segment when it is in the same plan group, its data
   input is an output of the segment or the segment's input (a branch: it shares the
   resident input block; the reader with the widest padding goes first, `_order`), and its
   blocks continue that input's: the same grid, or grids that nest (schedules/grid_nest.py:
   several output blocks of a layer collected into one block of the next, "coarsen"; one
   output block covering several blocks of the next, "refine", once per program, on its
   last layers' grid). A
   residual from a layer of the segment on another grid is read from DRAM: a branch whose
   output only feeds such residuals (a ResNet downsample beside a stride-2 conv1) becomes a
   program of its own and the chain goes on without it (programs in dependency order).
   `grid_changes` lists where a segment's grid changes.
4. A segment is cut after any layer whose output is also read outside the segment.
5. bctvm.compiler.plan.plan_segments gives every segment its GroupFit(s) (bctvm.lower.fit,
   the one fit rule: residual path, resolved knobs, footprint) and cuts segments that do not
   fit or cost traffic or cycles fused. What it returns is what the compile builds and what
   `bctvm plan` prints; each segment says why it ends (`cut`, CUT_REASONS).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bctvm.errors import BadInputError, UnsupportedOpError

MODES = ("fused", "layerwise")
NESTED_KINDS = ("coarsen", "refine")  # grid changes a program runs on chip (schedules/grid_nest.py)
CUT_REASONS = {
    "end": "last VTA layer of its plan group",
    "layerwise": "layerwise mode (or a board without onchip_reuse): one layer per program",
    "branch": "the next layer does not read this output (a branch or residual input)",
    "grid": "the next layer runs on a block grid that does not nest with this one",
    "host": "the next layer runs on the host",
    "escapes": "this output is also read outside the segment",
    "fit": "the two parts do not fit the board's buffers together (bctvm.lower.fit)",
    "cycles": "fused, the two parts take more cycles than apart (measured, `note`)",
    "traffic": "fused, the weights would be read once per block: apart (chunks outside the "
               "blocks) moves fewer DRAM bytes (estimated, `note`)",
}


@dataclass
class Segment:
    """One VTA program: a chain of conv layers (plan/qnet layer names) and its tensors."""

    layers: list[str]
    plan_group: int  # index of the plan group it came from
    grid: tuple[int, int]
    data: str = ""  # plan tensor name of the first layer's input
    residuals: list = field(default_factory=list)  # per layer: None|"input"|int|"external"
    external: list[str] = field(default_factory=list)  # tensor per "external" residual, in order
    sources: list = field(default_factory=list)  # per layer: "input" or source layer index
    cut: str = "end"  # why the segment ends after its last layer (CUT_REASONS)
    note: str = ""  # the cycles measured when fusing was weighed against a split
    compiled: object = field(default=None, repr=False, compare=False)  # CompiledGroup probed
    cycles: int = 0  # simulator cycles of `compiled`
    fits: list = field(default_factory=list)  # GroupFit per program (plan_segments)

    @property
    def output(self) -> str:
        """Plan tensor name of the segment's output (the last layer's)."""
        return self.layers[-1]

    @property
    def inputs(self) -> list[str]:
        """Plan tensors the program reads from DRAM: the data input, then external residuals."""
        seen = [self.data]
        for t in self.external:
            if t not in seen:
                seen.append(t)
        return seen


def _conv_on_vta(qlayer, cfg, batch: int) -> bool:
    """A QConv VTA can run: stride 1 and a LayerSpec the board accepts (a pool over a block
    with an odd side, e.g., runs on the host, where the pool may cross blocks)."""
    from schedules.from_quant import spec_from_qconv

    if getattr(qlayer, "kind", "") != "conv":
        return False
    try:
        spec_from_qconv(qlayer, batch=batch).validate(cfg)
    except UnsupportedOpError:
        return False
    return True


def _order(seg: Segment, plan) -> None:
    """Among the layers reading one block (the segment input or a layer's output), put the
    one with the widest padding first where the order allows (its residual made before): the
    others (branches) share its padded copy (schedules.block_conv2d)."""
    layers = seg.layers
    for t in dict.fromkeys(plan.layers[n].inputs[0] for n in list(layers)):
        readers = [n for n in layers if plan.layers[n].inputs[0] == t]
        widest = max(readers, key=lambda n: (sum(plan.layers[n].padding), -layers.index(n)))
        at = layers.index(readers[0])
        res = plan.layers[widest].inputs[-1] if plan.layers[widest].residual else None
        if widest == readers[0] or (res in layers and layers.index(res) >= at):
            continue
        layers.remove(widest)
        layers.insert(at, widest)


def _resolve(seg: Segment, plan) -> Segment:
    """Fill data, per-layer data and residual sources and external tensors from the plan's
    tensors."""
    _order(seg, plan)
    info = [plan.layers[n] for n in seg.layers]
    seg.data = info[0].inputs[0]
    seg.sources = ["input" if li.inputs[0] == seg.data else seg.layers.index(li.inputs[0])
                   for li in info]
    seg.residuals, seg.external = [], []
    for j, li in enumerate(info):
        if not li.residual:
            seg.residuals.append(None)
            continue
        r = li.inputs[-1]
        if r == seg.data:
            seg.residuals.append("input")
        elif r in seg.layers[:j]:
            seg.residuals.append(seg.layers.index(r))
        else:
            seg.residuals.append("external")
            seg.external.append(r)
    return seg


def _escapes(plan, layer: str, inside: list[str]) -> bool:
    """True when `layer`'s output is read by anything outside `inside` (or by the host)."""
    t = plan.tensors[layer]
    return t.host_use or any(c not in inside for c in t.consumers)


def cut_points(seg: Segment, plan) -> list[int]:
    """Indices k (0 < k < len) where the segment can be cut in two: no output of layers
    [0, k-1) is read outside layers [.., k) (the first part's only output is layer k-1's),
    and every layer of the second part reads its first layer's input or a layer of it."""
    def second_ok(k):
        part = seg.layers[k:]
        data = plan.layers[part[0]].inputs[0]
        return all(plan.layers[n].inputs[0] in part or plan.layers[n].inputs[0] == data
                   for n in part[1:])

    return [k for k in range(1, len(seg.layers)) if second_ok(k) and
            not any(_escapes(plan, seg.layers[i], seg.layers[i + 1:k]) for i in range(k - 1))]


def split_segment(seg: Segment, plan, at: int | None = None) -> tuple[Segment, Segment]:
    """The segment cut before layer index `at` (default: the valid cut nearest the middle);
    residual sources re-resolved."""
    if at is None:
        cuts = cut_points(seg, plan)
        at = min(cuts, key=lambda k: (abs(2 * k - len(seg.layers)), k))
    a = Segment(seg.layers[:at], seg.plan_group, _grid(plan, seg.layers[:at]))
    b = Segment(seg.layers[at:], seg.plan_group, _grid(plan, seg.layers[at:]))
    return _resolve(a, plan), _resolve(b, plan)


def segment_plan(plan, qnet, mode: str = "fused", batch: int = 1, cfg=None) -> list[Segment]:
    """Segments of every plan group, in graph order (see the module docstring); `cfg` is the
    plan's board (loaded by name when None)."""
    from boards import load_board

    if mode not in MODES:
        raise BadInputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    cfg = cfg or load_board(plan.board)
    qlayers = {layer.name: layer for layer in qnet.layers}
    fuse = mode == "fused" and plan.onchip_reuse
    chains: list[Segment] = []
    for g in plan.groups:
        cur: Segment | None = None
        for name in sorted(g.layers, key=lambda n: plan.layers[n].position):
            q = qlayers.get(name)
            if q is None or not _conv_on_vta(q, cfg, batch):
                if cur is not None:
                    cur.cut = "host"
                cur = None
                continue
            li = plan.layers[name]
            if cur is not None:
                reads = cur.layers + [plan.layers[cur.layers[0]].inputs[0]]  # or a branch
                why = ("layerwise" if not fuse else "branch" if li.inputs[0] not in reads
                       else None if _nests(plan, cur, li) else "grid")
                if why is None and _residual_branch(plan, cur, li):
                    chains.append(Segment([name], g.index, tuple(li.grid), cut="branch"))
                    continue
                if why is None:
                    cur.layers.append(name)
                    cur.grid = tuple(li.grid)
                    continue
                cur.cut = why
            cur = Segment([name], g.index, tuple(li.grid))
            chains.append(cur)
    if not fuse:
        for seg in chains:
            seg.cut = "layerwise"
    out: list[Segment] = []
    todo = chains[::-1]
    while todo:  # cut until no segment has an inner output read outside it
        seg = todo.pop()
        cut = next((i + 1 for i in range(len(seg.layers) - 1)
                    if _escapes(plan, seg.layers[i], seg.layers[i + 1:])), None)
        if cut is None:
            out.append(seg)
        else:
            todo.append(Segment(seg.layers[cut:], seg.plan_group, seg.grid, cut=seg.cut))
            todo.append(Segment(seg.layers[:cut], seg.plan_group,
                                _grid(plan, seg.layers[:cut]), cut="escapes"))
    return _dependency_order([_resolve(s, plan) for s in out])


def _grid(plan, layers) -> tuple:
    """The block grid a segment's program loops over: its last layer's."""
    return tuple(plan.layers[layers[-1]].grid)


def _handover(plan, cur: Segment, li):
    """(producer out block, consumer in block) of layer `li`'s data input: a layer of `cur`
    or `cur`'s input (read on the first layer's blocks)."""
    src = li.inputs[0]
    if src in cur.layers:
        return plan.layers[src].out_block, li.block
    return plan.layers[cur.layers[0]].block, li.block


def _nests(plan, cur: Segment, li) -> bool:
    """Whether `li`'s blocks continue its data input's in `cur` (same grid or nested)."""
    from schedules.grid_nest import nesting

    n = nesting(*_handover(plan, cur, li))
    if n is None:
        return False
    if any(c["kind"] == "refine" for c in _changes(plan, cur.layers)) and \
            tuple(li.grid) != tuple(cur.grid):
        return False  # a program refines once, on its last layers' grid (block_conv2d)
    if n.kind == "refine" and any(plan.layers[x].inputs[0] == li.inputs[0]
                                  for x in cur.layers):
        return False  # a branch beside it reads the coarse block: no refining hand-over
    res = li.inputs[-1] if li.residual else None
    if res in cur.layers and tuple(plan.layers[res].out_block) != tuple(li.out_block):
        return False  # a residual on chip comes from the same grid
    return n.kind == "same" or (n.kind in NESTED_KINDS and li.inputs[0] in cur.layers)


def _residual_branch(plan, cur: Segment, li) -> bool:
    """A layer whose output is read only as the residual of layers on another grid (a
    branch: a ResNet downsample beside a stride-2 conv1): it cannot share a program with
    them."""
    t = plan.tensors[li.output]
    if t.host_use or not t.consumers:
        return False
    for c in t.consumers:
        cl = plan.layers.get(c)
        if cl is None or not cl.residual or cl.inputs[-1] != li.output or \
                cl.inputs[0] == li.output or tuple(cl.grid) == tuple(li.grid):
            return False
    return True


def _dependency_order(segs: list[Segment]) -> list[Segment]:
    """`segs` in order, except that a segment moves after the segments making its inputs
    (a deferred branch, `_residual_branch`, runs before the chain reading its output)."""
    made = {s.output: s for s in segs}
    out: list[Segment] = []
    done: set = set()

    def visit(s, stack=()):
        if id(s) in done:
            return
        for t in s.inputs:
            p = made.get(t)
            if p is not None and p is not s and id(p) not in stack:
                visit(p, stack + (id(s),))
        done.add(id(s))
        out.append(s)

    for s in segs:
        visit(s)
    return out


def grid_changes(seg: Segment, plan) -> list[dict]:
    """Where a segment's block grid changes: one dict per data hand-over between layers on
    different grids: after (producer), before (consumer), kind ("coarsen" | "refine"),
    from / to (grids)."""
    return _changes(plan, seg.layers)


def _changes(plan, layers: list) -> list[dict]:
    """grid_changes of the data hand-overs between `layers`."""
    from schedules.grid_nest import nesting

    out = []
    for name in layers:
        b = plan.layers[name]
        if b.inputs[0] not in layers:
            continue
        a = plan.layers[b.inputs[0]]
        n = nesting(a.out_block, b.block)
        if n is not None and n.kind != "same":
            out.append({"after": a.name, "before": b.name, "kind": n.kind,
                        "from": list(a.grid), "to": list(b.grid)})
    return out


def segment_specs(qconvs: list, batch: int, sources=None) -> list:
    """LayerSpecs of a segment's convs (`sources`: each one's data input, "input" or a layer
    index; default a chain). A 1x1 conv without padding computes the same on any block grid,
    so inside a segment it takes its input's blocks (MobileNet's pointwise convs after a
    blocked depthwise conv, a ResNet downsample beside conv1)."""
    from schedules.from_quant import spec_from_qconv

    sources = sources or ["input"] + list(range(len(qconvs) - 1))
    specs = []
    for q, src in zip(qconvs, sources):
        spec = spec_from_qconv(q, batch=batch)
        if specs and spec.kernel == (1, 1) and not any(spec.padding):
            block = specs[0].block if src == "input" else specs[src].out_block
            if spec.block != block:
                spec = dataclasses.replace(spec, block=block)
        specs.append(spec)
    return specs


def singles(seg: Segment, plan) -> list[Segment]:
    """One segment per layer (branches that only run together cannot be cut otherwise)."""
    return [_resolve(Segment([n], seg.plan_group, tuple(plan.layers[n].grid)), plan)
            for n in seg.layers]


def host_layers(plan, segments: list[Segment]) -> list[str]:
    """Packed layers of the plan that no segment runs (they run on the host, llvm)."""
    on_vta = {n for s in segments for n in s.layers}
    return [n for g in plan.groups for n in g.layers if n not in on_vta]
