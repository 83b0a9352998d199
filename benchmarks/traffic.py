"""DRAM traffic, cycles and GEMM utilisation of whole models, fused vs layerwise, per board.

For each (model, board, mode) the script compiles the model (bctvm.compiler.compile_model),
runs it once on the simulator board with a fixed-seed float32 NCHW input, checks the run
bit-exact against the integer reference (a loud FAIL line otherwise) and prints one table:

    groups      VTA groups (programs run per inference)
    weights .. instr   DRAM bytes by kind, read + written (runtime report, design.md)
    total, xLB  total DRAM bytes and its ratio to the lower bound (weights once + network
                input + network output, packed int8, channels padded to the block)
    cycles, ms  VTA cycles (sum over the programs, host ops excluded) and latency at the
                board clock
    util        GEMM utilisation = MACs / (cycles x batch x block_in x block_out)
    onchip      bytes moved OUT -> INP on chip (onchip_reuse loads; 0 on stock boards)
    comp s, sim s   wall seconds of compile_model and of ModelRunner.run (this machine)

then where the cycles go (busy fraction per module), a compute-bound ceiling per VTA program
(the cycles of its GEMM and ALU micro-ops and pipeline fills alone, `compute_bound`, and the
GEMM utilisation that floor allows: what remains when every load and store is hidden), and a
"targets" block computed from the rows of this run, each marked met / not met.

Feature-map bytes: the report's feature_maps kind counts group *boundaries* through DRAM.
Inside a fused group the intermediate layers go OUT -> INP on chip, so the group's DRAM
regions are only data / weights / out / residual / uops; a group compiled layer by layer has
regions "fm<i>" (kind feature_maps, no model tensor) for its internal hand-overs. The script
counts the simulator's per-region bytes on those internal regions ("fm in grp"), and also
any traffic outside every named region (which the report would miss).

    python benchmarks/traffic.py                                  # block_resnet18, 224, all boards
    python benchmarks/traffic.py --models block_mobilenet,block_vgg16 --boards zcu102
    python benchmarks/traffic.py --modes fused --input-size 64 --block-size 16 --json rows.json
    python benchmarks/traffic.py --boards zcu102 --sweep sweep.png    # + DRAM-bandwidth sweep

DRAM-bandwidth sweep (`--sweep PNG`): every (model, board) compiled in both modes is run again
on simulator boards whose DRAM bus is the board's width x 1, 1/2, 1/4 and 1/8 (a board-config
override of log_bus_width: the same programs, only the cycle model's bytes per cycle change),
printing fused and layerwise cycles and their ratio, and plotting them (matplotlib) into PNG:
where keeping blocks on chip pays in latency, not only in bytes.
The sweep also prints the fused floor: per program max(compute-bound cycles, DRAM port busy
cycles), summed (perfect overlap inside each program), against the layerwise cycles.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODES = ("fused", "layerwise")
KIND_COLUMNS = (("weights", "weights"), ("input", "input"), ("output", "output"),
                ("feature_maps", "fmaps"), ("uops", "uops"), ("instructions", "instr"))

# targets of the issue (ratios and seconds; not hardware numbers)
TARGET_DRAM_VS_LB = 1.05
TARGET_FUSED_CYCLE_RATIO = 0.67
TARGET_GEMM_UTIL = 0.8
TARGET_COMPILE_S = 60.0
TARGET_SIM_S = 30.0
TIMED_MODEL, TIMED_SIZE = "block_resnet18", 224


# ---- a simulator board that keeps the counters the report does not ---------------------------
def measuring_board(cfg):
    """The simulator behind the runtime's Board interface (what SimulatorBoard does), also
    summing over every program it runs: bytes read + written per DRAM region name, bytes
    outside every named region, on-chip OUT -> INP bytes, GEMM / ALU micro-ops and the busy
    cycles of each module and of the DRAM port."""
    from bctvm.runtime import Board, BoardRun
    from bctvm.sim import Simulator

    class MeasuringBoard(Board):
        kind = "simulator"

        def __init__(self, cfg):
            self.cfg = cfg
            self._sim = Simulator(cfg)
            self.region_bytes: dict[str, int] = {}
            self.unattributed_bytes = 0
            self.totals = {"onchip_reuse_bytes": 0, "gemm_uops": 0, "alu_uops": 0,
                           "dram_port_busy": 0}
            self.busy: dict[str, int] = {}
            self.programs: list[dict] = []  # per program run: compute_bound() figures

        def run(self, program, dram, regions):
            res = self._sim.run(program, dram, regions=regions, progress=False)
            c = res.counters
            self.programs.append({"cycles": int(res.cycles), "macs": int(c["macs"]),
                                  "compute_busy": int(res.module_busy_cycles["compute"]),
                                  "port": int(res.dram_port_busy_cycles),
                                  **compute_bound(program, self.cfg)})
            attributed = 0
            for direction in ("region_read_bytes", "region_write_bytes"):
                for name, b in c.get(direction, {}).items():
                    self.region_bytes[name] = self.region_bytes.get(name, 0) + int(b)
                    if name in regions:
                        attributed += int(b)
            moved = int(c["dram_read_total"]) + int(c["dram_write_bytes"])
            self.unattributed_bytes += moved - attributed
            for k in ("onchip_reuse_bytes", "gemm_uops", "alu_uops"):
                self.totals[k] += int(c[k])
            self.totals["dram_port_busy"] += int(res.dram_port_busy_cycles)
            for m, b in res.module_busy_cycles.items():
                self.busy[m] = self.busy.get(m, 0) + int(b)
            return BoardRun(res.dram, int(res.cycles), dict(c))

    return MeasuringBoard(cfg)


def compute_bound(program, cfg) -> dict:
    """The arithmetic a program's compute module cannot avoid under the cycle model: GEMM
    micro-op cycles, ALU micro-op cycles (immediate / tile operand) and one pipeline fill per
    GEMM/ALU instruction (bctvm.sim.timing's costs of each instruction, no loads, no waits).
    `arith` is their sum: with the DRAM traffic fully hidden the program still takes that
    long, so MACs / (arith x MACs per cycle) is the GEMM utilisation it can reach."""
    from bctvm.isa import Opcode
    from bctvm.sim.program_table import to_rows
    from bctvm.sim.timing import CycleModel

    cm, t = CycleModel(cfg), cfg.timing
    out = {"gemm": 0, "alu": 0, "fills": 0}
    for row in to_rows(program, cfg):
        n = row.iter_out * row.iter_in * (row.uop_end - row.uop_bgn)
        if row.opcode == Opcode.GEMM:
            out["gemm"] += cm.gemm_cycles(n) - t.pipeline_fill_cycles
        elif row.opcode == Opcode.ALU:
            out["alu"] += cm.alu_cycles(n, row.use_imm) - t.pipeline_fill_cycles
        else:
            continue
        out["fills"] += t.pipeline_fill_cycles
    out["arith"] = out["gemm"] + out["alu"] + out["fills"]
    return out


def ceiling_table(rows: list[Row]) -> str:
    """Per program: cycles, its compute-bound floor (compute_bound: GEMM + ALU + fills) and
    the GEMM utilisation measured vs the one that floor allows; one total line per row."""
    from boards import load_board

    head = ["model", "board", "mode", "prog", "cycles", "gemm", "alu", "fills", "arith",
            "port", "stall", "util", "ceiling"]
    body = []
    for r in rows:
        if r.error:
            continue
        per = load_board(r.board).gemm_macs_per_cycle
        progs = r.work.get("programs", [])
        total = {k: sum(p[k] for p in progs) for k in ("cycles", "macs", "gemm", "alu",
                                                        "fills", "arith", "port")}
        for name, p in [*((f"p{i}", p) for i, p in enumerate(progs)), ("all", total)]:
            body.append([r.model, r.board, r.mode, name, f"{p['cycles']:,}", f"{p['gemm']:,}",
                         f"{p['alu']:,}", f"{p['fills']:,}", f"{p['arith']:,}",
                         f"{p['port']:,}", f"{p['cycles'] - p['arith']:,}",
                         f"{p['macs'] / max(1, p['cycles'] * per):.3f}",
                         f"{p['macs'] / max(1, p['arith'] * per):.3f}"])
    return _columns(head, body)


def internal_fm_regions(manifest: dict) -> set[str]:
    """Region names that hold a feature map inside a group (kind feature_maps, no tensor of
    the model: the "fm<i>" hand-overs of a group compiled layer by layer)."""
    return {n for g in manifest["groups"] for n, r in g["regions"].items()
            if r["kind"] == "feature_maps" and "tensor" not in r}


def group_feature_maps(manifest: dict, report: dict) -> list[dict]:
    """Per group: feature-map bytes the report measured (read + written) and the bytes of the
    group's feature-map regions (its boundary tensors, plus any internal "fm<i>"). Equal
    means every feature-map region was moved exactly once: nothing else crossed DRAM."""
    measured = {g["name"]: g["dram_bytes"]["feature_maps"] for g in report["groups"]}
    out = []
    for g in manifest["groups"]:
        regions = sum(r["nbytes"] for r in g["regions"].values() if r["kind"] == "feature_maps")
        out.append({"group": g["name"], "layers": len(g["layers"]),
                    "measured_bytes": int(measured.get(g["name"], 0)), "region_bytes": regions})
    return out


# ---- one measurement --------------------------------------------------------------------------
@dataclass
class Row:
    model: str
    board: str
    mode: str
    size: int
    report: dict = field(default_factory=dict)
    compile_s: float = 0.0
    sim_s: float = 0.0
    validate_s: float = 0.0
    compile_breakdown: dict = field(default_factory=dict)
    internal_fm_bytes: int = 0
    unattributed_bytes: int = 0
    onchip_bytes: int = 0
    work: dict = field(default_factory=dict)  # gemm/alu micro-ops, busy cycles per module
    group_fm: list = field(default_factory=list)  # per group: fm bytes moved vs its regions
    multi_layer_groups: int = 0
    internal_fm_region_count: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.report.get("validation", {}).get("bit_exact"))

    def to_json(self) -> dict:
        return {"model": self.model, "board": self.board, "mode": self.mode,
                "input_size": self.size, "compile_seconds": round(self.compile_s, 2),
                "compile_breakdown": self.compile_breakdown, "sim_seconds": round(self.sim_s, 2),
                "validate_seconds": round(self.validate_s, 2),
                "internal_feature_map_bytes": self.internal_fm_bytes,
                "unattributed_bytes": self.unattributed_bytes,
                "onchip_reuse_bytes": self.onchip_bytes, "work": self.work,
                "multi_layer_groups": self.multi_layer_groups, "group_feature_maps": self.group_fm,
                "internal_feature_map_regions": self.internal_fm_region_count,
                "error": self.error or None, "report": self.report}


def artifact_path(out_root: Path, model: str, board: str, mode: str, size: int) -> Path:
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(model)).name)
    return out_root / f"{tag}-{board}-{mode}-{size}"


def measure(model: str, board: str, mode: str, size: int, block_size, out_root: Path,
            seed: int, progress: bool, block_type=None) -> Row:
    """Compile, run once, report and validate one (model, board, mode)."""
    from bctvm.compiler import compile_model
    from bctvm.runtime import ModelRunner, build_report, load_artifact

    row = Row(model, board, mode, size)
    out = artifact_path(out_root, model, board, mode, size)
    try:
        t0 = time.perf_counter()
        manifest = compile_model(model, out_dir=out, board=board, mode=mode,
                                 input_shape=(1, 3, size, size), block_size=block_size,
                                 block_type=block_type, progress=progress)
        row.compile_s = time.perf_counter() - t0
        row.compile_breakdown = manifest["compile_seconds"]
        art = load_artifact(out)
        shape = art.input_shape()
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        board_obj = measuring_board(art.cfg)
        runner = ModelRunner(art, board=board_obj)
        t0 = time.perf_counter()
        res = runner.run(x)
        row.sim_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        row.report = build_report(art, res, x)
        row.validate_s = time.perf_counter() - t0
        internal = internal_fm_regions(art.manifest)
        row.internal_fm_region_count = sum(
            1 for g in art.groups for n in g["regions"] if n in internal)
        row.internal_fm_bytes = sum(b for n, b in board_obj.region_bytes.items() if n in internal)
        row.unattributed_bytes = board_obj.unattributed_bytes
        row.onchip_bytes = board_obj.totals["onchip_reuse_bytes"]
        row.work = {**board_obj.totals, "module_busy": board_obj.busy,
                    "programs": board_obj.programs}
        row.multi_layer_groups = sum(1 for g in art.groups if len(g["layers"]) > 1)
        row.group_fm = group_feature_maps(art.manifest, row.report)
    except Exception as err:  # report it verbatim and go on with the other rows
        row.error = f"{type(err).__name__}: {err}"
        traceback.print_exc(file=sys.stderr)
    return row


# ---- DRAM-bandwidth sweep ---------------------------------------------------------------------
BUS_FRACTIONS = (1, 2, 4, 8)  # the board's bus width divided by these


def bus_override(cfg, divisor: int):
    """The board with its DRAM bus `divisor` times narrower (a power of two)."""
    import dataclasses

    shift = divisor.bit_length() - 1
    if 1 << shift != divisor or cfg.log_bus_width - shift < 3:
        raise ValueError(f"bus divisor {divisor}: a power of two leaving at least 8 bits")
    return dataclasses.replace(cfg, log_bus_width=cfg.log_bus_width - shift)


def sweep_cycles(artifact_dir: Path, seed: int) -> dict[int, tuple[int, int]]:
    """{divisor: (cycles, floor)} of one compiled artifact run on the bus-narrowed boards;
    floor = the sum over its programs of max(compute-bound cycles, DRAM port busy cycles):
    what the programs would take with perfect overlap inside each (programs run one after
    the other, so one's idle port cannot serve the next)."""
    from bctvm.runtime import ModelRunner, load_artifact

    art = load_artifact(artifact_dir)
    x = np.random.default_rng(seed).standard_normal(art.input_shape()).astype(np.float32)
    out = {}
    for d in BUS_FRACTIONS:
        board = measuring_board(bus_override(art.cfg, d))
        cycles = int(ModelRunner(art, board=board).run(x).cycles)
        out[d] = (cycles, sum(max(p["arith"], p["port"]) for p in board.programs))
    return out


def bandwidth_sweep(rows: list[Row], out_root: Path, seed: int) -> list[dict]:
    """Sweep rows: per (model, board) with both modes measured and per bus fraction, the
    bus bits, fused and layerwise cycles."""
    from boards import load_board

    by = {(r.model, r.board, r.mode): r for r in rows if not r.error}
    out = []
    for (m, b, mode), r in by.items():
        if mode != "fused" or (m, b, "layerwise") not in by:
            continue
        cyc = {md: sweep_cycles(artifact_path(out_root, m, b, md, r.size), seed)
               for md in MODES}
        bits = load_board(b).bus_bytes * 8
        for d in BUS_FRACTIONS:
            out.append({"model": m, "board": b, "bus_fraction": f"1/{d}" if d > 1 else "1",
                        "bus_bits": bits // d, "fused": cyc["fused"][d][0],
                        "layerwise": cyc["layerwise"][d][0],
                        "ratio": cyc["fused"][d][0] / cyc["layerwise"][d][0],
                        "fused_floor": cyc["fused"][d][1],
                        "floor_ratio": cyc["fused"][d][1] / cyc["layerwise"][d][0]})
    return out


def sweep_table(sweep: list[dict]) -> str:
    head = ["model", "board", "bus", "bus bits", "fused cycles", "layerwise cycles",
            "fused/layerwise", "fused floor", "floor/layerwise"]
    body = [[s["model"], s["board"], s["bus_fraction"], str(s["bus_bits"]), f"{s['fused']:,}",
             f"{s['layerwise']:,}", f"{s['ratio']:.3f}", f"{s['fused_floor']:,}",
             f"{s['floor_ratio']:.3f}"] for s in sweep]
    return _columns(head, body)


def sweep_plot(sweep: list[dict], path: str) -> None:
    """Fused and layerwise cycles against the bus width (log2 axis), one panel per
    (model, board)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys((s["model"], s["board"]) for s in sweep))
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, (m, b) in zip(axes[0], keys):
        pts = [s for s in sweep if (s["model"], s["board"]) == (m, b)]
        bits = [s["bus_bits"] for s in pts]
        for mode, style in (("fused", "o-"), ("layerwise", "s--")):
            ax.plot(bits, [s[mode] / 1e6 for s in pts], style, label=mode)
        ax.set_xscale("log", base=2)
        ax.set_xticks(bits, [str(v) for v in bits])
        ax.set_xlabel("DRAM bus width (bits)")
        ax.set_ylabel("VTA cycles (millions)")
        ax.set_title(f"{Path(m).stem} on {b}")
        for s in pts:
            ax.annotate(f"{s['ratio']:.2f}x", (s["bus_bits"], s["fused"] / 1e6),
                        textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
        ax.legend()
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- printing ---------------------------------------------------------------------------------
def fmt_bytes(n: int) -> str:
    if n == 0:
        return "0"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f}M"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f}K"
    return f"{n}B"


def table(rows: list[Row]) -> str:
    head = ["model", "board", "mode", "groups", *(c for _, c in KIND_COLUMNS), "total", "xLB",
            "cycles", "ms", "util", "onchip", "fm in grp", "comp s", "sim s", "check"]
    body = []
    for r in rows:
        if r.error:
            body.append([r.model, r.board, r.mode, "-", *(["-"] * (len(head) - 5)), "ERROR"])
            continue
        rep, b = r.report, r.report["dram_bytes"]
        body.append([
            r.model, r.board, r.mode, str(len(rep["groups"])),
            *(fmt_bytes(b[k]) for k, _ in KIND_COLUMNS), fmt_bytes(b["total"]),
            f"{rep['dram_vs_lower_bound']:.3f}", f"{rep['cycles']:,}", f"{rep['latency_ms']:.2f}",
            f"{rep['gemm_utilisation']:.3f}", fmt_bytes(r.onchip_bytes),
            fmt_bytes(r.internal_fm_bytes), f"{r.compile_s:.1f}", f"{r.sim_s:.1f}",
            "ok" if r.ok else "FAIL"])
    return _columns(head, body)


def cycle_table(rows: list[Row]) -> str:
    """Where the cycles go: busy cycles of each module and of the DRAM port, GEMM and ALU
    micro-ops, each as a fraction of the run's cycles (modules overlap, so they need not sum
    to 1)."""
    head = ["model", "board", "mode", "cycles", "compute", "gemm uops", "alu uops", "load",
            "store", "dram port"]
    body = []
    for r in rows:
        if r.error:
            continue
        cyc = max(1, r.report["cycles"])
        busy = r.work["module_busy"]
        body.append([r.model, r.board, r.mode, f"{r.report['cycles']:,}",
                     *(f"{v / cyc:.2f}" for v in (busy.get("compute", 0), r.work["gemm_uops"],
                                                   r.work["alu_uops"], busy.get("load", 0),
                                                   busy.get("store", 0),
                                                   r.work["dram_port_busy"]))])
    return _columns(head, body)


def _columns(head: list[str], body: list[list[str]]) -> str:
    width = [max(len(h), *(len(line[i]) for line in body)) if body else len(h)
             for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, width)))

    return "\n".join([line(head), line(["-" * w for w in width]), *map(line, body)])


def largest_board(names: list[str]) -> str:
    """The board with the most on-chip buffer bytes (ties: the widest GEMM)."""
    from boards import load_board

    def size(n):
        c = load_board(n)
        buffers = c.inp_buff_bytes + c.wgt_buff_bytes + c.acc_buff_bytes + c.uop_buff_bytes
        return buffers, c.batch * c.block_in * c.block_out

    return max(names, key=size)


def targets(rows: list[Row]) -> list[dict]:
    """The issue's targets, computed from the measured rows: [{target, value, met}]."""
    good = [r for r in rows if not r.error]
    out = []

    def add(target, value, met):
        out.append({"target": target, "value": value, "met": met})

    if not good:
        return out
    by = {(r.model, r.board, r.mode): r for r in good}
    models = list(dict.fromkeys(r.model for r in good))
    boards = list(dict.fromkeys(r.board for r in good))

    # 1. no feature-map bytes inside groups (per-region simulator counters)
    inside = sum(r.internal_fm_bytes for r in good)
    regions = sum(r.internal_fm_region_count for r in good)
    fused_multi = sum(r.multi_layer_groups for r in good if r.mode == "fused")
    add("feature-map bytes inside groups = 0",
        f"{inside} B measured on {regions} internal fm regions over {len(good)} runs; "
        f"{fused_multi} multi-layer fused groups hand over on chip (the 'fmaps' column is "
        f"group-boundary traffic)", inside == 0)
    fused = [(r, g) for r in good if r.mode == "fused" for g in r.group_fm if g["layers"] > 1]
    once = sum(1 for _, g in fused if g["measured_bytes"] == g["region_bytes"])
    worst = max(fused, key=lambda rg: rg[1]["measured_bytes"] / max(1, rg[1]["region_bytes"]),
                default=None)
    if worst:
        r, g = worst
        add("multi-layer fused groups move each boundary feature map once",
            f"{once} of {len(fused)} groups exactly once; most: {r.model} {r.board} "
            f"{g['group']} {g['measured_bytes'] / max(1, g['region_bytes']):.2f}x its "
            f"feature-map regions", once == len(fused))
    unattributed = sum(r.unattributed_bytes for r in good)
    add("every DRAM byte the simulator moved is in a named region (so in the report)",
        f"{unattributed} B outside all regions", unattributed == 0)

    big = largest_board(boards)
    for m in models:
        # 2. DRAM vs lower bound on the largest board (its best mode: fused)
        r = by.get((m, big, "fused")) or by.get((m, big, "layerwise"))
        if r:
            v = r.report["dram_vs_lower_bound"]
            add(f"{m}: total DRAM <= {TARGET_DRAM_VS_LB}x lower bound on {big} ({r.mode})",
                f"{v:.3f}x ({fmt_bytes(r.report['dram_bytes']['total'])} vs "
                f"{fmt_bytes(r.report['lower_bound_bytes'])})", v <= TARGET_DRAM_VS_LB)
        # 3. fused cycles vs layerwise, per board
        for b in boards:
            f, lw = by.get((m, b, "fused")), by.get((m, b, "layerwise"))
            if f and lw:
                ratio = f.report["cycles"] / lw.report["cycles"]
                note = "" if f.report["onchip_reuse"] else " (no onchip_reuse: fused = layerwise)"
                add(f"{m}: fused cycles <= {TARGET_FUSED_CYCLE_RATIO}x layerwise on {b}",
                    f"{ratio:.3f}x ({f.report['cycles']:,} / {lw.report['cycles']:,}){note}",
                    ratio <= TARGET_FUSED_CYCLE_RATIO)
        # 4. GEMM utilisation, per board (every measured mode)
        for b in boards:
            util = {mode: by[(m, b, mode)].report["gemm_utilisation"] for mode in MODES
                    if (m, b, mode) in by}
            if util:
                add(f"{m}: GEMM utilisation >= {TARGET_GEMM_UTIL} on {b}",
                    ", ".join(f"{mode} {u:.3f}" for mode, u in util.items()),
                    min(util.values()) >= TARGET_GEMM_UTIL)
    # 5. compile and simulation time of block_resnet18 at 224 (wall, this machine)
    timed = [r for r in good if Path(r.model).stem == TIMED_MODEL and r.size == TIMED_SIZE]
    if timed:
        worst_c = max(timed, key=lambda r: r.compile_s)
        worst_s = max(timed, key=lambda r: r.sim_s)
        add(f"{TIMED_MODEL} {TIMED_SIZE}: compile < {TARGET_COMPILE_S:g} s (every board/mode)",
            f"max {worst_c.compile_s:.1f} s ({worst_c.board} {worst_c.mode})",
            worst_c.compile_s < TARGET_COMPILE_S)
        add(f"{TIMED_MODEL} {TIMED_SIZE}: functional simulation < {TARGET_SIM_S:g} s "
            f"(every board/mode)",
            f"max {worst_s.sim_s:.1f} s ({worst_s.board} {worst_s.mode})",
            worst_s.sim_s < TARGET_SIM_S)
    return out


def sweep_targets(sweep: list[dict]) -> list[dict]:
    """Fused <= 0.67x layerwise for block_resnet18 at 1/4 of the bus width."""
    out = []
    for s in sweep:
        if Path(s["model"]).stem == TIMED_MODEL and s["bus_fraction"] == "1/4":
            out.append({"target": f"{TIMED_MODEL}: fused cycles <= {TARGET_FUSED_CYCLE_RATIO}x "
                                  f"layerwise at 1/4 of {s['board']}'s bus",
                        "value": f"{s['ratio']:.3f}x ({s['fused']:,} / {s['layerwise']:,}); "
                                 f"fused floor {s['floor_ratio']:.3f}x",
                        "met": s["ratio"] <= TARGET_FUSED_CYCLE_RATIO})
    return out


def targets_text(ts: list[dict]) -> str:
    if not ts:
        return "targets: no successful run"
    w = max(len(t["target"]) for t in ts)
    return "\n".join(["targets:"] + [f"  {'met    ' if t['met'] else 'NOT MET'}  "
                                     f"{t['target'].ljust(w)}  {t['value']}" for t in ts])


# ---- command line -----------------------------------------------------------------------------
def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    from boards import list_boards

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="block_resnet18",
                    help="comma-separated zoo names (or .pt2 / file.py:factory)")
    ap.add_argument("--boards", default=",".join(list_boards()),
                    help="comma-separated board names (default: every bundled board)")
    ap.add_argument("--modes", default=",".join(MODES), help="fused,layerwise or one of them")
    ap.add_argument("--input-size", type=int, default=224, help="H = W of the input (pixels)")
    ap.add_argument("--block-size", type=int, default=None,
                    help="fixed block size (pixels); default: the zoo model's own")
    ap.add_argument("--block-type", default=None, choices=("fixed", "hierarchical"),
                    help="block type of the zoo model (default: its own)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the float32 N(0,1) input")
    ap.add_argument("--out-dir", default=None,
                    help="keep the artifacts here (default: a temporary directory)")
    ap.add_argument("--json", default=None, help="also write the rows and targets to this file")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--sweep", default=None, metavar="PNG",
                    help="also run the DRAM-bandwidth sweep (bus x 1, 1/2, 1/4, 1/8) of every "
                    "(model, board) measured in both modes and plot it into this PNG")
    args = ap.parse_args(argv)
    args.models, args.boards, args.modes = _csv(args.models), _csv(args.boards), _csv(args.modes)
    bad = [m for m in args.modes if m not in MODES]
    if bad or not args.modes:
        ap.error(f"--modes: unknown mode(s) {', '.join(bad) or '(none)'}; known: "
                 f"{', '.join(MODES)}")
    unknown = [b for b in args.boards if b not in list_boards()]
    if unknown or not args.boards:
        ap.error(f"--boards: unknown board(s) {', '.join(unknown) or '(none)'}; known: "
                 f"{', '.join(list_boards())}")
    if args.input_size <= 0:
        ap.error("--input-size must be a positive number of pixels")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    jobs = [(m, b, mode) for m in args.models for b in args.boards for mode in args.modes]
    tmp = None
    if args.out_dir:
        root = Path(args.out_dir)
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bctvm-traffic-")
        root = Path(tmp.name)
    rows = []
    try:
        bar = tqdm(jobs, desc="runs", unit="run", disable=args.quiet, file=sys.stderr)
        for m, b, mode in bar:
            bar.set_postfix_str(f"{m} {b} {mode}")
            row = measure(m, b, mode, args.input_size, args.block_size, root, args.seed,
                          progress=not args.quiet, block_type=args.block_type)
            rows.append(row)
            if row.error:
                tqdm.write(f"ERROR {m} {b} {mode}: {row.error}", file=sys.stderr)
            elif not row.ok:
                v = row.report["validation"]
                tqdm.write(f"FAIL {m} {b} {mode}: not bit-exact vs the integer reference "
                           f"(max error {v['max_abs_err']}, {v['mismatched_values']} values)",
                           file=sys.stderr)
        sweep = bandwidth_sweep(rows, root, args.seed) if args.sweep else []
    finally:
        if tmp is not None:
            tmp.cleanup()

    block = f"block size {args.block_size}" if args.block_size else "zoo block size"
    block += f" ({args.block_type})" if args.block_type else ""
    print(f"input 1x3x{args.input_size}x{args.input_size}, {block}, seed {args.seed}; "
          f"bytes: K = KiB, M = MiB; cycles at each board's clock; wall seconds on this machine")
    print(table(rows))
    if any(not r.error for r in rows):
        print()
        print("busy fraction of the cycles (compute / load / store modules, DRAM port) and "
              "micro-ops per cycle:")
        print(cycle_table(rows))
        print()
        print("compute-bound ceiling per VTA program (cycles of GEMM micro-ops, ALU micro-ops, "
              "pipeline fills; stall = cycles - their sum; util = MACs / (cycles x MACs per "
              "cycle), ceiling = MACs / (arith x MACs per cycle)):")
        print(ceiling_table(rows))
    for r in rows:
        if r.error:
            print(f"ERROR {r.model} {r.board} {r.mode}: {r.error}")
        elif not r.ok:
            v = r.report["validation"]
            print(f"!!! FAIL {r.model} {r.board} {r.mode}: VTA output is NOT bit-exact vs the "
                  f"integer reference (max error {v['max_abs_err']}, "
                  f"{v['mismatched_values']} values differ)")
    ts = targets(rows)
    if sweep:
        print()
        print("DRAM-bandwidth sweep (same programs; the board's bus width / 1, 2, 4, 8):")
        print(sweep_table(sweep))
        sweep_plot(sweep, args.sweep)
        print(f"plot: {args.sweep}")
        ts += sweep_targets(sweep)
    print()
    print(targets_text(ts))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()},
                                               "rows": [r.to_json() for r in rows],
                                               "targets": ts, "sweep": sweep}, indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
