"""s_tir schedule of a block-conv group (schedules/block_conv2d.py) for the VTA scratchpads.

Loop structure (outer to inner), for a group of layers l0..lL on one block grid:

    for n, bi, bj:                                   # blocks
        [l0..lL-1: pad_0 <- DMA from DRAM]
            for co_o:  bias/sign tiles <- DMA; GEMM reset; GEMM; ALU epilogue;
                       pad_(i+1)[chunk] <- OUT_INP (chunked hand-over: one chunk of the
                       output in the accumulator at a time)
        lL:
        for (ho, co_o) or (co_o, ho):                # row sub-tiles x output-channel chunks
            pad_L      <- DMA (at the block loop, or per row sub-tile with its halo)
            bias/sign/residual tiles <- DMA
            GEMM reset; for ci_o: [pad_L[ci_o] <- DMA (inp_per_pass: one-layer group,
                                   only this pass's input tiles)]
                                  [weights <- DMA]; GEMM (tensorized, uops over
                                  ci x ky x kx); ALU epilogue
            out        <- STORE
With `blocks_inside` the chunk loops go outside the block loops (weights once per chunk for all
blocks); in a group of several layers each layer then runs at the root, chunk by chunk and
block by block, and the maps between layers stay whole on chip (_place_blocks_inside).
Weights are loaded once at the top (`weights_resident`) or per chunk; so are, independently
(`bias_resident`), the bias/sign tiles in the accumulator. With `ci_chunk` (fewer input tiles per GEMM pass than the layer has) a chunk's
GEMM runs as passes over input-tile slices (loop ci_o) that accumulate into the same tile
after one reset; streamed weights are then loaded per pass (two copies rotate with
vthreads=2, so the next pass's load overlaps this pass's GEMM). A residual by identity GEMM (block_conv2d, identity_residuals) is one more GEMM
per chunk (reset, then padded input block x the identity tile, loaded once at the top) into
the chunk's residual tile; the padded block it reads stays in the input buffer until then.
The GEMM is tensorized with the board's intrinsic (schedules/intrinsics.py); the GEMM kernel
loops are (y, x) around (ci, ky, kx), so lowering folds y/x into iter_out/iter_in and ci/ky/kx
into micro-ops. Function attributes tell the lowering the virtual-thread count and layer names.
"""

from __future__ import annotations

from dataclasses import replace

from tvm import s_tir

from .block_conv2d import GroupStages, LayerStages
from .grid_nest import Nesting, nesting
from .intrinsics import ACC_SCOPE, INP_SCOPE, WGT_SCOPE, gemm_intrin_names
from .knobs import ScheduleKnobs, resolve_knobs

N_REDUCE = 4  # ci tiles, ky, kx, ci lanes


def _block(sch, tensor):
    return sch.get_sblock(tensor.op.name)


def _place_layer(sch, ls: LayerStages, caches: dict, anchor, p_anchor, w_anchor,
                 resident: bool, ci_chunk: int | None = None, bias_resident: bool = False,
                 inp_per_pass: bool = False):
    """compute_at every producer of a layer's epilogue (consumers first); per-chunk weights
    (unless `resident`) and bias and sign tiles (unless `bias_resident`) at the output-channel
    chunk loop `w_anchor`; resident ones stay at the root (loaded once). With `ci_chunk` input
    tiles per GEMM pass (fewer than the layer's), the pass loop goes right under `anchor`,
    above the chunk's output loops, and per-chunk weights load per pass. `inp_per_pass`: the
    padded input goes in the pass loop too (only that pass's input tiles; at `anchor` with
    one pass); `p_anchor` None: the padded input stays at the root (all blocks, made by the
    previous layer or loaded once). Returns the pass loop (None: one pass)."""
    at = dict(preserve_unit_loops=True)
    for t in (ls.res_aligned, ls.res32):
        if t is not None:
            sch.compute_at(_block(sch, t), anchor, **at)
    if "sign" in caches and not bias_resident:
        sch.compute_at(caches["sign"], w_anchor, **at)
    if ls.biased is not None:
        sch.compute_at(_block(sch, ls.biased), anchor, **at)
    if not bias_resident:
        sch.compute_at(caches["bias"], w_anchor, **at)
    sch.compute_at(_block(sch, ls.conv), anchor, **at)
    ci_o = None
    if ci_chunk and ci_chunk < int(ls.weight.shape[1]):  # weight: (co, ci per group, ...)
        ci_o = _split_passes(sch, ls, ci_chunk)
    if inp_per_pass:
        p_anchor = ci_o if ci_o is not None else anchor
    if ls.pad_of is None and p_anchor is not None:  # shared: placed by its owner; None: root
        sch.compute_at(_block(sch, ls.pad), p_anchor, **at)
    if not resident:
        sch.compute_at(caches["weight"], ci_o if ci_o is not None else w_anchor, **at)
    return ci_o


def _split_passes(sch, ls: LayerStages, ci_chunk: int):
    """Split the conv's input-tile reduction loop into GEMM passes of `ci_chunk` tiles and
    move the pass loop above the conv's own (output) loops: every pass accumulates into the
    whole chunk tile. Returns the pass loop."""
    cb = _block(sch, ls.conv)
    n_sp = len(ls.conv.shape)
    loops = sch.get_loops(cb)
    sp, ric = loops[-(n_sp + N_REDUCE):-N_REDUCE], loops[-N_REDUCE]
    ci_o, ci_i = sch.split(ric, [None, ci_chunk])
    sch.reorder(ci_o, *sp, ci_i)
    return ci_o


def _tensorize_gemm(sch, ls: LayerStages, batch: int, gemm: str, reset: str,
                    ci_o=None) -> None:
    """Tensorize the conv; the GEMM reset goes before the pass loop `ci_o` (if any), else
    before the output rows."""
    cb = _block(sch, ls.conv)
    n_sp = len(ls.conv.shape)
    loops = sch.get_loops(cb)
    sp, rd = loops[-(n_sp + N_REDUCE):-N_REDUCE], loops[-N_REDUCE:]
    y, x, b, o = sp[-4:]
    ric, rky, rkx, rci = rd
    sch.reorder(y, x, ric, rky, rkx, b, o, rci)
    init = sch.decompose_reduction(cb, ci_o if ci_o is not None else y)
    if batch == 1:
        sch.tensorize(o, gemm)
        sch.tensorize(sch.get_loops(init)[-1], reset)
    else:
        sch.tensorize(b, gemm)
        sch.tensorize(sch.get_loops(init)[-2], reset)


def _tensorize_identity(sch, ls: LayerStages, batch: int, gemm: str, reset: str) -> None:
    """The identity-GEMM residual: loops (y, x, [b,] o, lanes) -> reset + GEMM intrinsics."""
    cb = _block(sch, ls.res32)
    y = sch.get_loops(cb)[-5]
    init = sch.decompose_reduction(cb, y)
    loops = sch.get_loops(cb)
    if batch == 1:
        sch.tensorize(loops[-2], gemm)
        sch.tensorize(sch.get_loops(init)[-1], reset)
    else:
        sch.tensorize(loops[-3], gemm)
        sch.tensorize(sch.get_loops(init)[-2], reset)


def _nest_of(group: GroupStages, i: int, j: int) -> Nesting:
    """How layer i's output blocks nest into layer j's input blocks (grid_nest)."""
    return nesting(group.layers[i].spec.out_block, group.layers[j].spec.block)


def _residual_user(group: GroupStages, i: int) -> int:
    """The first layer whose residual is layer i's output (on layer i's grid)."""
    return next(j for j, r in enumerate(group.residuals) if r == i)


def _refine_ratio(group: GroupStages) -> tuple[int, int] | None:
    """(rh, rw) fine blocks per coarse block of the group's refining hand-over (at most one,
    its consumer on the last layer's grid: block_conv2d.check_chain), or None."""
    for i in range(len(group.layers)):
        j = group.consumer(i)
        if j is not None and _nest_of(group, i, j).kind == "refine":
            return _nest_of(group, i, j).ratio
    return None


def _split_refine(sch, bi, bj, ratio):
    """Refining: split the block loops (bi, bj) of the last layer into coarse and fine
    loops, coarse ones outside: (n, bi_c, bj_c, bi_f, bj_f). Returns (bj_c, bi_f, bj_f)."""
    bi_c, bi_f = sch.split(bi, [None, ratio[0]])
    bj_c, bj_f = sch.split(bj, [None, ratio[1]])
    sch.reorder(bj_c, bi_f)
    return bj_c, bi_f, bj_f


def _coarse_copy_loops(sch, group: GroupStages, i: int, j: int, block_loop):
    """Coarsening: layer j's padded input block (at `block_loop`) collects rh x rw output
    blocks of layer i. The padded block is split into a zero fill of the whole block and the
    copy of its interior (decompose_padding), the copy's rows and columns into fine-block
    loops (fi, fj) outside its channel loop; layer i then runs at fj, one fine block at a
    time, its output handed to the coarse block on chip. Returns (fj, the copy's channel-tile
    loop)."""
    pad = group.layers[j].pad
    pb = _block(sch, pad)
    loops = sch.get_loops(pb)[-len(pad.shape):]  # n, bi, bj, ci, rows, cols, b, c
    if any(group.layers[j].spec.padding):
        sch.decompose_padding(pb, loops[3])
    loops = sch.get_loops(pb)[-len(pad.shape):]
    ci, rows, cols = loops[3], loops[4], loops[5]
    oh, ow = group.layers[i].spec.out_block
    fi, ri = sch.split(rows, [None, oh])
    fj, rj = sch.split(cols, [None, ow])
    sch.reorder(fi, fj, ci, ri, rj)
    for _ in range(3):  # unit loops like the producer's (n, bi, bj): the chunk loops merge
        sch.add_unit_loop(sch.get_loops(pb)[-len(pad.shape) + 3])
    return fj, sch.get_loops(pb)[-len(pad.shape) + 3]


def schedule_group(group: GroupStages, knobs: ScheduleKnobs | None = None) -> s_tir.Schedule:
    """The VTA schedule of a group; `knobs` unset fields are resolved to fit the board."""
    cfg = group.cfg
    knobs = resolve_knobs(cfg, group.specs, knobs)
    sch = s_tir.Schedule(group.prim_func())
    gemm, reset = gemm_intrin_names(cfg)
    layers = group.layers

    for t in (group.data_acc, group.data_out):
        if t is not None:
            sch.set_scope(_block(sch, t), 0, ACC_SCOPE)
    for ls in layers:
        if ls.pad_of is None:
            sch.set_scope(_block(sch, ls.pad), 0, INP_SCOPE)
        if ls.hold is not None:
            sch.set_scope(_block(sch, ls.hold), 0, INP_SCOPE)
        for t in (ls.conv, ls.biased, ls.res32, ls.res_aligned, ls.epi):
            if t is not None:
                sch.set_scope(_block(sch, t), 0, ACC_SCOPE)
    caches = []
    for ls in layers:
        c = {"weight": sch.cache_read(_block(sch, ls.conv), ls.weight.op.name, WGT_SCOPE)}
        bias_user = ls.biased if ls.biased is not None else ls.epi
        c["bias"] = sch.cache_read(_block(sch, bias_user), ls.bias.op.name, ACC_SCOPE)
        if ls.sign is not None:
            c["sign"] = sch.cache_read(_block(sch, ls.epi), ls.sign.op.name, ACC_SCOPE)
        caches.append(c)
    if group.identity is not None:  # one identity tile for every residual GEMM, loaded once
        first = next(ls for ls in layers if ls.res_pad is not None)
        sch.cache_read(_block(sch, first.res32), group.identity.op.name, WGT_SCOPE)

    # output loops: blocks, then row sub-tiles / output-channel chunks of the last layer
    last = layers[-1]
    lk = knobs.layer(len(layers) - 1)
    out = sch.get_sblock(group.output.op.name)
    n, co, h, w, b, o = sch.get_loops(out)
    oh, ow = last.spec.out_block
    bi, hy = sch.split(h, [None, oh])
    bj, wx = sch.split(w, [None, ow])
    co_o, co_i = sch.split(co, [None, lk.oc_chunk])
    sub = lk.sub_rows < oh
    if knobs.blocks_inside:  # chunks outside the blocks (weights once per chunk)
        sch.reorder(co_o, n, bi, bj, co_i, hy, wx, b, o)
        # one layer: input per block and chunk; several: every input map whole at the root
        anchor, p_anchor = bj, (bj if len(layers) == 1 else None)
    elif sub:
        ho, hi = sch.split(hy, [None, lk.sub_rows])
        outer = [ho, co_o] if lk.rows_outer is not False else [co_o, ho]
        sch.reorder(n, bi, bj, *outer, co_i, hi, wx, b, o)
        # a fused last layer's input is made on chip by the previous layer: whole block
        anchor, p_anchor = outer[1], (ho if len(layers) == 1 else bj)
    else:
        sch.reorder(n, bi, bj, co_o, co_i, hy, wx, b, o)
        anchor, p_anchor = co_o, bj
    coarse = None  # refining: the loop over the coarse blocks (grid_nest)
    ratio = _refine_ratio(group)
    if ratio is not None:
        coarse, fine_row, fine = _split_refine(sch, bi, bj, ratio)
        if knobs.refine_rows:  # the coarse layer per row of fine blocks
            coarse = fine_row
        anchor, p_anchor = (fine if a is bj else a for a in (anchor, p_anchor))
        bj = fine
    sch.compute_at(_block(sch, last.epi), anchor, preserve_unit_loops=True)
    vec_res = bool(knobs.bias_resident)
    passes = {len(layers) - 1: _place_layer(sch, last, caches[-1], anchor, p_anchor, co_o,
                                            knobs.weights_kept(len(layers) - 1), lk.ci_chunk,
                                            vec_res,
                                            bool(lk.inp_per_pass))}

    if knobs.blocks_inside and len(layers) > 1:
        passes.update(_place_blocks_inside(sch, group, knobs, caches))
    # earlier layers: whole output block at their block loop (the consumer's, or a fine
    # block loop inside it: grid_nest), chunked inside their own loops
    blk = {len(layers) - 1: bj}
    for i in range(len(layers) - 2 if not knobs.blocks_inside else -1, -1, -1):
        ls = layers[i]
        j = group.consumer(i)
        target = layers[j].pad if j is not None else ls.hold
        copy_co = None  # the consumer's copy loop over channel tiles (for the hand-over)
        kind = _nest_of(group, i, j).kind if j is not None else "same"
        if kind == "coarsen" and layers[j].pad_of is None:
            blk[i], copy_co = _coarse_copy_loops(sch, group, i, j, blk[j])
        elif kind == "refine":  # once per coarse block (or row of fine blocks), kept whole
            blk[i], target = coarse, None
            if knobs.refine_rows and any(layers[j].spec.padding):
                # the fine blocks' padding read no rows of the coarse output: the rows one
                # row of fine blocks needs are exactly its own
                pad = layers[j].pad
                pb = _block(sch, pad)
                sch.decompose_padding(pb, sch.get_loops(pb)[-len(pad.shape) + 3])
        else:
            blk[i] = blk[j if j is not None else _residual_user(group, i)]
        if ls.hold is not None:  # the int8 copy a later identity-GEMM residual reads
            sch.compute_at(_block(sch, ls.hold), blk[i], preserve_unit_loops=True)
        eb = _block(sch, ls.epi)
        sch.compute_at(eb, blk[i], preserve_unit_loops=True)
        e_loops = sch.get_loops(eb)[-len(ls.epi.shape):]
        e_co = e_loops[3]
        chunk = knobs.layer(i).oc_chunk
        e_anchor = sch.split(e_co, [None, chunk])[0]
        passes[i] = _place_layer(sch, ls, caches[i], e_anchor, blk[i], e_anchor,
                                 knobs.weights_kept(i), knobs.layer(i).ci_chunk, vec_res)
        if knobs.chunked_handover and target is not None:
            # copy each finished chunk into the consumer's padded input (or the held copy)
            # right away: split the copy's channel loop like this layer's chunks and merge
            # the two chunk loops
            if copy_co is None:
                pb = _block(sch, target)
                copy_co = sch.get_loops(pb)[-len(target.shape):][3]
            p_chunk = sch.split(copy_co, [None, chunk])[0]
            sch.merge(e_anchor, p_chunk)

    # the group input kept on chip: loaded per block before the first layer needs it
    for t in (group.data_out, group.data_acc):
        if t is not None:
            sch.compute_at(_block(sch, t), blk[0], preserve_unit_loops=True)

    for i, ls in enumerate(layers):
        _tensorize_gemm(sch, ls, cfg.batch, gemm, reset, passes[i])
        if ls.res_pad is not None:
            _tensorize_identity(sch, ls, cfg.batch, gemm, reset)
    return sch


def _place_blocks_inside(sch, group: GroupStages, knobs: ScheduleKnobs, caches) -> dict:
    """The earlier layers of a group in the blocks-inside order (`knobs.blocks_inside`):
    each layer at the root, its output-channel chunks outside the block loops (a chunk's
    weights loaded once for all blocks), the next layer's padded input (or the int8 copy a
    later identity-GEMM residual reads) whole at the root, filled block by block as each
    chunk finishes (chunk and block loops merged). Returns {layer: GEMM pass loop}."""
    layers = group.layers
    passes = {}
    for i in range(len(layers) - 2, -1, -1):
        ls = layers[i]
        chunk = knobs.layer(i).oc_chunk
        eb = _block(sch, ls.epi)
        n, bi, bj, co = sch.get_loops(eb)[-len(ls.epi.shape):][:4]
        co_o, co_i = sch.split(co, [None, chunk])
        sch.reorder(co_o, n, bi, bj, co_i)
        passes[i] = _place_layer(sch, ls, caches[i], bj, None, co_o, knobs.weights_kept(i),
                                 knobs.layer(i).ci_chunk, bool(knobs.bias_resident))
        j = group.consumer(i)
        target = layers[j].pad if j is not None else ls.hold
        if target is None:
            continue
        pb = _block(sch, target)
        pn, pbi, pbj, pc = sch.get_loops(pb)[-len(target.shape):][:4]
        pc_o, pc_i = sch.split(pc, [None, chunk])
        sch.reorder(pc_o, pn, pbi, pbj, pc_i)
        sch.merge(co_o, pc_o)
        for depth in range(1, 4):  # n, bi, bj: each block's chunk goes over at once
            sch.merge(sch.get_loops(eb)[depth], sch.get_loops(pb)[depth])
    return passes


def group_knobs(group: GroupStages, knobs: ScheduleKnobs | None = None) -> ScheduleKnobs:
    """`knobs` with the fields the group's compute fixes: input kept on chip, outputs kept
    for later residuals or for the finer blocks of the next layer (refining), identity-GEMM
    residual pairs."""
    kept = {r for r, ls in zip(group.residuals, group.layers)
            if isinstance(r, int) and ls.res_pad is None}
    if not (knobs and knobs.refine_rows):  # whole coarse output kept for the fine blocks
        kept |= {i for i in range(len(group.layers)) if group.consumer(i) is not None
                 and _nest_of(group, i, group.consumer(i)).kind == "refine"}
    kept = tuple(sorted(kept))
    return replace(knobs or ScheduleKnobs(), input_on_chip=group.data_out is not None,
                   kept_outputs=kept, identity_residuals=group.identity_pairs())


def scheduled_module(group: GroupStages, knobs: ScheduleKnobs | None = None):
    """(IRModule ready for the bctvm TIR pipeline, resolved knobs)."""
    cfg = group.cfg
    resolved = resolve_knobs(cfg, group.specs, group_knobs(group, knobs))
    sch = schedule_group(group, resolved)
    func = sch.mod["main"]
    func = func.with_attr("bctvm.vthreads", resolved.vthreads)
    func = func.with_attr("bctvm.weight_copies", resolved.wgt_copies)
    func = func.with_attr("bctvm.board", cfg.name)
    func = func.with_attr("bctvm.layers", {ls.tag: ls.spec.name for ls in group.layers})
    import tvm

    return tvm.IRModule({"main": func}), resolved
