"""Text table of a FusedPlan (what `bctvm plan` and `bctvm compile --plan` print).

One row per fused group: grid, layer count and range, per-block footprint of each buffer as
elements and % of the buffer depth ('!' marks a buffer the group overflows), whether the
weights stay resident, and what spills. Then the layers kept on the host and the estimated
DRAM bytes per inference. `verbose` adds one line per layer.
"""

from __future__ import annotations

from .plan_fused_groups import BUFFERS, FusedPlan


def _mib(b: int) -> str:
    return f"{b / 2**20:.2f} MiB"


def _cell(need: int, cap: int) -> str:
    mark = "!" if need > cap else " "
    return f"{need:>6}{mark}{100 * need / cap:>4.0f}%"


def _layers(names: list[str], width: int) -> str:
    text = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
    return text if len(text) <= width else text[: width - 2] + ".."


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
            f"{b} {getattr(cap, b)} x {eb[b]} B" for b in BUFFERS),
        f"{'grp':>3} {'grid':>5} {'n':>3}  {'layers':<34}"
        + "".join(f" {b:>12}" for b in BUFFERS) + f" {'weights':>8}  spills",
    ]
    for g in plan.groups:
        fp = g.footprint
        row = (f"{g.index:>3} {g.grid[0]:>2}x{g.grid[1]:<2} {len(g.layers):>3}  "
               f"{_layers(g.layers, 34):<34}"
               + "".join(f" {_cell(getattr(fp, b), getattr(cap, b))}" for b in BUFFERS)
               + f" {'resident' if g.weights_resident else 'stream':>8}  "
               + (", ".join(g.spills) if g.spills else "-"))
        lines.append(row)
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
                    f"wgt {li.wgt_all:>5} acc {li.acc:>5} out {li.out:>5} uop {li.uop:>4}")
    if host_lines is not None:
        lines.extend(host_lines)
    elif plan.host_layers:
        lines.append(f"host (llvm): {', '.join(plan.host_layers)}")
    d = plan.dram_bytes()
    lines.append(
        "estimated DRAM per inference: " + ", ".join(
            f"{k.replace('_', ' ')} {_mib(v)}" for k, v in d.items()))
    spilled = [g.index for g in plan.groups if g.spills]
    if spilled:
        lines.append(f"{len(spilled)} group(s) overflow a buffer on their own and must split "
                     f"blocks into row strips: {', '.join(map(str, spilled))}")
    return "\n".join(lines)
