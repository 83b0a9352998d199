"""Text table of a FusedPlan (what `bctvm plan` and `bctvm compile --plan` print).

One row per group (after program planning, bctvm.compiler.plan: one VTA program): grid, layer
count and range, the footprint of each on-chip buffer as elements and % of its depth (the
SRAM allocator's peak for the group's knobs; '!' would mark an overflow), whether the weights
stay resident (all, some layers' = partial, or none = stream), the residual path, virtual threads, and why the program ends there. Then the
layers kept on the host and the estimated DRAM bytes per inference. Under a group's row, one
line per grid change inside it (blocks collected into coarser ones: "coarsens"). `verbose` adds one line
per layer and the resolved knobs of every program.
"""

from __future__ import annotations

from .plan_fused_groups import BUFFERS, FusedPlan


def _mib(b: int) -> str:
    return f"{b / 2**20:.2f} MiB"


def _cell(need: int | None, cap: int) -> str:
    if need is None:
        return f"{'-':>12}"
    mark = "!" if need > cap else " "
    return f"{need:>6}{mark}{100 * need / cap:>4.0f}%"


def _layers(names: list[str], width: int) -> str:
    text = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
    return text if len(text) <= width else text[: width - 2] + ".."


def _weights(g) -> str:
    """resident (all), partial (some layers', knobs.resident_layers) or stream."""
    if g.weights_resident:
        return "resident"
    return "partial" if any(f["knobs"].get("resident_layers") for f in g.fit) else "stream"


def _path(fit: list) -> str:
    if not fit:
        return "-"
    f = fit[0]
    return "input-acc" if f["input_on_chip"] else "identity" if f["identity_residuals"] else "-"


def format_plan(plan: FusedPlan, verbose: bool = False, host_lines=None) -> str:
    """The plan as a fixed-width table (see the module docstring). `host_lines`: the host
    layers with their reasons (bctvm.compiler.host_reasons), printed instead of the names."""
    cap = plan.capacity
    eb = plan.element_bytes
    shape = "x".join(str(s) for s in plan.input_shape)
    lines = [
        f"Fused-group plan: {plan.model or 'model'} input {shape} on {plan.board} "
        f"({plan.board_key}), onchip_reuse {'on' if plan.onchip_reuse else 'off'}: "
        f"{len(plan.groups)} groups, {len(plan.layers)} VTA layers",
        "capacity (elements x bytes): " + " | ".join(
            f"{b} {cap[b]} x {eb[b]} B" for b in BUFFERS),
        f"{'grp':>3} {'grid':>5} {'n':>3}  {'layers':<34}"
        + "".join(f" {b:>12}" for b in BUFFERS)
        + f" {'weights':>8} {'residual':>9} {'vt':>2}  ends because",
    ]
    for g in plan.groups:
        fp = g.footprint
        vt = g.fit[0]["knobs"]["vthreads"] if g.fit else "-"
        lines.append(
            f"{g.index:>3} {g.grid[0]:>2}x{g.grid[1]:<2} {len(g.layers):>3}  "
            f"{_layers(g.layers, 34):<34}"
            + "".join(f" {_cell(fp.get(b), cap[b])}" for b in BUFFERS)
            + f" {_weights(g):>8} {_path(g.fit):>9}"
            + f" {vt:>2}  {g.cut or '-'}" + (f" ({g.note})" if g.note else ""))
        for ch in g.grid_changes:
            lines.append(f"{'':>14}grid {ch['kind']}s {ch['from'][0]}x{ch['from'][1]} -> "
                         f"{ch['to'][0]}x{ch['to'][1]} after {ch['after']}")
        if verbose:
            for name in g.layers:
                li = plan.layers[name]
                extra = []
                if li.kind == "conv":
                    extra.append(f"k{li.kernel[0]}x{li.kernel[1]}")
                    if li.pool:
                        extra.append("pool")
                    if li.residual:
                        extra.append("+res")
                    if li.packed_groups > 1:
                        extra.append(f"G'={li.packed_groups}")
                lines.append(
                    f"{'':>14}{name:<32} {li.kind:<7} block {li.block[0]}x{li.block[1]} "
                    f"tiles {li.in_tiles}->{li.out_tiles} {' '.join(extra):<16} "
                    f"wgt {li.wgt_all:>5}")
            for f in g.fit:
                k = f["knobs"]
                tiles = " ".join(f"({x['oc_chunk']},{x['sub_rows']},{x['ci_chunk']}"
                                 f"{',rows-in' if x['rows_outer'] is False else ''}"
                                 f"{',inp/pass' if x['inp_per_pass'] else ''})"
                                 for x in k["layers"])
                lines.append(f"{'':>14}knobs (oc_chunk,sub_rows,ci_chunk) {tiles}; "
                             f"bias {'resident' if k['bias_resident'] else 'stream'}")
    if host_lines is not None:
        lines.extend(host_lines)
    elif plan.host_layers:
        lines.append(f"host (llvm): {', '.join(plan.host_layers)}")
    d = plan.dram_bytes()
    lines.append(
        "estimated DRAM per inference: " + ", ".join(
            f"{k.replace('_', ' ')} {_mib(v)}" for k, v in d.items()))
    if any(g.cut for g in plan.groups):
        from collections import Counter

        counts = Counter(g.cut for g in plan.groups)
        lines.append("program ends: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)
