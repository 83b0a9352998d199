"""Schedule knobs of a block-conv group, their defaults, and the scratchpad fit check.

Knobs (what a tuner may change; the defaults are chosen here to fit the board):
- per layer `oc_chunk`: output-channel tiles computed together in the accumulator;
- per layer `ci_chunk`: input-channel tiles (of the layer's packed group) per GEMM pass; the
  reduction over input channels runs as passes that accumulate into the same accumulator
  tile (GEMM reset before the first only), each pass loading only its own weights
  (oc_chunk x ci_chunk x kh x kw elements), so that two copies fit the weight buffer and the
  next pass's weight load overlaps the current pass's GEMM. Default: all tiles (one pass);
  a pass loop lives inside the row sub-tile loop, so it needs `rows_outer` (weights re-read
  per sub-tile, as with rows outside chunks);
- per layer `inp_per_pass`: load the padded input per GEMM pass (only that pass's ci_chunk
  input tiles, inside the pass loop) instead of all input tiles before the chunk loop; the
  input buffer then holds ci_chunk tiles of the (sub-tile) rows, but the input is read from
  DRAM once per output-channel chunk. Only for a one-layer group of an ungrouped conv (the
  last layer of a group loads its input from DRAM; inner layers receive it on chip); chosen
  by resolve_knobs only when nothing fits otherwise;
- per layer `sub_rows`: output rows (after the pool) per row sub-tile of the *last* layer of a
  group (its input block is then loaded per sub-tile, with the kernel halo);
- `rows_outer`: with sub-tiles, loop rows outside output-channel chunks (input loaded once per
  sub-tile) or inside (weights chunk reused across sub-tiles);
- `vthreads`: copies (1 or 2) of every per-block on-chip buffer, rotated from block to block so
  that loads, compute and stores of neighbouring blocks overlap (double buffering); a buffer
  allocated in a loop that runs once (a block of a 1x1 grid, one chunk) has one copy;
- `weight_copies`: copies (1 or 2) of the streamed weights (per chunk or GEMM pass),
  independently of `vthreads` (None: as `vthreads`): with one virtual thread (per-block
  buffers too large for two copies) two weight copies still let the next chunk's weight load
  overlap this chunk's GEMM. Default: 2 when the weight buffer holds two copies;
- `weights_resident`: keep all weights of the group in the weight buffer for the whole run
  (loaded once) instead of per chunk (or GEMM pass) and block;
- `resident_layers`: with `weights_resident` False, layers whose weights still stay resident
  (loaded once); default (`resolve_knobs`, `resident_choice`): the layers that run on the
  most blocks (the fine layers of a coarsening group run once per fine block) within half
  the weight buffer, when that saves traffic without losing a virtual thread;
- `refine_rows`: in a refining group (schedules/grid_nest.py), compute the coarse layer once
  per row of the next layer's blocks (those output rows, all columns, in the accumulator;
  its input rows loaded with their halo) instead of once per coarse block (the whole coarse
  output in the accumulator); bctvm.lower.fit tries whole blocks first;
- `bias_resident`: keep all bias/sign tiles of the group in the accumulator for the whole run
  (loaded once), independently of the weights. Streamed, they are accumulator LOADs, which VTA
  issues from the compute module: per chunk, behind the streamed weight transfers on the one
  DRAM port, the compute module waits for them. Default: resident when the group fits with
  them (co_tiles x (1 + sign) elements per layer) and keeps its virtual threads and traffic;
- `input_on_chip`: keep each group input block in the accumulator for the whole group, so a
  residual that is the group input is not read from DRAM a second time (fused groups);
- `identity_residuals` (set by the group): pairs (k, j), layer j's residual is the identity
  GEMM of layer k's padded input, which stays in the input buffer from layer k to layer j.
- `blocks_inside`: the loop order of a group with streamed weights over several blocks:
  output-channel chunks outside the block loops, so each chunk's weights are loaded once for
  all blocks (True), or blocks outside chunks, weights once per block (False). One layer:
  every block's input is loaded once per chunk; several layers: each layer in turn, the maps
  between them whole on chip (all blocks), the input loaded once. Default: the order with
  fewer estimated DRAM bytes (no row sub-tiles with True; several layers: not with blocks
  kept in the accumulator, blocks_inside_eligible).

Footprint model (elements of each buffer, one block in flight per copy; "x vthreads" only
where the allocation's loop runs more than once: blocks x sub-tiles for the input, x chunks x
passes for the rest; e.g. a 1x1 grid's padded input blocks have one copy):
    inp = ci_tiles * in_rows * padded_cols                       x vthreads
          (inp_per_pass: ci_chunk instead of ci_tiles)
    wgt = co_tiles * ci_tiles * kh * kw  (resident)  or  oc_chunk * ci_chunk * kh * kw
                                                          x weight_copies
          (ci_tiles = input tiles per packed group, ci_chunk <= ci_tiles per GEMM pass)
    acc = oc_chunk * (conv_rows * conv_cols + residual_rows * out_cols
                      [+ bias + sign tiles when not bias_resident])   x vthreads
          [+ co_tiles * (bias + sign) when bias_resident]
An inner layer of a fused group keeps its whole conv output block in the accumulator; a group
needs the largest layer (one layer computes at a time) plus every resident tile, and, while
layer i computes, every padded input block held for an identity-GEMM residual of a later
layer (plus the identity tile in the weight buffer). The lowering's
allocator (bctvm.lower.sram) makes the exact check.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from boards import BoardConfig
from bctvm.errors import BadInputError

from .layer import LayerSpec


class BufferFitError(BadInputError):
    """A layer or group does not fit an on-chip buffer (names layer, buffer, need, depth)."""


@dataclass(frozen=True)
class LayerKnobs:
    oc_chunk: int | None = None
    sub_rows: int | None = None
    rows_outer: bool | None = None  # None: chosen by resolve_knobs
    ci_chunk: int | None = None  # input-channel tiles per GEMM pass (None: resolve_knobs)
    inp_per_pass: bool | None = None  # input loaded per GEMM pass (None: resolve_knobs)


@dataclass(frozen=True)
class ScheduleKnobs:
    layers: tuple = ()
    vthreads: int = 2
    weights_resident: bool | None = None
    input_on_chip: bool = False  # group input block kept in the accumulator (fused residual)
    chunked_handover: bool = True  # inner layers hand each finished chunk to the next layer
    kept_outputs: tuple = ()  # inner layers whose output a later layer adds (set by the group)
    identity_residuals: tuple = ()  # (k, j): layer j adds layer k's padded input (identity GEMM)
    bias_resident: bool | None = None  # bias/sign tiles loaded once (None: resolve_knobs)
    blocks_inside: bool | None = None  # loop order: blocks inside output-channel chunks
    #                                    (weights once, input per chunk; None: by traffic)
    resident_layers: tuple = ()  # layers whose weights stay resident with the others streamed
    refine_rows: bool | None = None  # refining: the coarse layer per row of fine blocks
    weight_copies: int | None = None  # copies of streamed weight tiles (None: as vthreads)

    @property
    def wgt_copies(self) -> int:
        """Copies of every streamed weight tile (the allocator's slots in the weight buffer)."""
        return self.weight_copies or self.vthreads

    def layer(self, i: int) -> LayerKnobs:
        return self.layers[i] if i < len(self.layers) else LayerKnobs()

    def weights_kept(self, i: int) -> bool:
        """Whether layer i's weights stay in the weight buffer for the whole run."""
        return bool(self.weights_resident) or i in self.resident_layers


def _divisors_desc(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def _resident(cfg: BoardConfig, spec: LayerSpec) -> tuple[int, int]:
    """(weight elements, accumulator elements of bias/sign tiles) a resident layer keeps."""
    kh, kw = spec.kernel
    cot = spec.co_tiles(cfg)
    return cot * spec.ci_tiles_per_group(cfg) * kh * kw, cot * (1 + (1 if spec.sign else 0))


def layer_footprint(cfg: BoardConfig, spec: LayerSpec, oc_chunk: int, sub_rows: int,
                    vthreads: int, resident: bool, last: bool = True,
                    whole_output: bool = False, whole_input: bool = False,
                    ci_chunk: int | None = None,
                    bias_resident: bool | None = None,
                    inp_per_pass: bool = False,
                    weight_copies: int | None = None) -> dict[str, int]:
    """Elements of inp/wgt/acc one layer needs (see the module docstring). `resident`: its
    weights stay in the weight buffer; `bias_resident` (None: as `resident`): its bias/sign
    tiles stay in the accumulator. `last=False`: an
    inner layer of a fused group, which hands each finished output chunk to the next layer;
    `whole_output`: its whole output block stays in the accumulator (no chunked hand-over, or
    a later layer adds it as a residual); `ci_chunk`: input tiles per GEMM pass (None: all);
    `inp_per_pass`: the input buffer holds one pass's ci_chunk tiles (a one-layer group);
    `weight_copies`: copies of streamed weight tiles (None: `vthreads`). A site gets its
    copies only when its loop runs more than once (block_copies)."""
    vec_res = resident if bias_resident is None else bias_resident
    kh, kw = spec.kernel
    cit, cot = spec.ci_tiles(cfg), spec.co_tiles(cfg)
    prow, pcol = spec.padded_block
    ch, cw = spec.conv_block
    oh, ow = spec.out_block
    f = 2 if spec.pool else 1
    if last and sub_rows < oh:
        conv_rows = sub_rows * f
        in_rows = prow if whole_input else conv_rows + spec.dilation[0] * (kh - 1)
    else:
        conv_rows, in_rows, sub_rows = ch, prow, oh
    res_w, res_v = _resident(cfg, spec)
    vectors = res_v // cot
    per_pass = ci_chunk or spec.ci_tiles_per_group(cfg)
    blocks = block_count(cfg, spec)
    n_sub = oh // sub_rows if sub_rows < oh else 1
    runs = blocks * n_sub * (cot // oc_chunk) * (spec.ci_tiles_per_group(cfg) // per_pass)
    inp_runs = blocks * (1 if whole_input else n_sub) * (runs if inp_per_pass else 1)
    inp = (per_pass if inp_per_pass else cit) * in_rows * pcol * copies(vthreads, inp_runs)
    wgt_copies = copies(weight_copies or vthreads, runs)
    wgt = res_w if resident else oc_chunk * per_pass * kh * kw * wgt_copies
    residual = spec.residual_shift is not None
    per_chunk = conv_rows * cw + (0 if vec_res else vectors) + (sub_rows * ow if residual else 0)
    acc = oc_chunk * per_chunk * copies(vthreads, runs)
    if not last and whole_output:
        acc = (cot * ch * cw * copies(vthreads, blocks)
               + ((oc_chunk * oh * ow if residual else 0)
                  + (0 if vec_res else oc_chunk * vectors)) * copies(vthreads, runs))
    acc += res_v if vec_res else 0
    return {"inp": inp, "wgt": wgt, "acc": acc}


def block_count(cfg: BoardConfig, spec: LayerSpec) -> int:
    """Blocks a layer's block loops run over (batch groups x grid)."""
    return (spec.batch // cfg.batch) * spec.grid[0] * spec.grid[1]


def copies(vthreads: int, runs: int) -> int:
    """Copies the allocator gives a site whose loop runs `runs` times: `vthreads` (rotated
    from run to run), one for a site allocated once (bctvm.lower.sram)."""
    return vthreads if runs > 1 else 1


def group_footprint(cfg: BoardConfig, specs, knobs: ScheduleKnobs) -> dict[str, int]:
    """Peak elements per buffer of a group. Layers compute one after the other; while layer i
    computes, the next layer's padded input fills chunk by chunk (chunked hand-over), so the
    input buffer holds both, plus every padded input held for a later identity-GEMM residual;
    an output kept for a later residual stays whole in the accumulator; resident weights and
    bias/sign tiles of all layers (and the identity tile) stay. In the blocks-inside order of
    several layers (`blocks_inside`) every layer computes like a last layer (block by block
    inside its chunks) and the padded inputs hold all blocks (one copy, at the root). A
    refining group's coarse layer run per row of fine blocks (`refine_rows`) keeps those rows
    while the fine layers run."""
    vec_res = _bias_resident(knobs)
    n = len(specs)
    inside = bool(knobs.blocks_inside) and n > 1
    fps = []

    def block_vt(i):  # copies of a site allocated once per block of layer i
        return copies(knobs.vthreads, block_count(cfg, specs[i]))

    keep = {"wgt": 0, "acc": 0}
    for i, spec in enumerate(specs):
        k = knobs.layer(i)
        kept = i in knobs.kept_outputs
        whole = kept or not knobs.chunked_handover
        resident = knobs.weights_kept(i)
        strip = strip_rows(specs, knobs, i)
        if strip:
            fps.append(_strip_footprint(cfg, spec, k.oc_chunk or spec.co_tiles(cfg), strip,
                                        knobs.vthreads, resident, k.ci_chunk, vec_res,
                                        knobs.wgt_copies))
        else:
            fps.append(layer_footprint(cfg, spec, k.oc_chunk or spec.co_tiles(cfg),
                                       k.sub_rows or spec.out_block[0], knobs.vthreads,
                                       resident, last=(i == n - 1) or inside,
                                       whole_output=whole, whole_input=i > 0 or inside,
                                       ci_chunk=k.ci_chunk, bias_resident=vec_res,
                                       inp_per_pass=bool(k.inp_per_pass),
                                       weight_copies=knobs.wgt_copies))
        if inside:  # the whole input map, every block, one copy
            prow, pcol = spec.padded_block
            fps[-1]["inp"] = spec.ci_tiles(cfg) * prow * pcol * block_count(cfg, spec)
        res_w, res_v = _resident(cfg, spec)
        keep["wgt"] += res_w if resident else 0
        keep["acc"] += res_v if vec_res else 0
        if kept:
            ch, cw = spec.conv_block
            keep["acc"] += spec.co_tiles(cfg) * ch * cw * block_vt(i)
    peak = {"inp": 0, "wgt": 0, "acc": 0}
    for i, (spec, fp) in enumerate(zip(specs, fps)):
        res_w, res_v = _resident(cfg, spec)
        res_w, res_v = (res_w if knobs.weights_kept(i) else 0), (res_v if vec_res else 0)
        nxt = 0
        if knobs.chunked_handover and i + 1 < n:
            nxt = fps[i + 1]["inp"]
        held = {k for k, j in knobs.identity_residuals if k < i <= j}  # pads kept for later
        peak["inp"] = max(peak["inp"], fp["inp"] + nxt + sum(fps[k]["inp"] for k in held))
        peak["wgt"] = max(peak["wgt"], fp["wgt"] - res_w)
        acc = fp["acc"] - res_v
        if i in knobs.kept_outputs:
            ch, cw = spec.conv_block
            acc -= spec.co_tiles(cfg) * ch * cw * block_vt(i)  # counted in keep
        if strip_rows(specs, knobs, i):  # a row of coarse output stays while the fine
            keep["acc"], acc = keep["acc"] + acc, 0  # blocks of the next layers run
        peak["acc"] = max(peak["acc"], acc)
    if knobs.input_on_chip:
        s0 = specs[0]
        keep["acc"] += s0.ci_tiles(cfg) * s0.block[0] * s0.block[1] * block_vt(0)
    if knobs.identity_residuals:
        keep["wgt"] += 1
    return {"inp": peak["inp"], "wgt": peak["wgt"] + keep["wgt"], "acc": peak["acc"] + keep["acc"]}


def strip_rows(specs, knobs: ScheduleKnobs, i: int) -> int | None:
    """Output rows layer i computes at a time when it is the coarse layer of a refining
    group run per row of fine blocks (`refine_rows`): the next layer's block rows; else
    None."""
    from .grid_nest import nesting

    if not knobs.refine_rows or i + 1 >= len(specs):
        return None
    n = nesting(specs[i].out_block, specs[i + 1].block)
    return specs[i + 1].block[0] if n is not None and n.kind == "refine" else None


def _strip_footprint(cfg: BoardConfig, spec: LayerSpec, oc_chunk: int, strip: int,
                     vthreads: int, resident: bool, ci_chunk, bias_resident,
                     weight_copies: int | None = None) -> dict:
    """layer_footprint of a coarse layer computed `strip` output rows at a time: its input
    rows with their halo, every output-channel chunk of those rows kept for the fine
    blocks."""
    fp = layer_footprint(cfg, spec, oc_chunk, strip, vthreads, resident, True,
                         ci_chunk=ci_chunk, bias_resident=bias_resident,
                         weight_copies=weight_copies)
    fp["acc"] = fp["acc"] * spec.co_tiles(cfg) // oc_chunk
    return fp


def _bias_resident(knobs: ScheduleKnobs) -> bool:
    """Whether bias/sign tiles are resident (unset: as the weights)."""
    if knobs.bias_resident is None:
        return bool(knobs.weights_resident)
    return knobs.bias_resident


def _depths(cfg: BoardConfig, budget: dict | None = None) -> dict[str, int]:
    """Elements per buffer the model may use: the board's depths, or `budget` (a search
    bound below them, bctvm.lower.fit)."""
    depths = {"inp": cfg.inp_depth, "wgt": cfg.wgt_depth, "acc": cfg.acc_depth}
    return {**depths, **(budget or {})}


def check_fit(cfg: BoardConfig, specs, knobs: ScheduleKnobs, budget: dict | None = None) -> None:
    """Raise BufferFitError naming the layer(s) and buffer if the group cannot fit."""
    need = group_footprint(cfg, specs, knobs)
    depth = _depths(cfg, budget)
    names = ", ".join(s.name for s in specs)
    for buf in ("inp", "wgt", "acc"):
        if need[buf] > depth[buf]:
            raise BufferFitError(
                f"layer(s) {names}: {buf} buffer needs {need[buf]} elements per block, board "
                f"'{cfg.name}' has {depth[buf]} (knobs {knobs})")


def _validate(cfg: BoardConfig, specs, knobs: ScheduleKnobs) -> None:
    if knobs.vthreads not in (1, 2):
        raise BadInputError(f"vthreads must be 1 or 2, got {knobs.vthreads}")
    if knobs.weight_copies not in (None, 1, 2):
        raise BadInputError(f"weight_copies must be 1 or 2, got {knobs.weight_copies}")
    for i, spec in enumerate(specs):
        k = knobs.layer(i)
        cot, oh = spec.co_tiles(cfg), spec.out_block[0]
        tig = spec.ci_tiles_per_group(cfg)
        if k.oc_chunk is not None and (k.oc_chunk <= 0 or cot % k.oc_chunk):
            raise BadInputError(f"{spec.where()}: oc_chunk {k.oc_chunk} must divide the "
                                f"{cot} output-channel tiles")
        if k.ci_chunk is not None and (k.ci_chunk <= 0 or tig % k.ci_chunk):
            raise BadInputError(f"{spec.where()}: ci_chunk {k.ci_chunk} must divide the "
                                f"{tig} input-channel tiles per group")
        if (k.ci_chunk is not None and k.ci_chunk < tig and k.rows_outer is False
                and k.sub_rows is not None and k.sub_rows < oh):
            raise BadInputError(f"{spec.where()}: ci_chunk {k.ci_chunk} (GEMM passes inside "
                                f"the row sub-tiles) needs rows_outer")
        if knobs.blocks_inside and (k.sub_rows or oh) < oh:
            raise BadInputError(f"{spec.where()}: blocks_inside (chunks outside the block "
                                f"loops) only without row sub-tiles")
        if k.inp_per_pass and not per_pass_eligible(cfg, specs):
            raise BadInputError(f"{spec.where()}: inp_per_pass (input loaded per GEMM pass) "
                                f"only for a one-layer group of an ungrouped conv")
        if k.sub_rows is not None:
            if k.sub_rows <= 0 or oh % k.sub_rows:
                raise BadInputError(f"{spec.where()}: sub_rows {k.sub_rows} must divide the "
                                    f"{oh} output rows of a block")
            if i != len(specs) - 1 and k.sub_rows != oh:
                raise BadInputError(f"{spec.where()}: row sub-tiles only for the last layer of "
                                    f"a group")
    if knobs.blocks_inside and len(specs) > 1 and (knobs.input_on_chip or knobs.kept_outputs
                                                   or not knobs.chunked_handover):
        raise BadInputError("blocks_inside (chunks outside the block loops) in a group of "
                            "several layers needs the chunked hand-over and no block kept in "
                            "the accumulator (input_on_chip, kept_outputs)")


def per_pass_eligible(cfg: BoardConfig, specs) -> bool:
    """Whether a group may load its input per GEMM pass (`LayerKnobs.inp_per_pass`): one
    layer (it loads its own input from DRAM), ungrouped, with more than one input tile."""
    specs = list(specs)
    return (len(specs) == 1 and specs[0].groups == 1
            and specs[0].ci_tiles_per_group(cfg) > 1)


def estimate_dram_bytes(cfg: BoardConfig, spec: LayerSpec, oc_chunk: int, sub_rows: int,
                        rows_outer: bool, resident: bool, first: bool = True,
                        bias_resident: bool | None = None, inp_per_pass: bool = False,
                        blocks_inside: bool = False, input_once: bool = False) -> int:
    """DRAM bytes a layer's schedule moves for its input, weights, biases and signs (the
    parts the knobs change; output and residual bytes are fixed). Rows sub-tiles re-read their kernel halo;
    with output-channel chunks outside the row sub-tiles (`rows_outer=False`) the input is
    re-read per chunk, inside them the weights are re-read per sub-tile. Resident weights
    (`resident`) and resident bias/sign tiles (`bias_resident`, None: as `resident`) are read
    once; streamed bias/sign tiles are read with each chunk, like streamed weights. Exact for zero
    padding (edge padding reads a few more rows). `ci_chunk` does not enter: GEMM passes
    split each chunk's weights into disjoint parts (same bytes) and read the padded input
    block already on chip (loaded before the chunk loop, as without passes), unless
    `inp_per_pass`: then each chunk's passes read the input again (once per chunk, each pass
    its own tiles). `blocks_inside`: chunks outside the block loops, weights read once, the
    input once per chunk, or once with `input_once` (a group of several layers keeps its
    input map whole on chip)."""
    kh, kw = spec.kernel
    blocks = block_count(cfg, spec)
    oh = spec.out_block[0]
    n_sub = oh // sub_rows if sub_rows < oh else 1
    n_chunk = spec.co_tiles(cfg) // oc_chunk
    f = 2 if spec.pool else 1
    bh, pt = spec.block[0], spec.padding[0]
    if n_sub == 1:
        rows = bh
    else:  # data rows of all sub-tiles (each with its halo, padding rows not read)
        span = sub_rows * f + spec.dilation[0] * (kh - 1)
        rows = sum(max(0, min(j * sub_rows * f - pt + span, bh) - max(j * sub_rows * f - pt, 0))
                   for j in range(n_sub))
    inp = spec.ci_tiles(cfg) * rows * spec.block[1] * cfg.inp_elem_bytes if first else 0
    res_w, res_v = _resident(cfg, spec)
    w_bytes = res_w * cfg.wgt_elem_bytes
    v_bytes = res_v * cfg.acc_elem_bytes  # bias/sign tiles
    vec_res = resident if bias_resident is None else bias_resident
    if rows_outer or n_sub == 1:
        total_in, per_load = blocks * inp, blocks * n_sub
    else:
        total_in, per_load = blocks * n_chunk * inp, blocks
    if inp_per_pass:  # every chunk reads its (sub-tile's) input again, pass by pass
        total_in = blocks * n_chunk * inp
    if blocks_inside:  # chunks outside the blocks: weights once, the input once per chunk
        total_in, per_load = blocks * (1 if input_once else n_chunk) * inp, 1
    total_w = w_bytes if resident else per_load * w_bytes
    total_v = v_bytes if vec_res else per_load * v_bytes
    return total_in + total_w + total_v


def _layer_candidates(cfg, spec, k: LayerKnobs, vt: int, resident: bool, last: bool,
                      first: bool, whole: bool = False, bias_resident: bool | None = None,
                      per_pass: bool = False, budget: dict | None = None,
                      wc: int | None = None, strip: int | None = None):
    """Fitting (oc_chunk, sub_rows, rows_outer, ci_chunk, inp_per_pass) of one layer, best
    (least DRAM, then largest tiles) first, and the least DRAM bytes. All input tiles in one
    GEMM pass unless `ci_chunk` is set or, with two virtual threads and streamed weights,
    nothing fits that way: then the largest ci_chunk (a divisor of the tiles per group) with a
    fitting tile. `per_pass`: the input loaded per GEMM pass (fewer input tiles than the
    layer's), every divisor tried, least traffic then largest tiles then fewest passes.
    `wc`: copies of streamed weight tiles (None: `vt`)."""
    tig = spec.ci_tiles_per_group(cfg)
    wc = wc or vt
    if per_pass:
        out = []
        for ci in [k.ci_chunk] if k.ci_chunk else _divisors_desc(tig)[1:]:
            out += _tile_candidates(cfg, spec, k, vt, resident, last, first, whole, ci,
                                    bias_resident, True, budget, wc)
        return _ranked(out)
    if k.ci_chunk:
        return _ranked(_tile_candidates(cfg, spec, k, vt, resident, last, first, whole,
                                        k.ci_chunk, bias_resident, budget=budget, wc=wc,
                                        strip=strip))
    for ci in _divisors_desc(tig) if wc >= 2 and not resident else [tig]:
        cands, best = _ranked(_tile_candidates(cfg, spec, k, vt, resident, last, first, whole,
                                               ci, bias_resident, budget=budget, wc=wc,
                                               strip=strip))
        if cands:
            return cands, best
    return [], None


def _ranked(out):
    """(knob tuples sorted by (bytes, -tile size, -ci_chunk), least bytes or None)."""
    out = sorted(out, key=lambda x: (x[0], x[1], -x[2][3]))
    return [x[2] for x in out], (out[0][0] if out else None)


def _tile_candidates(cfg, spec, k: LayerKnobs, vt: int, resident: bool, last: bool,
                     first: bool, whole: bool, ci: int, bias_resident: bool | None = None,
                     per_pass: bool = False, budget: dict | None = None,
                     wc: int | None = None, strip: int | None = None):
    """Unsorted (bytes, -tile size, knob tuple) of _layer_candidates with `ci` input tiles per
    GEMM pass."""
    depth = _depths(cfg, budget)
    oh = spec.out_block[0]
    chunks = [k.oc_chunk] if k.oc_chunk else _divisors_desc(spec.co_tiles(cfg))
    rows = [k.sub_rows] if k.sub_rows else (_divisors_desc(oh) if last else [oh])
    orders = [k.rows_outer] if k.rows_outer is not None else [True, False]
    if ci < spec.ci_tiles_per_group(cfg):
        orders = [o for o in orders if o]  # the pass loop sits inside the row sub-tiles
    out = []
    for r in rows:
        for c in chunks:
            if strip:
                fp = _strip_footprint(cfg, spec, c, strip, vt, resident, ci, bias_resident, wc)
            else:
                fp = layer_footprint(cfg, spec, c, r, vt, resident, last, whole_output=whole,
                                     whole_input=not first, ci_chunk=ci,
                                     bias_resident=bias_resident, inp_per_pass=per_pass,
                                     weight_copies=wc)
            if any(fp[b] > depth[b] for b in fp):
                continue
            for ro in (orders if r < oh else [True]):
                cost = estimate_dram_bytes(cfg, spec, c, r, ro, resident, first, bias_resident,
                                           per_pass)
                out.append((cost, -c * r, (c, r, ro, ci, per_pass)))
    return out


def resolve_knobs(cfg: BoardConfig, specs, knobs: ScheduleKnobs | None = None,
                  budget: dict | None = None) -> ScheduleKnobs:
    """Fill unset knobs with tiles that fit, then check the fit.

    Per layer, the fitting tiles with the least estimated DRAM traffic (estimate_dram_bytes),
    then the largest; weights resident when they fit; two virtual threads unless one thread
    saves more than a quarter of the traffic. Input-channel tiles all in one GEMM pass, unless
    two virtual threads with streamed weights fit only with fewer (then the largest ci_chunk
    that fits: the next pass's weight load overlaps the current pass's GEMM). Bias/sign tiles
    resident with resident weights; with streamed weights resident too when the group fits
    that way with as many virtual threads and no more traffic than streaming them (their
    accumulator space may shrink the tiles), else streamed per chunk. The input is loaded per
    GEMM pass (`inp_per_pass`, more input traffic) only when nothing fits otherwise (or when
    asked for). `budget`: elements per buffer the footprint model may use (default: the
    board's depths; bctvm.lower.fit lowers it where the allocator needs more than the model)."""
    specs = list(specs)
    knobs = knobs or ScheduleKnobs()
    _validate(cfg, specs, knobs)
    asked = knobs.layer(0).inp_per_pass
    if asked:
        rounds = [True]
    elif asked is False or not per_pass_eligible(cfg, specs):
        rounds = [False]
    else:
        rounds = [False, True]
    first_err = None
    for per_pass in rounds:
        try:
            return _loop_order(cfg, specs, knobs, per_pass, budget)
        except BufferFitError as err:
            first_err = first_err or err
    raise first_err


def group_dram_bytes(cfg: BoardConfig, specs, k: ScheduleKnobs) -> int:
    """estimate_dram_bytes summed over the layers of a group under resolved knobs (inputs of
    the first layer only: the others are on chip)."""
    specs = list(specs)
    total = 0
    for i, spec in enumerate(specs):
        lk = k.layer(i)
        total += estimate_dram_bytes(cfg, spec, lk.oc_chunk, lk.sub_rows or spec.out_block[0],
                                     lk.rows_outer is not False, k.weights_kept(i),
                                     i == 0, k.bias_resident, bool(lk.inp_per_pass),
                                     bool(k.blocks_inside), len(specs) > 1)
    return total


def _loop_order(cfg: BoardConfig, specs, knobs: ScheduleKnobs, per_pass: bool,
                budget: dict | None) -> ScheduleKnobs:
    """_resolve_residency with the loop order (`blocks_inside`) chosen by traffic
    (group_dram_bytes): blocks inside chunks only tried for a group with streamed weights over
    several blocks (blocks_inside_eligible)."""
    if knobs.blocks_inside is not None or not blocks_inside_eligible(cfg, specs, knobs):
        return _resolve_residency(cfg, specs, replace(knobs, blocks_inside=bool(
            knobs.blocks_inside)), per_pass, budget)
    outer = _resolve_residency(cfg, specs, replace(knobs, blocks_inside=False), per_pass,
                               budget)
    if outer.weights_resident:
        return outer
    inner = blocks_inside_knobs(cfg, specs, knobs, per_pass, budget)
    if inner is None:
        return outer
    fewer = group_dram_bytes(cfg, specs, inner) < group_dram_bytes(cfg, specs, outer)
    return inner if fewer else outer


def blocks_inside_eligible(cfg: BoardConfig, specs, knobs: ScheduleKnobs) -> bool:
    """Whether the blocks-inside loop order can apply: several blocks, no row sub-tiles or
    input per GEMM pass asked for; several layers also need the chunked hand-over and no block
    kept whole in the accumulator (the group input, an output for a later residual)."""
    specs = list(specs)
    last = len(specs) - 1
    lk = knobs.layer(last)
    asked_rows = lk.sub_rows is not None and lk.sub_rows < specs[last].out_block[0]
    if block_count(cfg, specs[0]) == 1 or asked_rows or knobs.layer(0).inp_per_pass:
        return False
    if any(s.grid != specs[0].grid for s in specs):  # grid changes: blocks loop per grid
        return False
    return len(specs) == 1 or not (knobs.input_on_chip or knobs.kept_outputs
                                   or not knobs.chunked_handover)


def blocks_inside_knobs(cfg: BoardConfig, specs, knobs: ScheduleKnobs, per_pass: bool = False,
                        budget: dict | None = None) -> ScheduleKnobs | None:
    """The knobs resolved in the blocks-inside order (whole blocks: no row sub-tiles), or
    None when nothing fits that way."""
    specs = list(specs)
    last = len(specs) - 1
    layers = [knobs.layer(i) for i in range(len(specs))]
    layers[last] = replace(layers[last], sub_rows=specs[last].out_block[0])
    try:
        return _resolve_residency(cfg, specs, replace(knobs, layers=tuple(layers),
                                                      blocks_inside=True), per_pass, budget)
    except BufferFitError:
        return None


def _resolve_residency(cfg: BoardConfig, specs, knobs: ScheduleKnobs,
                       per_pass: bool, budget: dict | None = None) -> ScheduleKnobs:
    """resolve_knobs with the input loaded per GEMM pass (`per_pass`) or not."""
    depth = _depths(cfg, budget)
    all_wgt = sum(_resident(cfg, s)[0] for s in specs) + (1 if knobs.identity_residuals else 0)
    resident = knobs.weights_resident
    if resident is None:
        resident = all_wgt <= depth["wgt"]
    if knobs.bias_resident is not None or resident:
        vec_options = [knobs.bias_resident if knobs.bias_resident is not None else True]
    else:
        vec_options = [True, False]
    partial = [knobs.resident_layers]
    if not resident and knobs.weights_resident is None and not knobs.resident_layers:
        partial += [p for p in [resident_choice(cfg, specs, depth["wgt"])] if p]
    best, last_err = None, None
    for layers in partial:
        results = []
        for vec_res in vec_options:
            try:
                results.append(_resolve_tiles(cfg, specs, replace(knobs, resident_layers=layers),
                                              resident, vec_res, per_pass, budget))
            except BufferFitError as err:
                last_err = err
        if not results:
            continue
        pick = results[0]
        if len(results) == 2:  # bias resident unless it costs virtual threads or traffic
            (c_res, k_res), (c_str, k_str) = results
            if k_res.vthreads < k_str.vthreads or c_res > c_str:
                pick = results[1]
        # some layers' weights resident: when it saves traffic without losing a thread
        if best is None or (pick[0] < best[0] and pick[1].vthreads >= best[1].vthreads):
            best = pick
    if best is None:
        raise last_err
    return best[1]


def resident_choice(cfg: BoardConfig, specs, depth_wgt: int) -> tuple:
    """Layers whose weights to keep resident when the group's do not all fit: those that
    run on the most blocks (a coarsening group's fine layers run per fine block), most runs
    first, while they take at most half the weight buffer; () when no layer runs on more
    than one block."""
    runs = [block_count(cfg, s) for s in specs]
    chosen, used = [], 0
    for i in sorted(range(len(specs)), key=lambda i: (-runs[i], i)):
        w = _resident(cfg, specs[i])[0]
        if runs[i] > 1 and used + w <= depth_wgt // 2:
            chosen.append(i)
            used += w
    return tuple(sorted(chosen))


def _copy_options(knobs: ScheduleKnobs, resident: bool) -> list[tuple[int, int]]:
    """(vthreads, weight copies) to try, most overlap first: two virtual threads; else one
    with two copies of streamed weights (the next chunk's weights load during this chunk's
    GEMM), then one copy. Explicit knobs are the only choice."""
    vts = [knobs.vthreads] if knobs.vthreads == 1 else [2, 1]
    out = []
    for vt in vts:
        if knobs.weight_copies is not None:
            wcs = [knobs.weight_copies]
        elif resident or vt == 2:
            wcs = [vt]
        else:
            wcs = [2, 1]
        out += [(vt, wc) for wc in wcs]
    return out


def _resolve_tiles(cfg: BoardConfig, specs, knobs: ScheduleKnobs, resident: bool,
                   vec_res: bool, per_pass: bool = False,
                   budget: dict | None = None) -> tuple[int, ScheduleKnobs]:
    """(estimated DRAM bytes, resolved knobs) for fixed weight/bias residency; raises
    BufferFitError when nothing fits."""
    found = []
    last_err = None
    for vt, wc in _copy_options(knobs, resident):
        layers, cost = [], 0
        bud = dict(_depths(cfg, budget))  # less the rows of coarse output kept (refine_rows)
        for i, spec in enumerate(specs):
            k = knobs.layer(i)
            whole = i in knobs.kept_outputs or not knobs.chunked_handover
            strip = strip_rows(specs, knobs, i)
            kept_w = resident or knobs.weights_kept(i)
            cands, best = _layer_candidates(cfg, spec, k, vt, kept_w,
                                            last=i == len(specs) - 1, first=i == 0, whole=whole,
                                            bias_resident=vec_res, per_pass=per_pass,
                                            budget=bud, wc=wc, strip=strip)
            if not cands:
                layers = None
                break
            c, r, ro, ci, pp = cands[0]
            if strip:
                bud["acc"] -= _strip_footprint(cfg, spec, c, strip, vt, kept_w, ci,
                                               vec_res, wc)["acc"]
            layers.append(replace(k, oc_chunk=c, sub_rows=r, rows_outer=ro, ci_chunk=ci,
                                  inp_per_pass=pp))
            cost += best
        if layers is None:
            continue
        resolved = replace(knobs, layers=tuple(layers), vthreads=vt, weights_resident=resident,
                           bias_resident=vec_res, weight_copies=wc)
        try:
            check_fit(cfg, specs, resolved, budget)
            found.append((cost, resolved))
        except BufferFitError as err:
            last_err = err
    if found:  # the first (most copies) unless it moves > 1.25x the least traffic
        least = min(c for c, _ in found)
        return next(f for f in found if f[0] <= 1.25 * least)
    if last_err is not None:
        raise last_err
    if per_pass:
        raise BufferFitError(f"layer(s) {', '.join(s.name for s in specs)}: no tile fits board "
                             f"'{cfg.name}' even with the input loaded per GEMM pass")
    rows = 1 if not knobs.blocks_inside else None  # whole blocks in the blocks-inside order
    fallback = replace(knobs, layers=tuple(LayerKnobs(1, rows if i == len(specs) - 1 else None,
                                                      ci_chunk=s.ci_tiles_per_group(cfg))
                                           for i, s in enumerate(specs)),
                       vthreads=1, weights_resident=resident, bias_resident=vec_res)
    check_fit(cfg, specs, fallback, budget)
    return sum(estimate_dram_bytes(cfg, s, 1, fallback.layer(i).sub_rows or s.out_block[0],
                                   True, resident, i == 0, vec_res)
               for i, s in enumerate(specs)), fallback
