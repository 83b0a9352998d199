"""Tuning benchmark: XGBoost-guided evolutionary search vs random search vs the default knobs.

    python benchmarks/tuning.py [--trials N] [--pynq-tasks K] [--out-dir DIR]

For the distinct tasks of block_resnet18 (F28: blocks of 28) at 224x224 on zcu102, and the
first K tasks of the same model on pynq, each task is tuned twice with N trials on the local
simulator board, into separate fresh logs: `--strategy evolutionary` (XGBModel) and
`--strategy random` (ReplayTrace). Both count the default knobs' measurement as trial 1, so
the trial counts are equal. Prints one table per board (default, best after N trials per
strategy, trials to reach 95% of the strategy's own best and its best) and the targets:

- tuned <= 0.85x the default cycles summed over the model's groups (zcu102);
- GEMM utilisation of tuned block_resnet18 on zcu102 >= 0.9 (MACs / (cycles x MAC/cycle),
  cycles summed over the VTA groups as in the run report; a group's cycles do not depend on
  the data, so the measured task cycles are the model's);
- the XGBoost search reaches 95% of its best in fewer trials than random search (summed
  over the tasks).

Writes DIR/tuning_<board>.png (best-so-far curves per task, normalised to the default) and
DIR/tuning.json (every curve).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bctvm.tune import LocalBoards, extract_tasks, tune_task  # noqa: E402
from bctvm.tune.log import TuningLog  # noqa: E402

STRATEGIES = ("evolutionary", "random")


def best_so_far(curve: list) -> list:
    out, best = [], math.inf
    for c in curve:
        best = min(best, c)
        out.append(best)
    return out


def trials_to(curve: list, frac: float = 0.95) -> int:
    """First trial (1-based) whose best so far is within `frac` of the curve's best
    (cycles <= best / frac)."""
    bsf = best_so_far(curve)
    goal = bsf[-1] / frac
    return next(i + 1 for i, c in enumerate(bsf) if c <= goal)


def bound_cycles(task) -> tuple[float, float]:
    """(GEMM-bound, DRAM-bound) cycles of a task, lower bounds for any knobs: its MACs at the
    board's MACs/cycle, and its weights, input and output read or written once (packed) at the
    bus width per cycle."""
    cfg, specs = task.cfg, task.specs
    w = sum(s.co_tiles(cfg) * s.ci_tiles_per_group(cfg) * s.kernel[0] * s.kernel[1]
            for s in specs) * cfg.wgt_elem_bytes
    s0, sl = specs[0], specs[-1]
    nb = s0.batch // cfg.batch
    inp = nb * s0.ci_tiles(cfg) * s0.height * s0.width * cfg.inp_elem_bytes
    oh, ow = sl.out_size
    out = nb * sl.co_tiles(cfg) * oh * ow * cfg.out_elem_bytes
    return task.macs / cfg.gemm_macs_per_cycle, (w + inp + out) / cfg.bus_bytes


def run_board(board: str, n_tasks: int | None, trials: int, root: Path, per_iter: int,
              seed: int) -> dict:
    tasks = extract_tasks("block_resnet18", board=board, input_shape=(1, 3, 224, 224),
                          block_size=28, progress=False)
    tasks = tasks[:n_tasks] if n_tasks else tasks
    boards = LocalBoards(tasks[0].cfg)
    rows = []
    for i, task in enumerate(tasks):
        gemm, dram = bound_cycles(task)
        row = {"task": task.name, "groups": len(task.groups), "macs": task.macs,
               "bound": max(gemm, dram), "dram_bound": dram > gemm}
        for strat in STRATEGIES:
            log = TuningLog(root / board / strat)
            t0 = time.perf_counter()
            r = tune_task(task, boards, log, trials, strat, per_iter, seed,
                          position=f"{board} {strat[:4]} [{i + 1}/{len(tasks)}] ")
            row[strat] = {"curve": r.curve, "best": r.best_cycles,
                          "to95": trials_to(r.curve), "to_best": trials_to(r.curve, 1.0),
                          "seconds": time.perf_counter() - t0}
            row["default"] = r.default_cycles
        rows.append(row)
    return {"board": board, "cfg": tasks[0].cfg, "rows": rows}


def report(res: dict, trials: int) -> tuple[list[str], dict]:
    cfg, rows = res["cfg"], res["rows"]
    lines = [f"== block_resnet18 F28 224x224 on {res['board']}: {len(rows)} tasks, {trials} "
             f"trials per task and strategy (trial 1 = default knobs)",
             f"{'task':<24} {'grp':>3} {'default':>11} {'xgb best':>11} {'x':>6} "
             f"{'random best':>11} {'x':>6} {'xgb@95%':>7} {'rnd@95%':>7} {'xgb@best':>8} "
             f"{'rnd@best':>8} {'bound':>11}"]
    tot = {"default": 0.0, "evolutionary": 0.0, "random": 0.0, "bound": 0.0}
    macs = 0
    to95 = {s: 0 for s in STRATEGIES}
    to_best = {s: 0 for s in STRATEGIES}
    for r in rows:
        g = r["groups"]
        d, x, rnd = r["default"], r["evolutionary"]["best"], r["random"]["best"]
        lines.append(f"{r['task'][:24]:<24} {g:>3} {d:>11,.0f} {x:>11,.0f} {x / d:>6.3f} "
                     f"{rnd:>11,.0f} {rnd / d:>6.3f} {r['evolutionary']['to95']:>7} "
                     f"{r['random']['to95']:>7} {r['evolutionary']['to_best']:>8} "
                     f"{r['random']['to_best']:>8} "
                     f"{r['bound']:>10,.0f}{'*' if r['dram_bound'] else ' '}")
        tot["default"] += g * d
        tot["evolutionary"] += g * x
        tot["random"] += g * rnd
        tot["bound"] += g * r["bound"]
        macs += g * r["macs"]
        for s in STRATEGIES:
            to95[s] += r[s]["to95"]
            to_best[s] += r[s]["to_best"]
    util = {k: macs / (v * cfg.gemm_macs_per_cycle) for k, v in tot.items()}
    lines.append(f"{'model (groups summed)':<28} {tot['default']:>11,.0f} "
                 f"{tot['evolutionary']:>11,.0f} {tot['evolutionary'] / tot['default']:>6.3f} "
                 f"{tot['random']:>11,.0f} {tot['random'] / tot['default']:>6.3f} "
                 f"{to95['evolutionary']:>7} {to95['random']:>7} {to_best['evolutionary']:>8} "
                 f"{to_best['random']:>8} {tot['bound']:>11,.0f}")
    lines.append(f"GEMM utilisation: default {util['default']:.3f}, xgb {util['evolutionary']:.3f},"
                 f" random {util['random']:.3f}; at the bound {util['bound']:.3f} (bound = "
                 f"max(MACs / MAC per cycle, weights + input + output once / bus bytes per "
                 f"cycle); * DRAM-bound)")
    return lines, {"totals": tot, "util": util, "to95": to95, "to_best": to_best}


def plot(res: dict, trials: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    cols = 4
    nrow = math.ceil((len(rows) + 1) / cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(4 * cols, 3 * nrow), squeeze=False)
    xs = list(range(1, trials + 1))
    tot = {s: [0.0] * trials for s in STRATEGIES}
    for ax, r in zip(axes.flat, rows):
        for s, style in zip(STRATEGIES, ("-", "--")):
            bsf = best_so_far(r[s]["curve"])
            bsf += [bsf[-1]] * (trials - len(bsf))
            ax.plot(xs, [b / r["default"] for b in bsf], style, label=s)
            for i, b in enumerate(bsf):
                tot[s][i] += r["groups"] * b
        ax.set_title(r["task"][:32], fontsize=8)
        ax.set_ylabel("best / default cycles", fontsize=7)
    ax = axes.flat[len(rows)]
    d = sum(r["groups"] * r["default"] for r in rows)
    for s, style in zip(STRATEGIES, ("-", "--")):
        ax.plot(xs, [t / d for t in tot[s]], style, label=s)
    ax.set_title("model (groups summed)", fontsize=8)
    ax.legend(fontsize=7)
    for a in axes.flat[len(rows) + 1:]:
        a.axis("off")
    for a in axes.flat:
        a.set_xlabel("trial", fontsize=7)
    fig.suptitle(f"block_resnet18 F28 224 on {res['board']}: best so far (trial 1 = default)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--pynq-tasks", type=int, default=3)
    ap.add_argument("--per-iter", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default="build/bench_tuning")
    ap.add_argument("--boards", default="zcu102,pynq", help="zcu102 (all tasks), pynq "
                    "(the first --pynq-tasks tasks), comma-separated")
    args = ap.parse_args(argv)
    root = Path(args.out_dir)
    if root.exists() and any(root.iterdir()):
        print(f"{root} is not empty: the logs would resume; give a fresh --out-dir")
        return 2
    root.mkdir(parents=True, exist_ok=True)
    out, summary = [], {}
    for board in args.boards.split(","):
        n = args.pynq_tasks if board == "pynq" else None
        res = run_board(board, n, args.trials, root, args.per_iter, args.seed)
        lines, s = report(res, args.trials)
        out += lines + [""]
        print("\n".join(lines), flush=True)
        plot(res, args.trials, root / f"tuning_{board}.png")
        summary[board] = {"rows": res["rows"], **s}
    (root / "tuning.json").write_text(json.dumps(summary, indent=1, default=str))
    if "zcu102" not in summary:
        return 0
    z = summary["zcu102"]
    ratio = z["totals"]["evolutionary"] / z["totals"]["default"]
    util = z["util"]["evolutionary"]
    to95 = z["to95"]
    print("targets (zcu102):")
    print(f"  {'MET' if ratio <= 0.85 else 'NOT MET':<8} tuned <= 0.85x default summed: "
          f"{ratio:.3f}x")
    print(f"  {'MET' if util >= 0.9 else 'NOT MET':<8} GEMM utilisation tuned >= 0.9: "
          f"{util:.3f}")
    print(f"  {'MET' if to95['evolutionary'] < to95['random'] else 'NOT MET':<8} xgb reaches "
          f"95% of its best in fewer trials than random: {to95['evolutionary']} vs "
          f"{to95['random']} trials (summed over tasks); to its final best: "
          f"{z['to_best']['evolutionary']} vs {z['to_best']['random']}")
    print(f"wrote {root}/tuning_<board>.png, tuning.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
