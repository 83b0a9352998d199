"""Which integer layers run on the host, and why: the one answer `plan` and `compile` print.

    plan_, segments = program_plan(plan, vta_qnet, mode, batch, cfg, host_fallback, fallbacks)
    reasons = host_reasons(plan, vta_qnet, segments, cfg, batch=1, stem="auto",
                           fallbacks=fallbacks)
    # {"conv1": "stem: 3 input channels", "maxpool": "3x3/2 max-pool crosses block edges"}

A layer runs on VTA when a segment of the program plan holds it; every other integer layer
of the folded QuantizedNet (the net as the graph has it after FoldMaxPool) runs on the host,
compiled for llvm from its integer TE definition (bit-exact). The float host head is not
listed (it is not an integer layer), nor are --host-fallback layers (listed apart).
"""

from __future__ import annotations

from bctvm.errors import BctvmError

__all__ = ["host_reasons", "format_host_lines"]


def host_reasons(plan, vta_qnet, segments, cfg, batch: int = 1, stem: str = "auto",
                 fallbacks=()) -> dict[str, str]:
    """{layer name: reason} of every integer layer of `vta_qnet` (relay_passes.fold_max_pool.
    folded_qnet of the graph plan `plan`) that no segment of `segments` (program_plan's) runs
    and that is not in `fallbacks` (the --host-fallback layers), in graph order."""
    on_vta = {n for s in segments for n in s.layers} | set(fallbacks)
    produced_on_host: set[str] = set()
    out: dict[str, str] = {}
    for layer in vta_qnet.layers:
        if layer.name in on_vta:
            continue
        out[layer.name] = _reason(layer, plan, vta_qnet, cfg, batch, stem, produced_on_host)
        produced_on_host.add(layer.output)
    return out


def format_host_lines(reasons: dict[str, str], fallbacks: dict[str, str] | None = None
                      ) -> list[str]:
    """One line per host layer: "host: NAME: REASON" (fallbacks: layers that did not fit)."""
    lines = [f"host: {name}: {why}" for name, why in reasons.items()]
    for name, why in (fallbacks or {}).items():
        lines.append(f"host: {name}: does not fit the board ({why}); --host-fallback")
    return lines


def _pair(v) -> str:
    return f"{v[0]}x{v[1]}"


def _reason(layer, plan, qnet, cfg, batch, stem, produced_on_host) -> str:
    kind = layer.kind
    if kind == "conv":
        return _conv_reason(layer, plan, cfg, batch, stem, produced_on_host)
    if kind == "maxpool":
        k, s, p = layer.kernel, layer.stride, layer.padding
        if (tuple(k), tuple(s), tuple(p)) != ((2, 2), (2, 2), (0, 0)):
            return (f"{_pair(k)}/{s[0]} max-pool (padding {p[0]}) crosses block edges")
        return "2x2 max-pool not folded into a conv: " + _unfolded(layer, qnet)
    if kind == "avgpool":
        return (f"{_pair(layer.kernel)}/{layer.stride[0]} average pool: integer average "
                "(divide by the window) runs on the host; the VTA group is split there")
    if kind == "add":
        return "add of two tensors that is no conv's residual"
    if kind == "relu":
        return "ReLU that follows no conv or add"
    return f"{kind} layers run on the host"


def _unfolded(pool, qnet) -> str:
    """Why a 2x2/2 max-pool did not fold into the layer before it (fold_pool's conditions)."""
    from bctvm.quant.fold_pool import _conv_block_even

    src = pool.inputs[0]
    prod = next((q for q in qnet.layers if q.output == src), None)
    if prod is None or prod.kind != "conv":
        return f"its input is {'the network input' if prod is None else 'a ' + prod.kind}"
    if prod.pool:
        return f"'{prod.name}' pools already"
    if prod.sign is not None:
        return f"'{prod.name}' carries a BN sign after its pool"
    if prod.residual is not None:
        return f"'{prod.name}' adds a residual"
    if tuple(prod.stride) != (1, 1):
        return f"'{prod.name}' is strided"
    if not _conv_block_even(prod):
        return "its windows cross block edges"
    return f"'{prod.name}' output has other readers"


def _conv_reason(layer, plan, cfg, batch, stem, produced_on_host) -> str:
    from schedules.from_quant import spec_from_qconv

    if layer.inputs[0] == "input" and layer.name in plan.host_layers:
        if stem == "host":
            return "stem: --stem host"
        return (f"stem: {layer.in_shape[0]} input channels (fills {layer.in_shape[0]} of "
                f"{cfg.block_in} GEMM lanes; --stem vta runs it on VTA)")
    if tuple(layer.stride) != (1, 1):
        return f"conv with stride {layer.stride[0]}: VTA runs stride-1 convs (+ 2x2 pool)"
    try:
        spec = spec_from_qconv(layer, batch=batch)
        spec.validate(cfg)
    except BctvmError as err:
        text = str(err)
        if layer.pool and "even per-block" in text:
            ch, cw = spec.conv_block
            return (f"2x2 max-pool crosses block edges (per-block conv output {ch}x{cw} is "
                    "odd)")
        return text.split(": ", 1)[-1]
    if layer.inputs[0] in produced_on_host or layer.name in plan.host_layers:
        return "its input is computed on the host"
    return "not placed in a VTA segment"
