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
3. mode "fused": a conv joins the open segment when it is in the same plan group, on the
   same grid, and its data input is an output of the segment or the segment's input (a
   branch: it shares the resident input block; the reader with the widest padding goes
   first, `_order`).
4. A segment is cut after any layer whose output is also read outside the segment.
5. plan_segments gives every segment its GroupFit(s) (bctvm.lower.fit, the one fit rule:
   residual path, resolved knobs, footprint) and cuts a segment that does not fit in two.
   What it returns is what the compile builds and what `bctvm plan` prints; each segment
   says why it ends (`cut`, CUT_REASONS).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bctvm.errors import BadInputError, UnsupportedOpError

MODES = ("fused", "layerwise")
CUT_REASONS = {
    "end": "last VTA layer of its plan group",
    "layerwise": "layerwise mode (or a board without onchip_reuse): one layer per program",
    "branch": "the next layer does not read this output (a branch or residual input)",
    "grid": "the next layer runs on another block grid",
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
    a = Segment(seg.layers[:at], seg.plan_group, seg.grid)
    b = Segment(seg.layers[at:], seg.plan_group, plan.layers[seg.layers[at]].grid)
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
                       else "grid" if li.grid != cur.grid else None)
                if why is None:
                    cur.layers.append(name)
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
            todo.append(Segment(seg.layers[:cut], seg.plan_group, seg.grid, cut="escapes"))
    return [_resolve(s, plan) for s in out]


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


def plan_segments(plan, qnet, mode: str = "fused", batch: int = 1, cfg=None,
                  host_fallback: bool = False, fallbacks: dict | None = None,
                  progress: bool = False) -> list[Segment]:
    """The VTA programs the compile builds: segment_plan's chains, each given its GroupFit(s)
    by the one fit rule (bctvm.lower.fit); a chain that does not fit is cut after its longest
    first part that fits (`cut` = "fit"; near the middle when no first part fits) until every
    part fits. A single layer that cannot fit is a
    BufferFitError naming it, or with `host_fallback` left to the host (its reason recorded
    in `fallbacks`: layer -> message)."""
    from tqdm import tqdm

    from bctvm.lower.group import plan_fits
    from boards import load_board
    from schedules.knobs import BufferFitError

    cfg = cfg or load_board(plan.board)
    qlayers = {layer.name: layer for layer in qnet.layers}
    segs = segment_plan(plan, qnet, mode, batch, cfg)
    todo = segs[::-1]
    out: list[Segment] = []
    with tqdm(total=sum(len(s.layers) for s in segs), desc="fit", unit="layer",
              disable=not progress, leave=False) as bar:
        while todo:
            seg = todo.pop()
            specs = segment_specs([qlayers[n] for n in seg.layers], batch, seg.sources)
            try:
                seg.fits = seg.fits or plan_fits(cfg, specs, "fused" if len(specs) > 1
                                                 else mode, list(seg.residuals),
                                                 sources=list(seg.sources))
            except (BufferFitError, BadInputError) as err:
                if len(seg.layers) > 1:
                    why = "fit" if isinstance(err, BufferFitError) else "branch"
                    parts = _longest_fitting_prefix(cfg, seg, plan, qlayers, batch, mode)
                    if parts:
                        pass
                    elif cut_points(seg, plan):
                        parts = list(split_segment(seg, plan))
                    else:  # branches that only run together: one program per layer
                        parts = _singles(seg, plan)
                    for part in parts[:-1]:
                        part.cut = why
                    parts[-1].cut = seg.cut
                    todo += parts[::-1]
                    continue
                if not isinstance(err, BufferFitError):
                    raise
                msg = (f"group g{len(out)} (layer {seg.layers[0]}) does not fit board "
                       f"'{cfg.name}': {err}")
                if not host_fallback:
                    raise BufferFitError(msg + " (--host-fallback runs it on the host)") \
                        from None
                if fallbacks is not None:
                    fallbacks[seg.layers[0]] = str(err)
                bar.update(1)
                continue
            if mode == "fused" and len(seg.layers) > 1:
                parts = _less_traffic_split(cfg, seg, plan, qlayers, batch)
                if parts:
                    todo += parts[::-1]
                    continue
            if mode == "fused" and seg.fits[0].knobs.vthreads == 1 and cut_points(seg, plan):
                parts = _faster_split(cfg, seg, plan, qlayers, batch)
                if parts:
                    todo += parts[::-1]
                    continue
            out.append(seg)
            bar.update(len(seg.layers))
    return out


def _longest_fitting_prefix(cfg, seg: Segment, plan, qlayers: dict, batch: int,
                            mode: str) -> list | None:
    """[the longest valid first part that fits (its fits set), the rest], growing the first
    part cut by cut from the front until it stops fitting; None when no first part fits."""
    from bctvm.lower.group import plan_fits
    from schedules.knobs import BufferFitError

    best = None
    for k in cut_points(seg, plan):
        a, b = split_segment(seg, plan, k)
        specs = segment_specs([qlayers[n] for n in a.layers], batch, a.sources)
        try:
            a.fits = plan_fits(cfg, specs, "fused" if len(specs) > 1 else mode,
                               list(a.residuals), sources=list(a.sources))
        except (BufferFitError, BadInputError):
            break
        best = [a, b]
    return best


def _estimated_bytes(cfg, specs, fit, residuals) -> int:
    """DRAM bytes of one fitted program: every layer's input (the first layer's only, when
    fused), weights and bias tiles under its knobs (schedules.knobs.estimate_dram_bytes), its
    output, and residuals read from DRAM."""
    from schedules.knobs import estimate_dram_bytes

    k = fit.knobs
    total = 0
    for i, spec in enumerate(specs):
        lk = k.layer(i)
        total += estimate_dram_bytes(cfg, spec, lk.oc_chunk, lk.sub_rows or spec.out_block[0],
                                     lk.rows_outer is not False, bool(k.weights_resident),
                                     i == 0, k.bias_resident, bool(lk.inp_per_pass),
                                     bool(k.blocks_inside))
        if residuals[i] == "external":
            total += _map_bytes(cfg, spec)
    return total + _map_bytes(cfg, specs[-1])


def _map_bytes(cfg, spec) -> int:
    """Bytes of a layer's packed int8 output map."""
    oh, ow = spec.out_size
    return spec.batch * spec.co_tiles(cfg) * cfg.block_out * oh * ow


def _less_traffic_split(cfg, seg: Segment, plan, qlayers: dict, batch: int) -> list | None:
    """A fused segment whose weights stream over several blocks reads them once per block;
    one program per layer may read them once (blocks inside output-channel chunks) at the
    price of the inner maps through DRAM. Returns the split near the middle (to plan again,
    `cut` = "traffic") when all layers apart move fewer estimated bytes, else None."""
    from bctvm.lower.group import plan_fits
    from schedules.knobs import BufferFitError

    fit = seg.fits[0]
    specs = segment_specs([qlayers[n] for n in seg.layers], batch, seg.sources)
    blocks = specs[0].grid[0] * specs[0].grid[1] * (specs[0].batch // cfg.batch)
    if fit.knobs.weights_resident or blocks == 1:
        return None
    fused = _estimated_bytes(cfg, specs, fit, seg.residuals)
    apart = 0
    for spec, r in zip(specs, seg.residuals):
        res = None if r is None else "external"
        try:
            (f,) = plan_fits(cfg, [spec], "fused", [res])
        except (BufferFitError, BadInputError):
            return None
        apart += _estimated_bytes(cfg, [spec], f, [res])
    if apart >= fused:
        seg.note = f"kept fused: {fused:,} <= apart {apart:,} estimated bytes"
        return None
    parts = list(split_segment(seg, plan)) if cut_points(seg, plan) else _singles(seg, plan)
    for p in parts[:-1]:
        p.cut, p.note = "traffic", f"split: apart {apart:,} < fused {fused:,} estimated bytes"
    parts[-1].cut = seg.cut
    return parts


def _singles(seg: Segment, plan) -> list[Segment]:
    """One segment per layer (branches that only run together cannot be cut otherwise)."""
    return [_resolve(Segment([n], seg.plan_group, tuple(plan.layers[n].grid)), plan)
            for n in seg.layers]


def _probe_cycles(cfg, seg: Segment, qlayers: dict, batch: int) -> int:
    """Simulator cycles of a fitted segment's program (the cycle model does not depend on
    the data: weights of the model, zero input)."""
    from bctvm.lower.group import compile_group, run_group
    from schedules.from_quant import params_from_qconv

    if seg.compiled is not None:
        return seg.cycles
    qconvs = [qlayers[n] for n in seg.layers]
    specs = segment_specs(qconvs, batch, seg.sources)
    cg = compile_group(cfg, specs, mode="fused", residual_source=list(seg.residuals),
                       name="probe", fit=seg.fits, sources=list(seg.sources))
    seg.compiled = cg  # the compile reuses it (the same fit)
    seg.cycles = run_group(cg, cg.image(None, [params_from_qconv(q) for q in qconvs])).cycles
    return seg.cycles


def _faster_split(cfg, seg: Segment, plan, qlayers: dict, batch: int) -> list | None:
    """Fused never slower than apart: a segment that fits only with one virtual thread (no
    overlap of one block's loads with the previous block's compute) is weighed against its
    split near the middle, both measured on the simulator; returns the two parts (to plan
    again, `cut` = "cycles") when they are faster, else None (the measurement in `note`)."""
    from bctvm.lower.group import plan_fits
    from schedules.knobs import BufferFitError

    parts = list(split_segment(seg, plan))
    try:
        for p in parts:
            specs = segment_specs([qlayers[n] for n in p.layers], batch, p.sources)
            p.fits = plan_fits(cfg, specs, "fused", list(p.residuals), sources=list(p.sources))
    except (BufferFitError, BadInputError):
        return None
    whole = _probe_cycles(cfg, seg, qlayers, batch)
    apart = sum(_probe_cycles(cfg, p, qlayers, batch) for p in parts)
    if apart < whole:
        parts[0].cut, parts[-1].cut = "cycles", seg.cut
        parts[0].note = f"split: {apart:,} < fused {whole:,} cycles"
        return parts
    seg.note = f"kept fused: {whole:,} <= split {apart:,} cycles"
    return None


def host_layers(plan, segments: list[Segment]) -> list[str]:
    """Packed layers of the plan that no segment runs (they run on the host, llvm)."""
    on_vta = {n for s in segments for n in s.layers}
    return [n for g in plan.groups for n in g.layers if n not in on_vta]
