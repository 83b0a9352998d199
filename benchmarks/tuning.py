"""Tuning benchmark: XGBoost-guided evolutionary search vs random search vs the default knobs.

    python benchmarks/tuning.py [--trials N] [--seeds 0,1,2] [--pynq-tasks K] [--out-dir DIR]

For the distinct tasks of block_resnet18 (F28: blocks of 28) at 224x224 on zcu102, and the
first K tasks of the same model on pynq, every task is tuned with N trials on the local
simulator board by both strategies and every seed, each run into its own fresh log:
`--strategy evolutionary` (EvolutionarySearch + XGBModel) and `--strategy random`
(ReplayTrace). Same trials, same seeds, same design space and fit rule for both; both count
the default knobs' measurement as trial 1. Prints one table per board: the default cycles,
per strategy the best after N trials as a fraction of the default (mean over the seeds, and
the range), the trials to 95% of the run's own best and to within 1% of the best any run
found for the task (N+1 when not reached; means over the seeds), the compute-module busy
cycles of the best candidate (the GEMM and ALU instructions share the compute module: a
lower bound of the cycles with those uops) and the GEMM bound (MACs / MACs per cycle).

Targets (zcu102):
- tuned <= 0.85x the default cycles summed over the model's tasks (groups that share a task
  counted once each);
- GEMM utilisation of tuned block_resnet18 >= 0.9: MACs / (cycles x MACs per cycle) over the
  whole model's VTA groups, the tuned tasks at their best and the groups that are no tuning
  task (segments run as several programs keep the planned fits) at their planned knobs (a group's cycles do not
  depend on the data);
- the XGBoost search reaches 95% of its best in fewer trials than random search (summed over
  the tasks, mean over the seeds).

Writes DIR/tuning_<board>.png (best-so-far curves per task normalised to the default: mean
over the seeds, shaded between the seeds' best and worst) and DIR/tuning.json (every curve).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bctvm.tune import LocalBoards, extract_tasks, tune_task  # noqa: E402
from bctvm.tune.builder import build_candidate, random_layer_data  # noqa: E402
from bctvm.tune.log import TuningLog  # noqa: E402

STRATEGIES = ("evolutionary", "random")
MODEL = dict(input_shape=(1, 3, 224, 224), block_size=28)


def best_so_far(curve: list) -> list:
    out, best = [], math.inf
    for c in curve:
        best = min(best, c)
        out.append(best)
    return out


def trials_to(curve: list, goal: float) -> int:
    """First trial (1-based) whose best so far is <= goal cycles; len(curve) + 1 if none."""
    return next((i + 1 for i, c in enumerate(best_so_far(curve)) if c <= goal), len(curve) + 1)


def compute_busy(task, values: dict) -> tuple[int, int]:
    """(cycles, compute-module busy cycles) of a task's candidate on the simulator."""
    from bctvm.sim import Simulator

    with tempfile.TemporaryDirectory(prefix="bctvm-bench-") as d:
        prog = build_candidate(task, values, Path(d))
        regions = {k: tuple(v) for k, v in
                   json.loads((prog.parent / "regions.json").read_text()).items()}
        res = Simulator(task.cfg).run(prog.read_bytes(), np.fromfile(prog.parent / "dram.bin",
                                                                     dtype=np.uint8),
                                      regions=regions, progress=False)
    return int(res.cycles), int(res.module_busy_cycles["compute"])


def untuned_groups(board: str) -> tuple[float, int, int]:
    """(cycles, MACs, count) of the model's VTA groups that are no tuning task (several
    programs, layer by layer: planned knobs), each run once on the simulator with random data."""
    from bctvm.compiler.driver import compiled_segments, is_task
    from bctvm.lower.group import run_group

    _, compiled = compiled_segments("block_resnet18", board=board, progress=False, **MODEL)
    cycles = macs = n = 0
    for c in compiled:
        if is_task(c.seg):
            continue
        x, layers = random_layer_data(SimpleNamespace(specs=c.cg.specs))
        cycles += run_group(c.cg, c.cg.image(x, layers)).cycles
        macs += sum(s.macs() for s in c.cg.specs)
        n += 1
    return cycles, macs, n


def run_board(board: str, n_tasks: int | None, trials: int, root: Path, per_iter: int,
              seeds: list[int]) -> dict:
    tasks = extract_tasks("block_resnet18", board=board, progress=False, **MODEL)
    all_tasks = len(tasks)
    tasks = tasks[:n_tasks] if n_tasks else tasks
    boards = LocalBoards(tasks[0].cfg)
    rows = []
    for i, task in enumerate(tasks):
        row = {"task": task.name, "groups": len(task.groups), "macs": task.macs,
               "gemm_bound": task.macs / task.cfg.gemm_macs_per_cycle}
        for strat in STRATEGIES:
            runs = []
            for seed in seeds:
                log = TuningLog(root / board / strat / f"seed{seed}")
                t0 = time.perf_counter()
                r = tune_task(task, boards, log, trials, strat, per_iter, seed,
                              position=f"{board} {strat[:4]} s{seed} [{i + 1}/{len(tasks)}] ")
                best = log.best(task)
                runs.append({"seed": seed, "curve": r.curve, "best": r.best_cycles,
                             "values": best.values if best else None,
                             "seconds": time.perf_counter() - t0})
                row["default"] = r.default_cycles
            row[strat] = runs
        ref = min(run["best"] for s in STRATEGIES for run in row[s])
        row["best_known"] = ref
        for s in STRATEGIES:
            for run in row[s]:
                run["to95"] = trials_to(run["curve"], run["best"] / 0.95)
                run["to_known"] = trials_to(run["curve"], ref * 1.01)
        best_run = min((run for s in STRATEGIES for run in row[s]), key=lambda r: r["best"])
        _, row["default_compute"] = compute_busy(task, task.space.from_knobs(
            task.default_knobs))
        _, row["best_compute"] = compute_busy(task, best_run["values"])
        rows.append(row)
    out = {"board": board, "cfg": tasks[0].cfg, "rows": rows, "all_tasks": all_tasks}
    if n_tasks is None:
        out["untuned"] = untuned_groups(board)
    return out


def _stat(xs: list[float]) -> tuple[float, float, float]:
    return statistics.mean(xs), min(xs), max(xs)


def report(res: dict, trials: int, seeds: list[int]) -> tuple[list[str], dict]:
    cfg, rows = res["cfg"], res["rows"]
    mpc = cfg.gemm_macs_per_cycle
    lines = [f"== block_resnet18 F28 224x224 on {res['board']}: {len(rows)} of "
             f"{res['all_tasks']} tasks, {trials} trials per task, strategy and seed (trial 1 = "
             f"default knobs), seeds {','.join(map(str, seeds))}",
             f"{'task':<22} {'grp':>3} {'default':>9} {'xgb x mean [min-max]':>22} "
             f"{'random x mean [min-max]':>23} {'@95% x/r':>9} {'@1% x/r':>9} "
             f"{'compute':>9} {'gemm':>9}"]
    n = len(seeds)
    tot = {"default": 0.0, "bound": 0.0, "compute": 0.0}
    per_seed = {s: [0.0] * n for s in STRATEGIES}
    to95 = {s: [0] * n for s in STRATEGIES}
    to_known = {s: [0] * n for s in STRATEGIES}
    macs = 0
    for r in rows:
        g, d = r["groups"], r["default"]
        cells = []
        for s in STRATEGIES:
            m, lo, hi = _stat([run["best"] / d for run in r[s]])
            cells.append(f"{m:.3f} [{lo:.3f}-{hi:.3f}]")
            for k, run in enumerate(r[s]):
                per_seed[s][k] += g * run["best"]
                to95[s][k] += run["to95"]
                to_known[s][k] += run["to_known"]
        m95 = [statistics.mean(run["to95"] for run in r[s]) for s in STRATEGIES]
        mk = [statistics.mean(run["to_known"] for run in r[s]) for s in STRATEGIES]
        lines.append(f"{r['task'][:22]:<22} {g:>3} {d:>9,.0f} {cells[0]:>22} {cells[1]:>23} "
                     f"{m95[0]:>4.1f}/{m95[1]:<4.1f} {mk[0]:>4.1f}/{mk[1]:<4.1f} "
                     f"{r['best_compute']:>9,} {r['gemm_bound']:>9,.0f}")
        tot["default"] += g * d
        tot["bound"] += g * r["gemm_bound"]
        tot["compute"] += g * r["best_compute"]
        macs += g * r["macs"]
    ratio = {s: [v / tot["default"] for v in per_seed[s]] for s in STRATEGIES}
    cells = [f"{statistics.mean(ratio[s]):.3f} [{min(ratio[s]):.3f}-{max(ratio[s]):.3f}]"
             for s in STRATEGIES]
    m95 = {s: statistics.mean(to95[s]) for s in STRATEGIES}
    mk = {s: statistics.mean(to_known[s]) for s in STRATEGIES}
    lines.append(f"{'tasks summed':<26} {tot['default']:>9,.0f} {cells[0]:>22} {cells[1]:>23} "
                 f"{m95['evolutionary']:>4.1f}/{m95['random']:<4.1f} "
                 f"{mk['evolutionary']:>4.1f}/{mk['random']:<4.1f} {tot['compute']:>9,.0f} "
                 f"{tot['bound']:>9,.0f}")
    best = {s: statistics.mean(per_seed[s]) for s in STRATEGIES}
    summary = {"ratio": ratio, "to95": to95, "to_known": to_known, "totals": tot,
               "best": best}
    u_cyc, u_macs, u_n = res.get("untuned", (0, 0, 0))
    util = {k: (macs + u_macs) / ((v + u_cyc) * mpc)
            for k, v in [("default", tot["default"]), ("compute", tot["compute"]),
                         ("bound", tot["bound"])] + list(best.items())}
    what = (f"whole model: the {len(rows)} tasks' groups + {u_n} untuned groups at planned knobs "
            f"({u_cyc:,.0f} cycles)" if u_n else "these groups")
    lines.append(f"GEMM utilisation ({what}): default {util['default']:.3f}, xgb "
                 f"{util['evolutionary']:.3f}, random {util['random']:.3f}; with every task at "
                 f"the compute-module busy cycles of its best candidate {util['compute']:.3f}, "
                 f"at the GEMM bound {util['bound']:.3f}")
    summary["util"] = util
    lines.append("x = best / default cycles (mean over seeds [min-max]); @95%: trials to 95% "
                 "of the run's own best; @1%: trials to within 1% of the best any run found "
                 f"({trials + 1} = not reached); compute: compute-module busy cycles of the best "
                 "candidate (GEMM + ALU uops, a bound for its uops); gemm: MACs / MACs per cycle")
    return lines, summary


def plot(res: dict, trials: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    cols = 3
    nrow = math.ceil((len(rows) + 1) / cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(4.5 * cols, 3 * nrow), squeeze=False)
    xs = np.arange(1, trials + 1)

    def curves(r, s):
        out = []
        for run in r[s]:
            b = best_so_far(run["curve"])
            out.append(b + [b[-1]] * (trials - len(b)))
        return np.asarray(out)

    tot = {s: 0.0 for s in STRATEGIES}
    for ax, r in zip(axes.flat, rows):
        for s, style in zip(STRATEGIES, ("-", "--")):
            c = curves(r, s) / r["default"]
            ax.plot(xs, c.mean(0), style, label=s)
            ax.fill_between(xs, c.min(0), c.max(0), alpha=0.2)
            tot[s] = tot[s] + r["groups"] * curves(r, s)
        ax.set_title(f"{r['task'][:30]} ({len(r['evolutionary'])} seeds)", fontsize=8)
        ax.set_ylabel("best / default cycles", fontsize=7)
    ax = axes.flat[len(rows)]
    d = sum(r["groups"] * r["default"] for r in rows)
    for s, style in zip(STRATEGIES, ("-", "--")):
        c = tot[s] / d
        ax.plot(xs, c.mean(0), style, label=s)
        ax.fill_between(xs, c.min(0), c.max(0), alpha=0.2)
    ax.axhline(0.85, color="grey", lw=0.8, ls=":", label="target 0.85")
    ax.set_title("tasks summed (groups weighted)", fontsize=8)
    ax.legend(fontsize=7)
    for a in axes.flat[len(rows) + 1:]:
        a.axis("off")
    for a in axes.flat:
        a.set_xlabel("trial", fontsize=7)
    fig.suptitle(f"block_resnet18 F28 224 on {res['board']}: best so far (trial 1 = default; "
                 "mean over seeds, band = min-max)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated search seeds")
    ap.add_argument("--pynq-tasks", type=int, default=2)
    ap.add_argument("--per-iter", type=int, default=4)
    ap.add_argument("--out-dir", default="build/bench_tuning")
    ap.add_argument("--boards", default="zcu102,pynq", help="zcu102 (all tasks), pynq "
                    "(the first --pynq-tasks tasks), comma-separated")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    root = Path(args.out_dir)
    if root.exists() and any(root.iterdir()):
        print(f"{root} is not empty: the logs would resume; give a fresh --out-dir")
        return 2
    root.mkdir(parents=True, exist_ok=True)
    summary = {}
    for board in args.boards.split(","):
        n = args.pynq_tasks if board == "pynq" else None
        res = run_board(board, n, args.trials, root, args.per_iter, seeds)
        lines, s = report(res, args.trials, seeds)
        print("\n".join(lines) + "\n", flush=True)
        plot(res, args.trials, root / f"tuning_{board}.png")
        summary[board] = {"rows": res["rows"], **s}
    (root / "tuning.json").write_text(json.dumps(summary, indent=1, default=str))
    if "zcu102" in summary:
        z = summary["zcu102"]
        ratio = statistics.mean(z["ratio"]["evolutionary"])
        util = z["util"]["evolutionary"]
        x95, r95 = (statistics.mean(z["to95"][s]) for s in STRATEGIES)
        xk, rk = (statistics.mean(z["to_known"][s]) for s in STRATEGIES)
        print("targets (zcu102):")
        print(f"  {'MET' if ratio <= 0.85 else 'NOT MET':<8} tuned <= 0.85x default summed over "
              f"the tasks: {ratio:.3f}x (mean over seeds)")
        print(f"  {'MET' if util >= 0.9 else 'NOT MET':<8} GEMM utilisation tuned >= 0.9: "
              f"{util:.3f} (compute-module ceiling {z['util']['compute']:.3f})")
        print(f"  {'MET' if x95 < r95 else 'NOT MET':<8} xgb reaches 95% of its best in fewer "
              f"trials than random: {x95:.1f} vs {r95:.1f} trials (summed over tasks, mean "
              f"over seeds); to within 1% of the best known: {xk:.1f} vs {rk:.1f}")
    print(f"wrote {root}/tuning_<board>.png, tuning.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
