"""TE compute of the packed integer block conv (one layer or a fused chain on one block grid).

Layouts (b = BATCH, c = BLOCK_IN, o = BLOCK_OUT of the board; see schedules/layout.py):
    data      (N/b, Ci/c, H, W, b, c)          int8   DRAM, packed NCHW{b}n{c}c
    weight    (Co/o, Ci/c/G', kh, kw, o, c)    int8   DRAM, packed OIHW{o}o{c}i (G' packed
                                                      groups: output tile t reads input
                                                      tiles (t // (Co/o/G')) * Ci/c/G' + r)
    bias/sign (Co/o, b, o)                      int32  DRAM, one accumulator element per tile
                                                      (bias: b + LayerSpec.bias_offset, the
                                                      folded rounding, layout.pack_bias)
    residual  (N/b, Co/o, Ho, Wo, b, o)         int8   DRAM (read with ACC_8BIT loads)
    identity  (o, c)                            int8   DRAM, the identity weight tile of the
                                                      residual GEMM (identity_residuals)
    out       (N/b, Co/o, Ho, Wo, b, o)         int8   DRAM
Intermediate stages live in *blocked* coordinates (n, bi, bj, ...) so that a schedule can loop
over blocks and keep everything of one block on chip:
    pad   (n, bi, bj, ci, rows, cols, b, c)        padded input block, "local.inp_buffer"
    conv  (n, bi, bj, co, y, x, b, o)              int32, "local.acc_buffer"
          (n, bi, bj, py, px, co, y', x', b, o)    with pool: the four 2x2 phases as planes,
                                                   so the pooled result is contiguous
    epi   (n, bi, bj, co, y, x, b, o)              int32 epilogue result; its low byte is the
                                                   output buffer (STORE / OUT_INP source)
The epilogue is one "spine" expression per element, v = op(v, operand) with immediates or
accumulator tiles as operands: exactly what the VTA ALU does in place (bctvm.lower).

Residual sources on chip (a fused group): the group input ("input") or an earlier layer's
output (index m) is either kept whole in the accumulator (input_on_chip / a kept output
block), or, with `identity_residuals`, read back from the input buffer where its int8 values
already are: the group input is layer 0's `pad`, layer m's output is layer m+1's `pad`
(interior offset by that layer's padding). `res32` is then a GEMM of that padded block with
the identity weight tile (res32 = pad x I, int32), one output-channel chunk at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import te, tirx

from boards import BoardConfig
from bctvm.errors import BadInputError, BlockShapeError

from .grid_nest import nesting, source_index
from .int_expr import align, clip, i32, reflect_index, replicate_index, round_shift
from .layer import LayerSpec


@dataclass
class LayerStages:
    """TE tensors of one layer of a group (None where the layer has no such stage)."""

    spec: LayerSpec
    tag: str
    weight: te.Tensor
    bias: te.Tensor
    sign: te.Tensor | None
    residual: te.Tensor | None
    pad: te.Tensor
    conv: te.Tensor
    biased: te.Tensor | None  # conv + bias before the pool (pool layers only)
    res32: te.Tensor | None  # residual widened to int32 in the accumulator (ACC_8BIT load
    #                          or, with res_pad set, the identity GEMM)
    res_aligned: te.Tensor | None  # align(res32, s) in place (None when s == 0)
    epi: te.Tensor
    res_pad: int | None = None  # identity GEMM residual: index of the layer whose pad it reads
    pad_of: int | None = None  # the GEMM reads this layer's pad (shared input block); None: own
    hold: te.Tensor | None = None  # int8 copy of the output in the input buffer, read back by
    #                                a later layer's identity-GEMM residual (no data consumer)


@dataclass
class GroupStages:
    """A fused chain of layers on one block grid: its TE tensors and parameter order.

    With `input_on_chip`, `data_acc` holds each input block in the accumulator (one ACC_8BIT
    load) and `data_out` is its in-place copy whose low bytes the output buffer exposes: the
    first layer reads its padded input from there (OUT_INP) and the last layer's residual is
    the same tile, so the group input crosses DRAM once."""

    cfg: BoardConfig
    specs: tuple
    data: te.Tensor
    layers: list
    output: te.Tensor
    params: list = field(default_factory=list)
    data_acc: te.Tensor | None = None
    data_out: te.Tensor | None = None
    residuals: list = field(default_factory=list)  # per layer (resolve_residuals)
    identity: te.Tensor | None = None  # identity weight tile (identity_residuals)
    sources: list = field(default_factory=list)  # per layer: "input" or source layer index

    def consumer(self, i: int) -> int | None:
        """The layer that reads layer i's output as its data input (None: only a residual)."""
        return next((j for j in range(i + 1, len(self.layers)) if self.sources[j] == i), None)

    def identity_pairs(self) -> tuple:
        """(k, j): layer j's residual is the identity GEMM of layer k's padded input."""
        return tuple((ls.res_pad, j) for j, ls in enumerate(self.layers)
                     if ls.res_pad is not None)

    def prim_func(self) -> tirx.PrimFunc:
        return te.create_prim_func(self.params + [self.output])

    def layer_of_tag(self) -> dict:
        return {ls.tag: ls.spec for ls in self.layers}


# ---- compute -------------------------------------------------------------------------------


def _identity_res32(cfg: BoardConfig, spec: LayerSpec, tag: str, pad: te.Tensor, offset,
                    identity: te.Tensor) -> te.Tensor:
    """int32 residual block of `spec`'s output shape read from a padded input block `pad`
    (interior at `offset` = (top, left)) by a GEMM with the identity tile: pad x I."""
    nb = spec.batch // cfg.batch
    nbh, nbw = spec.grid
    oh, ow = spec.out_block
    pt, pl = offset
    rr = te.reduce_axis((0, cfg.block_in), f"{tag}_rri")
    return te.compute(
        (nb, nbh, nbw, spec.co_tiles(cfg), oh, ow, cfg.batch, cfg.block_out),
        lambda n, bi, bj, co, y, x, b, o: te.sum(
            pad[n, bi, bj, co, y + pt, x + pl, b, rr].astype("int32")
            * identity[o, rr].astype("int32"), axis=[rr]),
        name=f"{tag}_res32")


def _layer_stages(cfg: BoardConfig, spec: LayerSpec, tag: str, source, residual_tensor,
                  res_pad=None, identity=None, shared_pad=None):
    """Stages of one layer; `source(n, c, bi, bj, r, s, b, ci)` gives the unpadded block pixel.
    res_pad (with `identity`): the residual is the identity GEMM of a padded input block:
    "self" (this layer's own pad) or (pad tensor, (top, left) padding of that layer).
    shared_pad: (pad tensor, (top, left) offset) of another layer that reads the same input
    block with at least this layer's padding: the GEMM reads it there (no own copy)."""
    nb = spec.batch // cfg.batch
    bt, bi_l, bo_l = cfg.batch, cfg.block_in, cfg.block_out
    cit, cot = spec.ci_tiles(cfg), spec.co_tiles(cfg)
    gp = spec.packed_groups(cfg)
    tig, cot_g = cit // gp, cot // gp
    nbh, nbw = spec.grid
    bh, bw = spec.block
    kh, kw = spec.kernel
    dh, dw = spec.dilation
    pt, pl, _, _ = spec.padding
    prow, pcol = spec.padded_block
    ch, cw = spec.conv_block
    oh, ow = spec.out_block
    mode = spec.padding_mode

    weight = te.placeholder((cot, tig, kh, kw, bo_l, bi_l), "int8", name=f"{tag}_weight")
    bias = te.placeholder((cot, bt, bo_l), "int32", name=f"{tag}_bias")
    sign = te.placeholder((cot, bt, bo_l), "int32", name=f"{tag}_sign") if spec.sign else None

    def pad_fn(n, bi, bj, c, r, s, b, ci):
        y, x = r - pt, s - pl
        if mode == "constant":
            inside = tirx.all(r >= pt, r < pt + bh, s >= pl, s < pl + bw)
            return tirx.if_then_else(inside, source(n, c, bi, bj, y, x, b, ci),
                                     tirx.const(0, "int8"))
        fix = replicate_index if mode == "replicate" else reflect_index
        return source(n, c, bi, bj, fix(y, bh), fix(x, bw), b, ci)

    if shared_pad is None:
        pad = te.compute((nb, nbh, nbw, cit, prow, pcol, bt, bi_l), pad_fn, name=f"{tag}_pad")
        oy = ox = 0
    else:
        pad, (oy, ox) = shared_pad
    ric = te.reduce_axis((0, tig), f"{tag}_ric")
    rky = te.reduce_axis((0, kh), f"{tag}_rky")
    rkx = te.reduce_axis((0, kw), f"{tag}_rkx")
    rci = te.reduce_axis((0, bi_l), f"{tag}_rci")

    def mac(n, bi, bj, y, x, co, b, o):
        it = ric if gp == 1 else (co // cot_g) * tig + ric  # grouped: this tile's input tiles
        return te.sum(
            pad[n, bi, bj, it, oy + y + rky * dh, ox + x + rkx * dw, b, rci].astype("int32")
            * weight[co, ric, rky, rkx, o, rci].astype("int32"),
            axis=[ric, rky, rkx, rci])

    if spec.pool:
        conv = te.compute(
            (nb, nbh, nbw, 2, 2, cot, ch // 2, cw // 2, bt, bo_l),
            lambda n, bi, bj, py, px, co, y, x, b, o: mac(n, bi, bj, 2 * y + py, 2 * x + px,
                                                          co, b, o),
            name=f"{tag}_conv")
        biased = te.compute(conv.shape, lambda n, bi, bj, py, px, co, y, x, b, o:
                            conv[n, bi, bj, py, px, co, y, x, b, o] + bias[co, b, o],
                            name=f"{tag}_biased")
    else:
        conv = te.compute((nb, nbh, nbw, cot, ch, cw, bt, bo_l),
                          lambda n, bi, bj, co, y, x, b, o: mac(n, bi, bj, y, x, co, b, o),
                          name=f"{tag}_conv")
        biased = None

    res32 = res_aligned = None
    if spec.residual_shift is not None and res_pad is not None:
        src, off = (pad, (oy + pt, ox + pl)) if res_pad == "self" else res_pad
        res32 = _identity_res32(cfg, spec, tag, src, off, identity)
    elif spec.residual_shift is not None:
        r = residual_tensor
        if r.dtype == "int32":  # the group input, already in the accumulator (blocked)
            res32 = r
        else:
            res32 = te.compute((nb, nbh, nbw, cot, oh, ow, bt, bo_l),
                               lambda n, bi, bj, co, y, x, b, o:
                               r[n, co, bi * oh + y, bj * ow + x, b, o].astype("int32"),
                               name=f"{tag}_res32")
    if res32 is not None and spec.residual_shift != 0:
        res_aligned = te.compute(res32.shape, lambda *i: align(res32[i], spec.residual_shift),
                                 name=f"{tag}_resalign")

    def epi_fn(n, bi, bj, co, y, x, b, o):
        if spec.pool:
            def p(py, px):
                return biased[n, bi, bj, py, px, co, y, x, b, o]
            v = tirx.max(tirx.max(tirx.max(p(0, 0), p(0, 1)), p(1, 0)), p(1, 1))
        else:
            v = conv[n, bi, bj, co, y, x, b, o] + bias[co, b, o]
        if sign is not None:
            v = v * sign[co, b, o]
        if res32 is not None:
            rr = res_aligned if res_aligned is not None else res32
            v = v + rr[n, bi, bj, co, y, x, b, o]
        if spec.rounding_in_bias:  # 2^(sh-1) is in the bias data (layout.pack_bias)
            return clip(tirx.shift_right(v, i32(spec.shift)), spec.relu, spec.clip)
        return clip(round_shift(v, spec.shift), spec.relu, spec.clip)

    epi = te.compute((nb, nbh, nbw, cot, oh, ow, bt, bo_l), epi_fn, name=f"{tag}_epi")
    own_res32 = res32 if res32 is not None and res32 is not residual_tensor else None
    return LayerStages(spec, tag, weight, bias, sign, residual_tensor, pad, conv, biased,
                       own_res32, res_aligned, epi)


def resolve_sources(specs, sources=None) -> list:
    """Where each layer's data input comes from: "input" (the group input) or the index k of
    an earlier layer (its output block). Default (None): a chain, layer i reads layer i-1.
    Layer 0 always reads the group input."""
    n = len(specs)
    src = ["input"] + list(range(n - 1)) if sources is None else list(sources)
    if len(src) != n or src[0] != "input":
        raise BadInputError(f"sources {sources!r}: one per layer, the first 'input'")
    for i, r in enumerate(src[1:], 1):
        if r != "input" and not (isinstance(r, int) and not isinstance(r, bool) and 0 <= r < i):
            raise BadInputError(f"{specs[i].where()}: source {r!r} is not 'input' or an "
                                f"earlier layer index")
    return src


def check_chain(cfg: BoardConfig, specs, sources=None) -> None:
    """Raise BadInputError/BlockShapeError naming the layer if a layer's input does not
    continue its source on the group's block grid (its input block = the source's output
    block, or the group input's block)."""
    if not specs:
        raise BadInputError("a fused group needs at least one layer")
    for s in specs:
        s.validate(cfg)
    src = resolve_sources(specs, sources)
    s0 = specs[0]
    refined = False
    for i, b in enumerate(specs[1:], 1):
        if src[i] == "input":
            if (b.in_channels, b.batch, b.height, b.width, b.block) != \
                    (s0.in_channels, s0.batch, s0.height, s0.width, s0.block):
                raise BlockShapeError(f"{b.where()}: reads the group input but its input "
                                      f"{b.in_channels}x{b.height}x{b.width} block {b.block} "
                                      f"differs from {s0.where()}'s")
            continue
        a = specs[src[i]]
        if a.out_channels != b.in_channels or a.batch != b.batch:
            raise BadInputError(f"{b.where()}: input {b.batch}x{b.in_channels} does not match "
                                f"{a.where()} output {a.batch}x{a.out_channels}")
        nest = nesting(a.out_block, b.block)
        if a.out_size != (b.height, b.width) or nest is None:
            raise BlockShapeError(
                f"{b.where()}: block {b.block} on a {b.height}x{b.width} map does not continue "
                f"{a.where()} (output {a.out_size[0]}x{a.out_size[1]}, block {a.out_block})")
        if nest.kind == "refine" and (refined or any(s.grid != specs[-1].grid
                                                     for s in specs[i:])):
            raise BlockShapeError(f"{b.where()}: its {b.block[0]}x{b.block[1]} blocks refine "
                                  f"{a.where()}'s {a.out_block[0]}x{a.out_block[1]} output "
                                  f"blocks: a group refines once, on its last layers' grid")
        refined = refined or nest.kind == "refine"
        if nest.kind == "coarsen" and (any(b.padding) and b.padding_mode != "constant"):
            raise BlockShapeError(
                f"{b.where()}: collecting {nest.ratio[0]}x{nest.ratio[1]} blocks of "
                f"{a.where()} into one needs constant padding, not {b.padding_mode}")
        if nest.kind != "same" and sum(1 for j in src[i + 1:] if j == src[i]) > 0:
            raise BlockShapeError(f"{b.where()}: a branch beside it reads {a.where()}'s "
                                  f"output on another block grid")


def _shares_input_pad(a: LayerSpec, b: LayerSpec) -> bool:
    """Whether layer b can read its input from a's padded copy of the same block: b's padding
    fits inside a's on every side, with a's border values where b has padding."""
    inside = all(pb <= pa for pa, pb in zip(a.padding, b.padding))
    return inside and (not any(b.padding) or b.padding_mode == a.padding_mode)


def resolve_residuals(specs, residual_source) -> list:
    """Where each layer's residual comes from: None (no residual), "external" (its own DRAM
    tensor `<tag>_residual`), "input" (the group input) or the index k of an earlier layer of
    the group (that layer's output block). `residual_source` is one of those per layer, or the
    string "external" (every residual external) or "input" (the last layer's residual is the
    group input, the others external)."""
    specs = tuple(specs)
    n = len(specs)
    if isinstance(residual_source, str):
        if residual_source not in ("external", "input"):
            raise BadInputError(f"residual_source must be 'external', 'input' or a list, got "
                                f"{residual_source!r}")
        src = [("input" if residual_source == "input" and i == n - 1 else "external")
               if s.residual_shift is not None else None for i, s in enumerate(specs)]
    else:
        src = list(residual_source)
        if len(src) != n:
            raise BadInputError(f"residual_source has {len(src)} entries for {n} layers")
    s0 = specs[0]
    for i, (spec, r) in enumerate(zip(specs, src)):
        if (r is None) != (spec.residual_shift is None):
            raise BadInputError(f"{spec.where()}: residual source {r!r} does not match "
                                f"residual_shift {spec.residual_shift}")
        if r is None or r == "external":
            continue
        if r == "input":
            ok = ((s0.in_channels, s0.height, s0.width, s0.block)
                  == (spec.out_channels, *spec.out_size, spec.out_block))
        elif isinstance(r, int) and not isinstance(r, bool) and 0 <= r < i:
            k = specs[r]
            ok = ((k.out_channels, k.out_size, k.out_block)
                  == (spec.out_channels, spec.out_size, spec.out_block))
        else:
            raise BadInputError(f"{spec.where()}: residual source {r!r} is not 'external', "
                                f"'input' or an earlier layer index")
        if not ok:
            raise BadInputError(f"{spec.where()}: residual from {r!r} has a different shape "
                                f"or block")
    return src


def group_compute(cfg: BoardConfig, specs, residual_source="external",
                  input_on_chip: bool = False, identity_residuals: bool = False,
                  sources=None) -> GroupStages:
    """TE stages of a chain of layers run block by block.

    residual_source: see resolve_residuals ("external", "input", or per layer None /
    "external" / "input" / earlier layer index). input_on_chip: keep the input block in the
    accumulator for the whole group (see GroupStages; needs BLOCK_IN == BLOCK_OUT and
    onchip_reuse). identity_residuals: every residual from the group input or an earlier
    layer is the identity GEMM of the padded input block that holds it (module docstring;
    needs BLOCK_IN == BLOCK_OUT, excludes input_on_chip). sources: each layer's data input
    (resolve_sources; default a chain); a layer reading the same block as an earlier one (a
    branch: a ResNet downsample beside conv1) shares that layer's padded copy, which needs its
    padding inside the earlier layer's."""
    specs = tuple(specs)
    check_chain(cfg, specs, sources)
    srcs = resolve_sources(specs, sources)
    residuals = resolve_residuals(specs, residual_source)
    s0 = specs[0]
    data = te.placeholder((s0.batch // cfg.batch, s0.ci_tiles(cfg), s0.height, s0.width,
                           cfg.batch, cfg.block_in), "int8", name="data")
    params = [data]
    identity = None
    if identity_residuals and any(r == "input" or isinstance(r, int) for r in residuals):
        if cfg.block_in != cfg.block_out or input_on_chip:
            raise BadInputError(f"{s0.where()}: residuals by identity GEMM need BLOCK_IN == "
                                f"BLOCK_OUT (board '{cfg.name}') and exclude input_on_chip")
        identity = te.placeholder((cfg.block_out, cfg.block_in), "int8", name="identity")
        params.append(identity)
    data_acc = data_out = None
    if input_on_chip:
        if cfg.block_in != cfg.block_out or not cfg.onchip_reuse:
            raise BadInputError(f"{s0.where()}: keeping the group input on chip needs "
                                f"onchip_reuse and BLOCK_IN == BLOCK_OUT (board '{cfg.name}')")
        bh0, bw0 = s0.block
        nbh0, nbw0 = s0.grid
        data_acc = te.compute(
            (s0.batch // cfg.batch, nbh0, nbw0, s0.ci_tiles(cfg), bh0, bw0, cfg.batch,
             cfg.block_in),
            lambda n, bi, bj, c, r, s, b, ci: data[n, c, bi * bh0 + r, bj * bw0 + s, b, ci].astype("int32"),
            name="data_acc")
        # max(v, -128) is the identity on int8 values, but a real ALU op (a bare copy would be
        # simplified away): it writes the output buffer, which OUT_INP loads read
        data_out = te.compute(data_acc.shape, lambda *i: tirx.max(data_acc[i], i32(-128)),
                              name="data_out")
    layers = []
    for i, spec in enumerate(specs):
        tag = f"l{i}"
        bh, bw = spec.block
        prev = None if srcs[i] == "input" else layers[srcs[i]]
        shared = None
        owner = next((j for j in range(i) if srcs[j] == srcs[i]), None)
        if owner is not None:  # an earlier layer reads the same block: share its padded copy
            lo = specs[owner]
            if not _shares_input_pad(lo, spec):
                raise BadInputError(f"{spec.where()}: reads its input with padding "
                                    f"{spec.padding} {spec.padding_mode}, which "
                                    f"{lo.where()}'s padded block {lo.padding} "
                                    f"{lo.padding_mode} does not hold")
            shared = (layers[owner].pad, (lo.padding[0] - spec.padding[0],
                                          lo.padding[1] - spec.padding[1]))
        if prev is None and data_out is not None:
            def source(n, c, bi, bj, r, s, b, ci):
                return data_out[n, bi, bj, c, r, s, b, ci].astype("int8")
        elif prev is None:
            def source(n, c, bi, bj, r, s, b, ci, _bh=bh, _bw=bw):
                return data[n, c, bi * _bh + r, bj * _bw + s, b, ci]
        else:
            if cfg.block_in != cfg.block_out:
                raise BadInputError(f"{spec.where()}: fusing layers needs BLOCK_IN == BLOCK_OUT "
                                    f"on board '{cfg.name}'")

            nest = nesting(prev.spec.out_block, spec.block)

            def source(n, c, bi, bj, r, s, b, ci, _e=prev.epi, _n=nest,
                       _ob=prev.spec.out_block, _b=spec.block):
                pi, pj, pr, ps = source_index(_n, _ob, _b, bi, bj, r, s)
                return _e[n, pi, pj, c, pr, ps, b, ci].astype("int8")
        res_t = res_pad = None
        k = _pad_holding(srcs, residuals[i], i)
        if identity is not None and k is None and isinstance(residuals[i], int):
            m = residuals[i]  # read by no layer: hold an int8 copy in the input buffer
            if layers[m].hold is None:
                layers[m].hold = _hold(layers[m])
            res_pad, k = (layers[m].hold, (0, 0)), m
        elif identity is not None and k is not None:
            res_pad = "self" if k == i else (layers[k].pad, layers[k].spec.padding[:2])
        elif residuals[i] == "input":
            res_t = data_out if data_out is not None else data
        elif isinstance(residuals[i], int):
            res_t = layers[residuals[i]].epi  # int32, blocked, still on chip
        elif residuals[i] == "external":
            oh, ow = spec.out_size
            res_t = te.placeholder((spec.batch // cfg.batch, spec.co_tiles(cfg), oh, ow,
                                    cfg.batch, cfg.block_out), "int8", name=f"{tag}_residual")
        ls = _layer_stages(cfg, spec, tag, source, res_t, res_pad, identity, shared)
        if res_pad is not None:
            ls.res_pad = k
        if shared is not None:
            ls.pad_of = owner
        params += [ls.weight, ls.bias]
        if ls.sign is not None:
            params.append(ls.sign)
        if residuals[i] == "external":
            params.append(res_t)
        layers.append(ls)
    last = layers[-1]
    oh, ow = last.spec.out_block
    out_h, out_w = last.spec.out_size
    epi = last.epi
    output = te.compute(
        (last.spec.batch // cfg.batch, last.spec.co_tiles(cfg), out_h, out_w, cfg.batch,
         cfg.block_out),
        lambda n, co, h, w, b, o: epi[n, h // oh, w // ow, co, h % oh, w % ow, b, o].astype("int8"),
        name="out")
    return GroupStages(cfg, specs, data, layers, output, params, data_acc, data_out, residuals,
                       identity, srcs)


def _hold(ls: LayerStages) -> te.Tensor:
    """An int8 copy of a layer's output block in the input buffer (blocked layout)."""
    e = ls.epi
    return te.compute(e.shape, lambda *i: e[i].astype("int8"), name=f"{ls.tag}_hold")


def _pad_holding(srcs: list, residual, i: int) -> int | None:
    """Index of the layer (<= i) whose own padded input block holds the residual of layer i
    (the group input: layer 0's; layer m's output: the first layer reading it), or None."""
    if residual == "input":
        return 0
    if isinstance(residual, int) and not isinstance(residual, bool):
        return next((j for j in range(residual + 1, i + 1) if srcs[j] == residual), None)
    return None


def layer_compute(cfg: BoardConfig, spec: LayerSpec) -> GroupStages:
    """One layer as a group of one (residual from its own DRAM tensor)."""
    return group_compute(cfg, [spec], residual_source="external")


def build_llvm(group: GroupStages):
    """The group's TE compute built for the host CPU (a reference of what the schedule runs)."""
    return tvm.compile(tvm.IRModule({"main": group.prim_func()}), target="llvm")
