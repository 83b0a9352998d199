"""`bctvm report DIR|r.json [r2.json ...] [--png out.png]`: reports as a table and a plot.

    reps = [read_report(p) for p in paths]   # r.json, or DIR/report.json, or DIR run here
    print(report_table(reps))                 # per report: totals; per group: bytes, cycles
    plot_reports(reps, "out.png")             # one column per report, side by side

The plot has one column per report (fused vs layerwise, or two boards) and shares the y
axes across columns, so the same height means the same bytes / cycles:
  top:    per group, DRAM bytes stacked by kind (weights, input, output, feature maps,
          micro-ops, instructions), the group's lower bound as a black tick;
  bottom: per group, VTA cycles.
The column title states the totals: cycles, latency, DRAM against the lower bound, energy.
"""

from __future__ import annotations

from pathlib import Path

from bctvm.errors import BadInputError
from bctvm.jsonfile import read_json_object

KIND_ORDER = ("weights", "input", "output", "feature_maps", "uops", "instructions", "other")
KIND_COLOURS = {"weights": "#4c72b0", "input": "#55a868", "output": "#c44e52",
                "feature_maps": "#dd8452", "uops": "#8172b3", "instructions": "#937860",
                "other": "#333333"}


def read_report(path) -> dict:
    """A report dict from r.json, from DIR/report.json, or by running artifact DIR on the
    simulator board (validated against the integer reference, without the float model)."""
    p = Path(path)
    if p.is_dir():
        if (p / "report.json").is_file():
            p = p / "report.json"
        else:
            from .artifact import load_artifact
            from .cli_run import load_input
            from .executor import ModelRunner
            from .report import build_report

            art = load_artifact(p)
            x = load_input(None, art.input_shape())
            return build_report(art, ModelRunner(art).run(x), x, float_model=False)
    if not p.is_file():
        raise BadInputError(f"report {p}: no such file or artifact directory")
    rep = read_json_object(p, f"report {p}", expected="a bctvm report (a JSON object)")
    missing = [k for k in ("model", "board", "mode", "groups", "dram_bytes", "cycles")
               if k not in rep]
    if missing:
        raise BadInputError(f"report {p}: not a bctvm report (no {', '.join(missing)})")
    return rep


def label(rep: dict) -> str:
    where = rep.get("board_identity", {}).get("driver") or rep.get("board_kind", "")
    return f"{rep['model']} {rep['board']} {rep['mode']}" + (f" ({where})" if where else "")


def _energy(rep: dict) -> str:
    e = rep.get("energy")
    return f"{e['total_uj']:,.0f} uJ" if e else "n/a"


def report_table(reps: list[dict]) -> str:
    """Totals of each report side by side, then each report's groups (bytes by kind, lower
    bound, cycles)."""
    rows = [("", *[f"[{i}] {label(r)}" for i, r in enumerate(reps)])]
    for name, get in (
        ("VTA groups", lambda r: f"{len(r['groups'])}"),
        ("cycles", lambda r: f"{r['cycles']:,}"),
        ("latency ms", lambda r: f"{r.get('latency_ms', 0):.3f}"),
        ("DRAM bytes", lambda r: f"{r['dram_bytes']['total']:,}"),
        ("lower bound", lambda r: f"{r.get('lower_bound_bytes', 0):,}"),
        ("DRAM / bound", lambda r: f"{r['dram_bytes']['total'] / max(1, r.get('lower_bound_bytes', 0)):.2f}x"),
        ("energy", _energy),
        ("bit-exact", lambda r: str(r.get("validation", {}).get("bit_exact", "n/a"))),
    ):
        rows.append((name, *[get(r) for r in reps]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    for i, r in enumerate(reps):
        kinds = [k for k in KIND_ORDER if any(g["dram_bytes"].get(k) for g in r["groups"])]
        head = ["group", "layers", *kinds, "total", "bound", "cycles"]
        body = []
        for g in r["groups"]:
            b = g["dram_bytes"]
            first = g["layers"][0] + (f" +{len(g['layers']) - 1}" if len(g["layers"]) > 1 else "")
            body.append([g["name"], first, *[f"{b.get(k, 0):,}" for k in kinds],
                         f"{b['total']:,}", f"{g.get('lower_bound_bytes', 0):,}",
                         f"{g['cycles']:,}"])
        w = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        lines += ["", f"[{i}] {label(r)}: per group, DRAM bytes by kind, lower bound, cycles"]
        lines += ["  ".join(str(c).rjust(n) if j > 1 else str(c).ljust(n)
                            for j, (c, n) in enumerate(zip(row, w))).rstrip()
                  for row in [head, *body]]
    return "\n".join(lines)


def plot_reports(reps: list[dict], png) -> None:
    """Write the PNG of the module docstring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(reps)
    fig, axes = plt.subplots(2, n, figsize=(max(7.0, 6.5 * n), 7.5), sharey="row",
                             squeeze=False, gridspec_kw={"height_ratios": [3, 2]})
    for col, rep in enumerate(reps):
        top, bottom = axes[0][col], axes[1][col]
        groups = rep["groups"]
        xs = range(len(groups))
        base = [0.0] * len(groups)
        for kind in KIND_ORDER:
            vals = [g["dram_bytes"].get(kind, 0) / 1e6 for g in groups]
            if any(vals):
                top.bar(xs, vals, bottom=base, color=KIND_COLOURS[kind],
                        label=kind.replace("_", " "), width=0.8)
                base = [b + v for b, v in zip(base, vals)]
        bounds = [g.get("lower_bound_bytes", 0) / 1e6 for g in groups]
        top.scatter(xs, bounds, marker="_", s=220, color="black", linewidths=2,
                    label="lower bound", zorder=3)
        total, lb = rep["dram_bytes"]["total"], rep.get("lower_bound_bytes", 0)
        top.set_title(f"{label(rep)}\n{rep['cycles']:,} cycles = {rep.get('latency_ms', 0):.2f} ms; "
                      f"DRAM {total / 1e6:.2f} MB = {total / max(1, lb):.2f}x bound; "
                      f"energy {_energy(rep)}", fontsize=9)
        top.set_ylabel("DRAM MB (read + written)")
        top.legend(fontsize=7, loc="upper left")
        bottom.bar(xs, [g["cycles"] / 1e3 for g in groups], color="#4c72b0", width=0.8)
        bottom.set_ylabel("VTA kcycles")
        names = [g["name"] for g in groups]
        for ax in (top, bottom):
            ax.set_xticks(list(xs))
            ax.set_xticklabels(names, rotation=90, fontsize=7)
            ax.grid(axis="y", alpha=0.3)
            ax.tick_params(labelleft=True)
        bottom.set_xlabel("VTA group (run order)")
    fig.tight_layout()
    try:
        fig.savefig(png, dpi=110)
    except OSError as err:
        raise BadInputError(f"--png {png}: cannot write ({err})") from None
    finally:
        plt.close(fig)
