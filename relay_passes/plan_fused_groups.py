"""PlanFusedGroups: group the packed VTA layers into fused groups that fit the scratchpads.

Matches:  the packed VTA ops of PackLayout's output (bctvm.qblock_conv2d, qmax_pool2d, qadd,
          qrelu with a packed layout), in graph (topological) order.
Produces: a FusedPlan (plain data, below) stored as JSON in the module attribute
          "bctvm.fused_plan"; the IR itself is unchanged. Partition and the schedules
          (issue 6) consume it; `bctvm plan` / `bctvm compile --plan` print `plan.table()`.
Requires: PackLayout.

Grouping (greedy, in graph order). A layer joins the open group when the board has
`onchip_reuse`, the layer iterates the same block grid (nh, nw) as the group, every input
it takes from a layer of the group has that grid too (same blocks: the handover stays on
chip), and the group's per-block working set still fits every buffer. Otherwise the group
closes and the layer opens the next one. Without `onchip_reuse` every layer is its own group.
An input a layer takes from outside the group must exist before the group starts (so the
group runs as one call). Policy "graph" (default) allows branches inside a group (a ResNet
downsample next to the conv it feeds); policy "chain" keeps groups to linear chains of convs,
each reading the previous one's output, residuals from DRAM or the group input (the shape
schedules.compile_group takes today).
A 2x2/2 max-pool (inside a conv or standalone) keeps the grid when the blocks have even
sides; ReLU and adds keep the grid of their input; any other pool works on the whole map
(grid 1x1). A layer's grid is (H/bh, W/bw) of its input map for its block (bh, bw); a 1x1
conv without padding (MobileNet's pointwise convs) computes the same on any grid and takes its
input's grid.
Tensors made on the host (the packed network input, a host stem's output) are DRAM inputs
and can be loaded on any grid.

This is the planning model; schedules/knobs.py has the schedule's own fit check with its
knobs (output-channel chunks, row sub-tiles, double buffering), and the lowering's SRAM
allocator is the exact one. A group this plan accepts may still need sub-tiling there.

Footprint model (per block; units are buffer ELEMENTS of the board: inp = BATCH x BLOCK_IN
int8, wgt = BLOCK_OUT x BLOCK_IN int8, acc = BATCH x BLOCK_OUT int32, out = BATCH x
BLOCK_OUT int8, uop = one 32-bit micro-op). Notation per layer: Nb batch tiles, Ti / To
input / output channel tiles, G' packed groups (Tig = Ti / G'), kernel kh x kw, dilation,
input block bh x bw, padding (pt, pl, pb, pr), conv-output block ch x cw =
(bh + pt + pb - dh (kh - 1)) x (...) before the optional pool, output block oh x ow.
The schedule this models runs the group's layers one after the other on one block, and
inside a layer one output-channel tile after the other:
- inp: every tensor a layer of the group reads has ONE copy in the input buffer, padded by
  the largest padding of its readers in the group: Nb x T x (bh + pt + pb) x (bw + pl + pr)
  at that tensor's block size. A group input is loaded from DRAM (LOAD pad fields give the
  zero border; replicate/reflect borders are on-chip edge copies of the same size); a
  tensor made inside the group is written OUT -> INP (`onchip_reuse`) tile by tile while
  its producer runs. A copy lives from its producer's step (or its first reader's step, for
  group inputs) to its last reader's step; inp = max over steps of the live copies. A
  residual shortcut is read from its copy by an identity GEMM.
- wgt: weights_resident when the whole group's weights, sum of To x Tig x kh x kw (+1
  identity tile for each pool/add/relu/residual layer), fit: loaded once for all blocks.
  Otherwise one output tile of the current layer at a time, max of Tig x kh x kw, reloaded
  for every block.
- acc: per layer, one output tile: Nb x (ch x cw [conv] + oh x ow [pooled result] + oh x ow
  [aligned residual]) + 1 [bias] + 1 [sign, if any]; pool: Nb x (bh x bw + oh x ow);
  add: Nb x 2 x bh x bw; relu: Nb x bh x bw. acc = max over the group's layers.
- out: the narrowed copy of the current output tile, Nb x oh x ow (it sits at the same
  indices as its accumulator, so it does not add to acc); out = max over layers.
- uop: the micro-op kernels of all layers stay resident: conv Tig x kh x kw GEMM micro-ops
  (spatial loops in the GEMM iteration fields) + ALU: bias 1, sign 1, pool 3, residual 3
  (identity GEMM, align, add), requantize 2 (1 for a left shift, 0 for none), clip 2;
  pool 1 identity GEMM + (kh kw - 1) MAX; add 2 identity GEMMs + 2 aligns + 1 ADD +
  requantize + 2 clip; relu 1 identity GEMM + 1 MAX. uop = sum over the group's layers.
A group fits when each footprint is <= the buffer depth (BoardConfig *_depth). A single
layer that does not fit on its own still forms a group, with `spills` naming the buffers
it overflows: its schedule must split the block into row strips through DRAM.

DRAM estimate per inference (bytes; what the schedules should reach, not a measurement):
group inputs loaded once (blocks partition the maps, no halo), group outputs stored once
(int8, channels padded), weights once when resident else once per block; classified
input/output when they come from/go to the host, feature_maps between VTA groups.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import tvm
from tvm import relax

from bctvm.errors import BadInputError
from boards import BoardConfig, load_board

from . import ops
from .base import BctvmPass
from .graph import bindings, users

PLAN_ATTR = "bctvm.fused_plan"
POLICIES = ("graph", "chain")
BUFFERS = ("inp", "wgt", "acc", "out", "uop")


@dataclass
class Footprint:
    """Per-block footprint in buffer elements (see the module docstring)."""

    inp: int = 0
    wgt: int = 0
    acc: int = 0
    out: int = 0
    uop: int = 0

    def over(self, cap: "Footprint") -> list[str]:
        """Buffers whose need exceeds `cap`."""
        return [b for b in BUFFERS if getattr(self, b) > getattr(cap, b)]


def capacity(board: BoardConfig) -> Footprint:
    """Buffer depths (elements) of a board."""
    return Footprint(inp=board.inp_depth, wgt=board.wgt_depth, acc=board.acc_depth,
                     out=board.out_depth, uop=board.uop_depth)


def element_bytes(board: BoardConfig) -> dict[str, int]:
    return {"inp": board.inp_elem_bytes, "wgt": board.wgt_elem_bytes,
            "acc": board.acc_elem_bytes, "out": board.out_elem_bytes,
            "uop": board.uop_elem_bytes}


@dataclass
class TensorInfo:
    """A packed int8 tensor of the VTA side: (Nb, T, H, W, b, c)."""

    name: str
    shape: tuple[int, ...]
    producer: str | None  # VTA layer name, or None (made on the host)
    grid: tuple[int, int] | None  # block grid (nh, nw) it was produced on
    consumers: list[str] = field(default_factory=list)  # VTA layer names
    host_use: bool = False  # read by a host op or returned
    position: int = -1  # index of the producing binding in main (-1: a parameter)

    @property
    def bytes(self) -> int:
        return math.prod(self.shape)

    def block(self, grid: tuple[int, int]) -> tuple[int, int]:
        return self.shape[2] // grid[0], self.shape[3] // grid[1]


@dataclass
class LayerInfo:
    """One VTA layer as the plan sees it (shapes packed, block at its input resolution)."""

    name: str
    kind: str  # conv | maxpool | add | relu
    inputs: list[str]  # tensor names (data first; conv residual last)
    output: str
    grid: tuple[int, int]
    block: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    kernel: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    pool: bool = False
    residual: bool = False
    has_sign: bool = False
    shift: int = 0
    in_tiles: int = 1
    out_tiles: int = 1
    packed_groups: int = 1
    batch_tiles: int = 1
    out_block: tuple[int, int] = (0, 0)
    out_grid: tuple[int, int] | None = None
    wgt_tile: int = 0  # weight elements of one output tile
    wgt_all: int = 0  # weight elements of the layer
    acc: int = 0
    out: int = 0
    uop: int = 0
    macs: int = 0  # multiply-accumulates of the layer (unpadded channels)
    position: int = 0  # index of the layer's binding in main


@dataclass
class FusedGroup:
    """Layers run block by block with their intermediates on chip."""

    index: int
    layers: list[str]
    grid: tuple[int, int]
    footprint: Footprint
    weights_resident: bool
    inputs: list[str]
    outputs: list[str]
    spills: list[str] = field(default_factory=list)
    dram_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return not self.spills

    @property
    def blocks(self) -> int:
        return self.grid[0] * self.grid[1]


@dataclass
class FusedPlan:
    """The fused-group plan of one model on one board (plain data, JSON round trip)."""

    board: str
    board_key: str
    onchip_reuse: bool
    capacity: Footprint
    element_bytes: dict[str, int]
    groups: list[FusedGroup]
    layers: dict[str, LayerInfo]
    tensors: dict[str, TensorInfo]
    host_layers: list[str] = field(default_factory=list)
    model: str = ""
    input_shape: tuple[int, ...] = ()

    def group_of(self, layer: str) -> FusedGroup:
        for g in self.groups:
            if layer in g.layers:
                return g
        raise KeyError(layer)

    def dram_bytes(self) -> dict[str, int]:
        """Estimated DRAM bytes per inference by kind, over all groups, with a total."""
        total: dict[str, int] = {"weights": 0, "input": 0, "output": 0, "feature_maps": 0}
        for g in self.groups:
            for k, v in g.dram_bytes.items():
                total[k] = total.get(k, 0) + v
        total["total"] = sum(total.values())
        return total

    # ---- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "FusedPlan":
        d = dict(d)
        d["capacity"] = Footprint(**d["capacity"])
        d["groups"] = [FusedGroup(**{**g, "footprint": Footprint(**g["footprint"]),
                                     "grid": tuple(g["grid"])}) for g in d["groups"]]
        d["layers"] = {k: LayerInfo(**_tuples(v)) for k, v in d["layers"].items()}
        d["tensors"] = {k: TensorInfo(**_tuples(v)) for k, v in d["tensors"].items()}
        d["input_shape"] = tuple(d.get("input_shape", ()))
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "FusedPlan":
        return cls.from_dict(json.loads(text))

    def table(self, verbose: bool = False, host_lines=None) -> str:
        from .plan_table import format_plan

        return format_plan(self, verbose, host_lines)


def _tuples(d: dict) -> dict:
    return {k: (tuple(v) if isinstance(v, list) and k not in ("inputs", "consumers") else v)
            for k, v in d.items()}


def plan_of(mod: tvm.IRModule) -> FusedPlan:
    """The FusedPlan stored in a module by PlanFusedGroups."""
    attrs = mod.attrs
    if attrs is None or PLAN_ATTR not in attrs.keys():
        raise KeyError("module has no fused-group plan (run PlanFusedGroups first)")
    return FusedPlan.from_json(str(attrs[PLAN_ATTR]))


# ---- per-layer analysis -------------------------------------------------------------------


_KIND = {ops.QBLOCK_CONV2D: "conv", ops.QMAX_POOL2D: "maxpool", ops.QADD: "add",
         ops.QRELU: "relu"}


def _requant_uops(shift: int) -> int:
    return 2 if shift > 0 else 1 if shift < 0 else 0


def _conv_layer(name, call, var, tensors) -> LayerInfo:
    a = ops.attrs_dict(call)
    ds, ws = ops.static_shape(call.args[0]), ops.static_shape(call.args[1])
    nb, ti, h, w = ds[0], ds[1], ds[2], ds[3]
    to, tig, kh, kw, bo, bi = ws
    bh, bw = a["block"]
    pt, pl, pb, pr = a["padding"]
    dh, dw = a["dilation"]
    sh, sw = a.get("strides", (1, 1))
    src = tensors[call.args[0]].grid
    if (kh, kw) == (1, 1) and not any(a["padding"]) and (sh, sw) == (1, 1) and src and \
            h % src[0] == 0 and w % src[1] == 0:
        bh, bw = h // src[0], w // src[1]  # a 1x1 conv without padding: any grid gives the
    grid = (h // bh, w // bw)              # same result, so it follows its input's grid
    ch = (bh + pt + pb - dh * (kh - 1) - 1) // sh + 1
    cw = (bw + pl + pr - dw * (kw - 1) - 1) // sw + 1
    oh, ow = (ch // 2, cw // 2) if a["pool"] else (ch, cw)
    aligned = not a["pool"] or (ch % 2 == 0 and cw % 2 == 0)
    residual = len(call.args) == 5
    inputs = [tensors[call.args[0]].name] + ([tensors[call.args[4]].name] if residual else [])
    acc = nb * (ch * cw + (oh * ow if a["pool"] else 0) + (oh * ow if residual else 0)) \
        + 1 + (1 if a["has_sign"] else 0)
    uop = tig * kh * kw + 1 + (1 if a["has_sign"] else 0) + (3 if a["pool"] else 0) \
        + (3 if residual else 0) + _requant_uops(a["shift"]) + 2
    out_h, out_w = ops.static_shape(var)[2:4]
    cg = a["in_channels"] // a["groups"]
    return LayerInfo(
        name=name, kind="conv", inputs=inputs, output=name, grid=grid, block=(bh, bw),
        padding=(pt, pl, pb, pr), kernel=(kh, kw), dilation=(dh, dw), strides=(sh, sw),
        pool=a["pool"], residual=residual, has_sign=a["has_sign"], shift=a["shift"],
        in_tiles=ti, out_tiles=to, packed_groups=a["packed_groups"], batch_tiles=nb,
        out_block=(oh, ow), out_grid=grid if aligned else None,
        wgt_tile=tig * kh * kw + (1 if residual else 0),
        wgt_all=to * tig * kh * kw + (1 if residual else 0), acc=acc, out=nb * oh * ow,
        uop=uop, macs=ds[0] * ds[4] * a["channels"] * out_h * out_w * cg * kh * kw
        * (4 if a["pool"] else 1))


def _neutral_layer(name, kind, call, var, tensors) -> LayerInfo:
    ins = [tensors[x] for x in call.args if isinstance(x, relax.Var)]
    s = ops.static_shape(call.args[0])
    nb, t, h, w = s[0], s[1], s[2], s[3]
    src = next((x.grid for x in ins if x.grid is not None), None) or (1, 1)
    a = ops.attrs_dict(call)
    if kind == "maxpool":
        kh, kw = a["pool_size"]
        sh, sw = a["strides"]
        bh, bw = h // src[0], w // src[1]
        aligned = (kh, kw) == (sh, sw) and not any(a["padding"]) and \
            a.get("dilation", (1, 1)) == (1, 1) and bh % sh == 0 and bw % sw == 0 and \
            h % src[0] == 0 and w % src[1] == 0
        grid = src if aligned else (1, 1)
        bh, bw = h // grid[0], w // grid[1]
        oh_all, ow_all = ops.static_shape(var)[2:4]
        oh, ow = oh_all // grid[0], ow_all // grid[1]
        acc, out = nb * (bh * bw + oh * ow), nb * oh * ow
        uop = 1 + (kh * kw - 1)
    else:
        grid = src if h % src[0] == 0 and w % src[1] == 0 else (1, 1)
        bh, bw = h // grid[0], w // grid[1]
        oh, ow = bh, bw
        if kind == "add":
            acc = nb * 2 * bh * bw
            uop = 2 + 2 + 1 + _requant_uops(a["shift"]) + 2
        else:
            acc = nb * bh * bw
            uop = 2
        out = nb * oh * ow
    return LayerInfo(
        name=name, kind=kind, inputs=[x.name for x in ins], output=name, grid=grid,
        block=(bh, bw), in_tiles=t, out_tiles=t, batch_tiles=nb, out_block=(oh, ow),
        out_grid=grid, shift=int(a.get("shift", 0)), wgt_tile=1, wgt_all=1, acc=acc,
        out=out, uop=uop)


def collect(func: relax.Function) -> tuple[list[LayerInfo], dict[str, TensorInfo], list[str]]:
    """VTA layers (in order), their tensors, and the integer layers left on the host."""
    tensors: dict = {}  # var -> TensorInfo
    layers: list[LayerInfo] = []
    host_layers: list[str] = []
    vta_vars: set = set()
    use = users(func)
    pos = {var: i for i, (var, _) in enumerate(bindings(func))}
    for var, value in bindings(func):
        name = ops.op_name(value)
        if name in ops.VTA_OPS:
            a = ops.attrs_dict(value)
            if not ops.is_packed(a["layout"]):
                host_layers.append(a["layer"])
                continue
            for arg in value.args:
                if isinstance(arg, relax.Var) and arg not in tensors:
                    tensors[arg] = TensorInfo(name=arg.name, shape=ops.static_shape(arg),
                                              producer=None, grid=None,
                                              position=pos.get(arg, -1))
            kind = _KIND[name]
            if kind == "conv":
                info = _conv_layer(a["layer"], value, var, tensors)
            else:
                info = _neutral_layer(a["layer"], kind, value, var, tensors)
            info.position = pos[var]
            tensors[var] = TensorInfo(name=info.name, shape=ops.static_shape(var),
                                      producer=info.name, grid=info.out_grid,
                                      position=pos[var])
            for arg in value.args:
                if isinstance(arg, relax.Var):
                    tensors[arg].consumers.append(info.name)
            layers.append(info)
            vta_vars.add(var)
    for var, t in tensors.items():
        for u in use.get(var, []):
            if u == "@return" or u not in vta_vars:
                t.host_use = True
    return layers, {t.name: t for t in tensors.values()}, host_layers


# ---- grouping and footprints --------------------------------------------------------------


def group_footprint(group: list[LayerInfo], tensors: dict[str, TensorInfo],
                    board: BoardConfig) -> tuple[Footprint, bool]:
    """Per-block footprint of running `group` block by block, and weights_resident."""
    grid = group[0].grid
    index = {layer.name: i for i, layer in enumerate(group)}
    spans: dict[str, list] = {}  # tensor -> [start, end, pt, pl, pb, pr]
    for i, layer in enumerate(group):
        for k, tname in enumerate(layer.inputs):
            t = tensors[tname]
            start = index.get(t.producer, i)
            pad = layer.padding if (layer.kind == "conv" and k == 0) else (0, 0, 0, 0)
            s = spans.setdefault(tname, [start, i, 0, 0, 0, 0])
            s[0] = min(s[0], start)
            s[1] = max(s[1], i)
            for j in range(4):
                s[2 + j] = max(s[2 + j], pad[j])
    live = [0] * len(group)
    for tname, (start, end, pt, pl, pb, pr) in spans.items():
        t = tensors[tname]
        bh, bw = t.shape[2] // grid[0], t.shape[3] // grid[1]
        size = t.shape[0] * t.shape[1] * (bh + pt + pb) * (bw + pl + pr)
        for i in range(start, end + 1):
            live[i] += size
    wgt_all = sum(layer.wgt_all for layer in group)
    resident = wgt_all <= board.wgt_depth
    fp = Footprint(
        inp=max(live),
        wgt=wgt_all if resident else max(layer.wgt_tile for layer in group),
        acc=max(layer.acc for layer in group),
        out=max(layer.out for layer in group),
        uop=sum(layer.uop for layer in group),
    )
    return fp, resident


def _joinable(group: list[LayerInfo], layer: LayerInfo, tensors) -> bool:
    """Same grid, on-chip handovers on that grid, and every other input made before the
    group starts (so the group can run as one call)."""
    if layer.grid != group[0].grid:
        return False
    names = {g.name for g in group}
    for tname in layer.inputs:
        t = tensors[tname]
        if t.producer in names:
            if t.grid != layer.grid:
                return False
        elif t.position >= group[0].position:
            return False
    return True


def _chain_joinable(group: list[LayerInfo], layer: LayerInfo, tensors) -> bool:
    """policy "chain": convs only, each reading the previous layer's output; a residual
    comes from DRAM or is the group's input."""
    if layer.kind != "conv" or group[-1].kind != "conv":
        return False
    if tensors[layer.inputs[0]].producer != group[-1].name:
        return False
    if layer.residual:
        res = tensors[layer.inputs[-1]]
        names = {g.name for g in group}
        if res.producer in names:
            return False
    return True


def make_groups(layers: list[LayerInfo], tensors: dict[str, TensorInfo],
                board: BoardConfig, policy: str = "graph") -> list[list[LayerInfo]]:
    """Greedy grouping in graph order (see the module docstring)."""
    cap = capacity(board)
    groups: list[list[LayerInfo]] = []
    for layer in layers:
        if groups and board.onchip_reuse and _joinable(groups[-1], layer, tensors) and \
                (policy == "graph" or _chain_joinable(groups[-1], layer, tensors)):
            fp, _ = group_footprint(groups[-1] + [layer], tensors, board)
            if not fp.over(cap):
                groups[-1].append(layer)
                continue
        groups.append([layer])
    return groups


def _dram(group: list[LayerInfo], tensors, board: BoardConfig, resident: bool,
          grid) -> tuple[list[str], list[str], dict[str, int]]:
    names = {layer.name for layer in group}
    inputs, outputs = [], []
    for layer in group:
        for tname in layer.inputs:
            if tensors[tname].producer not in names and tname not in inputs:
                inputs.append(tname)
        t = tensors[layer.output]
        if t.host_use or any(c not in names for c in t.consumers):
            outputs.append(layer.output)
    dram = {"weights": 0, "input": 0, "output": 0, "feature_maps": 0}
    for tname in inputs:
        t = tensors[tname]
        kind = "input" if t.producer is None else "feature_maps"
        dram[kind] += t.bytes
    for tname in outputs:
        t = tensors[tname]
        kind = "output" if not t.consumers or all(c in names for c in t.consumers) else \
            "feature_maps"
        dram[kind] += t.bytes
    wbytes = sum(layer.wgt_all for layer in group) * board.wgt_elem_bytes
    dram["weights"] = wbytes if resident else wbytes * grid[0] * grid[1]
    return inputs, outputs, dram


class PlanFusedGroups(BctvmPass):
    """Plan fused groups for a board; the plan is stored in the module (see docstring)."""

    def __init__(self, board: BoardConfig | str = "pynq", model: str = "",
                 policy: str = "graph"):
        self.board = load_board(board)
        self.model = model
        if policy not in POLICIES:
            raise BadInputError(f"grouping policy '{policy}' (choose {', '.join(POLICIES)})")
        self.policy = policy
        self.plan: FusedPlan | None = None

    def transform_module(self, mod: tvm.IRModule, ctx=None) -> tvm.IRModule:
        self.plan = self.make_plan(mod["main"])
        return mod.with_attr(PLAN_ATTR, self.plan.to_json())

    def make_plan(self, func: relax.Function) -> FusedPlan:
        b = self.board
        layers, tensors, host = collect(func)
        cap = capacity(b)
        groups = []
        for i, members in enumerate(make_groups(layers, tensors, b, self.policy)):
            fp, resident = group_footprint(members, tensors, b)
            inputs, outputs, dram = _dram(members, tensors, b, resident, members[0].grid)
            spills = [f"{buf} {getattr(fp, buf)}>{getattr(cap, buf)}" for buf in fp.over(cap)]
            groups.append(FusedGroup(
                index=i, layers=[m.name for m in members], grid=members[0].grid, footprint=fp,
                weights_resident=resident, inputs=inputs, outputs=outputs, spills=spills,
                dram_bytes=dram))
        shape = tuple(int(s) for s in func.params[0].ty.shape.values)
        return FusedPlan(board=b.name, board_key=b.key, onchip_reuse=b.onchip_reuse,
                         capacity=cap, element_bytes=element_bytes(b), groups=groups,
                         layers={m.name: m for m in layers}, tensors=tensors,
                         host_layers=host, model=self.model, input_shape=shape)
