"""PlanFusedGroups: group the packed VTA layers into fused groups that fit the scratchpads.

Matches:  the packed VTA ops of PackLayout's output (bctvm.qblock_conv2d, qmax_pool2d, qadd,
          qrelu with a packed layout), in graph (topological) order.
Produces: a FusedPlan (plain data, below) stored as JSON in the module attribute
          "bctvm.fused_plan"; the IR itself is unchanged. Partition and the schedules
          (issue 6) consume it; `bctvm plan` / `bctvm compile --plan` print `plan.table()`.
Requires: PackLayout.

Grouping (greedy, in graph order). A layer joins the open group when the board has
`onchip_reuse` and every input it takes from a layer of the group comes on a block grid that
nests with its own (schedules/grid_nest.py: the same blocks, or whole blocks of one grid
making one block of the other; the handover stays on chip); a layer reading no output of the
group needs the group's first grid. Otherwise the group closes and the layer opens the next one. Without `onchip_reuse`
every layer is its own group. An input a layer takes from outside the group must exist before
the group starts (so the group runs as one call). Policy "graph" (default) allows branches
inside a group (a ResNet downsample next to the conv it feeds); policy "chain" keeps groups
to linear chains of convs, each reading the previous one's output, residuals from DRAM or
the group input.
A 2x2/2 max-pool (inside a conv or standalone) keeps the grid when the blocks have even
sides; ReLU and adds keep the grid of their input; any other pool works on the whole map
(grid 1x1). A layer's grid is (H/bh, W/bw) of its input map for its block (bh, bw); a 1x1
conv without padding (MobileNet's pointwise convs) computes the same on any grid and takes its
input's grid.
Tensors made on the host (the packed network input, a host stem's output) are DRAM inputs
and can be loaded on any grid.

What fits the board is not decided here: these groups are graph structure. The compiler
(bctvm.compiler.plan.program_plan) cuts them into VTA programs and gives each its fit by the
one fit rule (bctvm.lower.fit: residual path, knobs, the SRAM allocator's footprint), then
replaces the plan's groups by those programs (FusedGroup.footprint / fit / cut set): that
plan is what `bctvm plan` prints and what the compile executes.

DRAM estimate per inference (bytes; program_plan fills it for the programs): group inputs
loaded once (blocks partition the maps, no halo), group outputs stored once (int8, channels
padded), weights once when resident else once per block; classified input/output when they
come from/go to the host, feature_maps between VTA groups.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import tvm
from tvm import relax

from bctvm.errors import BadInputError
from boards import BoardConfig, load_board
from schedules.grid_nest import nesting
from schedules.int_expr import block_geometry

from . import ops
from .base import BctvmPass
from .graph import bindings, users

PLAN_ATTR = "bctvm.fused_plan"
POLICIES = ("graph", "chain")
BUFFERS = ("inp", "wgt", "acc")


def capacity(board: BoardConfig) -> dict[str, int]:
    """Depths (elements) of the on-chip buffers a program's footprint counts."""
    return {"inp": board.inp_depth, "wgt": board.wgt_depth, "acc": board.acc_depth}


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
    wgt_all: int = 0  # weight elements of the layer
    macs: int = 0  # multiply-accumulates of the layer (unpadded channels)
    position: int = 0  # index of the layer's binding in main


@dataclass
class FusedGroup:
    """Layers run block by block with their intermediates on chip. After program planning
    (bctvm.compiler.plan) one group is one VTA program: `footprint` (peak elements per buffer,
    the SRAM allocator's), `fit` (bctvm.lower.fit.GroupFit.to_dict per program: residual path
    and resolved knobs) and `cut` (why it ends there, bctvm.compiler.segment.CUT_REASONS)."""

    index: int
    layers: list[str]
    grid: tuple[int, int]
    inputs: list[str]
    outputs: list[str]
    weights_resident: bool = False
    footprint: dict = field(default_factory=dict)
    fit: list = field(default_factory=list)
    cut: str = ""
    note: str = ""  # cycles measured when fusing was weighed against a split
    dram_bytes: dict[str, int] = field(default_factory=dict)
    grid_changes: list = field(default_factory=list)  # where the program's grid changes
    #   (bctvm.compiler.segment.grid_changes: after, before, kind, from, to)

    @property
    def blocks(self) -> int:
        return self.grid[0] * self.grid[1]


@dataclass
class FusedPlan:
    """The fused-group plan of one model on one board (plain data, JSON round trip)."""

    board: str
    board_key: str
    onchip_reuse: bool
    capacity: dict
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
        d["groups"] = [FusedGroup(**{**g, "grid": tuple(g["grid"])}) for g in d["groups"]]
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
    _, _, ch, cw = block_geometry(h, w, (bh, bw), (pt, pl, pb, pr), (kh, kw), (dh, dw),
                                  (sh, sw))
    oh, ow = (ch // 2, cw // 2) if a["pool"] else (ch, cw)
    aligned = not a["pool"] or (ch % 2 == 0 and cw % 2 == 0)
    residual = len(call.args) == 5
    inputs = [tensors[call.args[0]].name] + ([tensors[call.args[4]].name] if residual else [])
    out_h, out_w = ops.static_shape(var)[2:4]
    cg = a["in_channels"] // a["groups"]
    return LayerInfo(
        name=name, kind="conv", inputs=inputs, output=name, grid=grid, block=(bh, bw),
        padding=(pt, pl, pb, pr), kernel=(kh, kw), dilation=(dh, dw), strides=(sh, sw),
        pool=a["pool"], residual=residual, has_sign=a["has_sign"], shift=a["shift"],
        in_tiles=ti, out_tiles=to, packed_groups=a["packed_groups"], batch_tiles=nb,
        out_block=(oh, ow), out_grid=grid if aligned else None,
        wgt_all=to * tig * kh * kw + (1 if residual else 0), macs=ds[0] * ds[4] * a["channels"] * out_h * out_w * cg * kh * kw
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
    else:
        grid = src if h % src[0] == 0 and w % src[1] == 0 else (1, 1)
        bh, bw = h // grid[0], w // grid[1]
        oh, ow = bh, bw
    return LayerInfo(
        name=name, kind=kind, inputs=[x.name for x in ins], output=name, grid=grid,
        block=(bh, bw), in_tiles=t, out_tiles=t, batch_tiles=nb, out_block=(oh, ow),
        out_grid=grid, shift=int(a.get("shift", 0)), wgt_all=1)


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


def _joinable(group: list[LayerInfo], layer: LayerInfo, tensors) -> bool:
    """On-chip handovers on grids that nest (schedules/grid_nest.py: the same blocks, or
    several output blocks collected into one), and every other input made before the group
    starts (so the group can run as one call)."""
    names = {g.name for g in group}
    for tname in layer.inputs:
        t = tensors[tname]
        if t.producer in names:
            if t.grid is None or nesting(t.block(t.grid), layer.block) is None:
                return False
        elif t.position >= group[0].position:
            return False
    return any(tensors[t].producer in names for t in layer.inputs) or \
        layer.grid == group[0].grid


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
    groups: list[list[LayerInfo]] = []
    for layer in layers:
        if groups and board.onchip_reuse and _joinable(groups[-1], layer, tensors) and \
                (policy == "graph" or _chain_joinable(groups[-1], layer, tensors)):
            groups[-1].append(layer)
            continue
        groups.append([layer])
    return groups


def group_dram(group: list[LayerInfo], tensors, board: BoardConfig, resident: bool,
               grid) -> tuple[list[str], list[str], dict[str, int]]:
    """(input tensors, output tensors, estimated DRAM bytes by kind) of a group run block by
    block on `grid`, its weights read once (`resident`) or once per block."""
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
        groups = []
        for i, members in enumerate(make_groups(layers, tensors, b, self.policy)):
            inputs, outputs, dram = group_dram(members, tensors, b, True, members[0].grid)
            groups.append(FusedGroup(index=i, layers=[m.name for m in members],
                                     grid=members[0].grid, inputs=inputs, outputs=outputs,
                                     dram_bytes=dram))
        shape = tuple(int(s) for s in func.params[0].ty.shape.values)
        return FusedPlan(board=b.name, board_key=b.key, onchip_reuse=b.onchip_reuse,
                         capacity=capacity(b), element_bytes=element_bytes(b), groups=groups,
                         layers={m.name: m for m in layers}, tensors=tensors,
                         host_layers=host, model=self.model, input_shape=shape)
