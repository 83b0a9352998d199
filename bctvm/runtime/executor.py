"""Run an artifact: the host library on the Relax VM, each VTA group on a board.

    runner = ModelRunner(load_artifact(dir), board=None)   # None: the simulator of the
    res = runner.run(x)                                    # artifact's board
    res.output, res.boundary, res.groups

The host library calls group i as the packed function "bctvm.vta.<key>.g<i>" (destination
passing: inputs..., output). The runner registers those names: copy the group's DRAM template,
write each input tensor (packed int8, NCHW{b}n{c}c) into its regions, run the group's
instruction streams in order on the board, read the output region. Nothing is generated at
run time. Per group and call it records cycles and DRAM bytes by kind (the simulator's
per-region counters, classified by the manifest).

Errors inside a group call: TVM 0.27's FFI turns any Python exception raised in a registered
function (KeyboardInterrupt included) into a RuntimeError carrying only the message. So the
group function catches it, adds the group, the program file and the artifact to a
BctvmError's message, stashes the exception and lets the FFI unwind; `run` re-raises the
stashed exception itself (same class, exit code and traceback) once the VM call returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from bctvm.errors import BadInputError, BctvmError

from .artifact import Artifact
from .board import Board, SimulatorBoard
from .energy import onchip_bytes

KINDS = ("weights", "input", "output", "feature_maps", "uops")


@dataclass
class GroupStats:
    name: str
    layers: list
    cycles: int = 0
    dram_bytes: dict = field(default_factory=dict)
    macs: int = 0
    sram_bytes: int = 0  # on-chip buffer bytes read + written (energy.onchip_bytes)
    calls: int = 0


@dataclass
class RunResult:
    output: list  # float32 arrays, the model's outputs
    boundary: np.ndarray  # int8 NCHW, the tensor entering the host head
    groups: list  # GroupStats, in run order
    board_kind: str = "simulator"  # Board.kind of the board that ran the VTA groups

    @property
    def cycles(self) -> int:
        return sum(g.cycles for g in self.groups)


class ModelRunner:
    """Loads the host library and registers the artifact's VTA groups (module docstring)."""

    def __init__(self, artifact: Artifact, board: Board | None = None):
        self.art = artifact
        self.board = board or SimulatorBoard(artifact.cfg)
        if self.board.cfg.key != artifact.cfg.key:
            raise BadInputError(f"artifact {artifact.path} was compiled for board "
                                f"'{artifact.cfg.name}' ({artifact.cfg.key}); this board is "
                                f"'{self.board.cfg.name}' ({self.board.cfg.key})")
        self._stats: dict[str, GroupStats] = {}
        self._faults: list[BaseException] = []  # exceptions raised inside group calls
        self._groups = []
        for g in artifact.groups:
            self._groups.append(_GroupRunner(artifact, g, self.board, self._stats, self._faults))
            tvm.register_global_func(g["function"], self._groups[-1], override=True)
        try:
            lib = tvm.runtime.load_module(str(artifact.file(artifact.manifest["host_library"])))
        except Exception as err:  # a truncated or foreign .so
            raise BadInputError(f"artifact {artifact.path}: cannot load the host library "
                                f"({str(err).splitlines()[0]})") from None
        self.vm = relax.VirtualMachine(lib, tvm.cpu())

    def check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        want = self.art.input_shape()
        if x.dtype != np.float32:
            raise BadInputError(f"input must be float32 NCHW {want}, got {x.dtype}")
        if tuple(x.shape) != want:
            raise BadInputError(f"input must be float32 NCHW {want}, got shape {tuple(x.shape)}")
        if not np.isfinite(x).all():
            raise BadInputError("input holds NaN or infinite values; it must be finite")
        return np.ascontiguousarray(x)

    def run(self, x) -> RunResult:
        x = self.check_input(x)
        self._stats.clear()
        self._faults.clear()
        try:
            out = self.vm["main"](tvm.runtime.tensor(x))
        except BaseException:
            if self._faults:  # the FFI's RuntimeError stands for the stashed exception
                raise self._faults[0].with_traceback(self._faults[0].__traceback__) from None
            raise
        if self._faults:
            raise self._faults[0]
        fields = [out[i].numpy() for i in range(len(out))]
        order = [self._stats[g["name"]] for g in self.art.groups if g["name"] in self._stats]
        return RunResult(fields[:-1], fields[-1], order, self.board.kind)


class _GroupRunner:
    """The packed function of one group: inputs..., output (destination passing)."""

    def __init__(self, art: Artifact, group: dict, board: Board, stats: dict, faults: list):
        self.group = group
        self.board = board
        self.stats = stats
        self.faults = faults
        self.where = f"artifact {art.path}, group {group['name']}"
        self.files = [p["file"] for p in group["programs"]]
        self.template = art.template(group)
        self.programs = art.programs(group)
        self.layout = art.layout(group)
        self.regions = self.layout.region_map()

    def __call__(self, *args):
        self.current = None  # program file running, for error messages
        try:
            self._call(*args)
        except BaseException as err:  # stashed for ModelRunner.run (module docstring)
            if isinstance(err, BctvmError):
                prog = f", program {self.current}" if self.current else ""
                err.args = (f"{self.where}{prog} on the {self.board.kind} board: {err}",)
            self.faults.append(err)
            raise

    def _call(self, *args):
        *inputs, out = args
        g = self.group
        img = self.template.copy()
        for arg, regions in zip(inputs, g["args"]):
            a = arg.numpy()
            for region in regions:
                self.layout.write(img, region, a)
        st = self.stats.setdefault(g["name"], GroupStats(g["name"], list(g["layers"])))
        for fname, prog in zip(self.files, self.programs):
            self.current = fname
            res = self.board.run(prog, img, self.regions)
            img = res.dram
            st.cycles += res.cycles
            c = res.counters
            by = st.dram_bytes
            for direction in ("region_read_bytes", "region_write_bytes"):
                for name, b in c.get(direction, {}).items():
                    # bytes outside every named region are "other" (a lowering bug if any)
                    kind = self.layout.kind_of(name) if name in self.regions else "other"
                    by[kind] = by.get(kind, 0) + int(b)
            by["instructions"] = by.get("instructions", 0) + int(c.get("insn_bytes", 0))
            st.macs += int(c.get("macs", 0))
            st.sram_bytes += onchip_bytes(c, self.board.cfg)
        st.calls += 1
        out.copyfrom(self.layout.read(img, "out"))
