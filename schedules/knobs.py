"""Schedule knobs of a block-conv group, their defaults, and the scratchpad fit check.

Knobs (what a tuner may change; the defaults are chosen here to fit the board):
- per layer `oc_chunk`: output-channel tiles computed together in the accumulator;
- per layer `sub_rows`: output rows (after the pool) per row sub-tile of the *last* layer of a
  group (its input block is then loaded per sub-tile, with the kernel halo);
- `rows_outer`: with sub-tiles, loop rows outside output-channel chunks (input loaded once per
  sub-tile) or inside (weights chunk reused across sub-tiles);
- `vthreads`: copies (1 or 2) of every per-block on-chip buffer, rotated from block to block so
  that loads, compute and stores of neighbouring blocks overlap (double buffering);
- `weights_resident`: keep all weights of the group in the weight buffer (and biases/signs in
  the accumulator) for the whole run (loaded once) instead of per chunk and block;
- `input_on_chip`: keep each group input block in the accumulator for the whole group, so a
  residual that is the group input is not read from DRAM a second time (fused groups).

Footprint model (elements of each buffer, one block in flight per copy):
    inp = ci_tiles * in_rows * padded_cols                       x vthreads
    wgt = co_tiles * ci_tiles * kh * kw  (resident)  or  oc_chunk * ci_tiles * kh * kw x vthreads
    acc = oc_chunk * (conv_rows * conv_cols + residual_rows * out_cols
                      [+ bias + sign tiles when not resident])   x vthreads
          [+ co_tiles * (bias + sign) when resident]
An inner layer of a fused group keeps its whole conv output block in the accumulator; a group
needs the largest layer (one layer computes at a time) plus every resident tile. The lowering's
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
    rows_outer: bool = True


@dataclass(frozen=True)
class ScheduleKnobs:
    layers: tuple = ()
    vthreads: int = 2
    weights_resident: bool | None = None
    input_on_chip: bool = False  # group input block kept in the accumulator (fused residual)

    def layer(self, i: int) -> LayerKnobs:
        return self.layers[i] if i < len(self.layers) else LayerKnobs()


def _divisors_desc(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def _resident(cfg: BoardConfig, spec: LayerSpec) -> tuple[int, int]:
    """(weight elements, accumulator elements of bias/sign tiles) a resident layer keeps."""
    kh, kw = spec.kernel
    cot = spec.co_tiles(cfg)
    return cot * spec.ci_tiles_per_group(cfg) * kh * kw, cot * (1 + (1 if spec.sign else 0))


def layer_footprint(cfg: BoardConfig, spec: LayerSpec, oc_chunk: int, sub_rows: int,
                    vthreads: int, resident: bool, last: bool = True) -> dict[str, int]:
    """Elements of inp/wgt/acc one layer needs (see the module docstring). `last=False`: an
    inner layer of a fused group, whose whole output block stays in the accumulator."""
    kh, kw = spec.kernel
    cit, cot = spec.ci_tiles(cfg), spec.co_tiles(cfg)
    prow, pcol = spec.padded_block
    ch, cw = spec.conv_block
    oh, ow = spec.out_block
    f = 2 if spec.pool else 1
    if last and sub_rows < oh:
        conv_rows = sub_rows * f
        in_rows = conv_rows + spec.dilation[0] * (kh - 1)
    else:
        conv_rows, in_rows, sub_rows = ch, prow, oh
    res_w, res_v = _resident(cfg, spec)
    vectors = res_v // cot
    inp = cit * in_rows * pcol * vthreads
    wgt = res_w if resident else oc_chunk * spec.ci_tiles_per_group(cfg) * kh * kw * vthreads
    residual = spec.residual_shift is not None
    if last:
        per_chunk = conv_rows * cw + (0 if resident else vectors) + (sub_rows * ow if residual else 0)
        acc = oc_chunk * per_chunk * vthreads
    else:
        acc = (cot * ch * cw + (oc_chunk * oh * ow if residual else 0)
               + (0 if resident else oc_chunk * vectors)) * vthreads
    acc += res_v if resident else 0
    return {"inp": inp, "wgt": wgt, "acc": acc}


def group_footprint(cfg: BoardConfig, specs, knobs: ScheduleKnobs) -> dict[str, int]:
    """Peak elements per buffer of a group: one layer computes at a time (the previous
    layer's output block is dead once copied into the input buffer), resident weights and
    bias/sign tiles of all layers stay."""
    resident = bool(knobs.weights_resident)
    peak = {"inp": 0, "wgt": 0, "acc": 0}
    keep = {"wgt": 0, "acc": 0}
    for i, spec in enumerate(specs):
        k = knobs.layer(i)
        fp = layer_footprint(cfg, spec, k.oc_chunk or spec.co_tiles(cfg),
                             k.sub_rows or spec.out_block[0], knobs.vthreads, resident,
                             last=(i == len(specs) - 1))
        res_w, res_v = _resident(cfg, spec) if resident else (0, 0)
        keep["wgt"] += res_w
        keep["acc"] += res_v
        peak["inp"] = max(peak["inp"], fp["inp"])
        peak["wgt"] = max(peak["wgt"], fp["wgt"] - res_w)
        peak["acc"] = max(peak["acc"], fp["acc"] - res_v)
    if knobs.input_on_chip:
        s0 = specs[0]
        keep["acc"] += s0.ci_tiles(cfg) * s0.block[0] * s0.block[1] * knobs.vthreads
    return {"inp": peak["inp"], "wgt": peak["wgt"] + keep["wgt"], "acc": peak["acc"] + keep["acc"]}


def _depths(cfg: BoardConfig) -> dict[str, int]:
    return {"inp": cfg.inp_depth, "wgt": cfg.wgt_depth, "acc": cfg.acc_depth}


def check_fit(cfg: BoardConfig, specs, knobs: ScheduleKnobs) -> None:
    """Raise BufferFitError naming the layer(s) and buffer if the group cannot fit."""
    need = group_footprint(cfg, specs, knobs)
    depth = _depths(cfg)
    names = ", ".join(s.name for s in specs)
    for buf in ("inp", "wgt", "acc"):
        if need[buf] > depth[buf]:
            raise BufferFitError(
                f"layer(s) {names}: {buf} buffer needs {need[buf]} elements per block, board "
                f"'{cfg.name}' has {depth[buf]} (knobs {knobs})")


def _validate(cfg: BoardConfig, specs, knobs: ScheduleKnobs) -> None:
    if knobs.vthreads not in (1, 2):
        raise BadInputError(f"vthreads must be 1 or 2, got {knobs.vthreads}")
    for i, spec in enumerate(specs):
        k = knobs.layer(i)
        cot, oh = spec.co_tiles(cfg), spec.out_block[0]
        if k.oc_chunk is not None and (k.oc_chunk <= 0 or cot % k.oc_chunk):
            raise BadInputError(f"{spec.where()}: oc_chunk {k.oc_chunk} must divide the "
                                f"{cot} output-channel tiles")
        if k.sub_rows is not None:
            if k.sub_rows <= 0 or oh % k.sub_rows:
                raise BadInputError(f"{spec.where()}: sub_rows {k.sub_rows} must divide the "
                                    f"{oh} output rows of a block")
            if i != len(specs) - 1 and k.sub_rows != oh:
                raise BadInputError(f"{spec.where()}: row sub-tiles only for the last layer of "
                                    f"a group")


def resolve_knobs(cfg: BoardConfig, specs, knobs: ScheduleKnobs | None = None) -> ScheduleKnobs:
    """Fill unset knobs with the largest tiles that fit, then check the fit.

    Preference: weights resident, two virtual threads, whole output-channel range, whole block;
    then smaller chunks / row sub-tiles; then one virtual thread."""
    specs = list(specs)
    knobs = knobs or ScheduleKnobs()
    _validate(cfg, specs, knobs)
    depth = _depths(cfg)
    all_wgt = sum(_resident(cfg, s)[0] for s in specs)
    resident = knobs.weights_resident
    if resident is None:
        resident = all_wgt <= depth["wgt"]
    vt_options = [knobs.vthreads] if knobs.vthreads == 1 else [2, 1]
    last_err = None
    for vt in vt_options:
        layers = []
        ok = True
        for i, spec in enumerate(specs):
            k = knobs.layer(i)
            last = i == len(specs) - 1
            chunks = [k.oc_chunk] if k.oc_chunk else _divisors_desc(spec.co_tiles(cfg))
            rows = ([k.sub_rows] if k.sub_rows else
                    (_divisors_desc(spec.out_block[0]) if last else [spec.out_block[0]]))
            pick = None
            for r in rows:
                for c in chunks:
                    fp = layer_footprint(cfg, spec, c, r, vt, resident, last)
                    if all(fp[b] <= depth[b] for b in fp):
                        pick = (c, r)
                        break
                if pick:
                    break
            if pick is None:
                ok = False
                break
            layers.append(replace(k, oc_chunk=pick[0], sub_rows=pick[1]))
        if ok:
            resolved = ScheduleKnobs(tuple(layers), vt, resident, knobs.input_on_chip)
            try:
                check_fit(cfg, specs, resolved)
                return resolved
            except BufferFitError as err:
                last_err = err
    if last_err is not None:
        raise last_err
    fallback = ScheduleKnobs(tuple(LayerKnobs(1, 1 if i == len(specs) - 1 else None)
                                   for i in range(len(specs))), 1, resident, knobs.input_on_chip)
    check_fit(cfg, specs, fallback)
    return fallback
