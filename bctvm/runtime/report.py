"""The run report (JSON of ../shared/design.md) and its validation.

    rep = build_report(art, result, x)      # dict; rep["validation"]["ok"] False = mismatch

dram_bytes: bytes read + written by the VTA programs, by kind: weights (weights, biases,
signs), input (the network input entering VTA), output (the last group's output),
feature_maps (group boundaries through DRAM), uops, instructions; total.
lower_bound_bytes = every weight region once + the network input + the network output
(packed int8, channels padded to the board's block). cycles: sum over the VTA programs at the
board clock (host ops not included). gemm_utilisation = MACs / (cycles x GEMM MACs per cycle).
energy: DRAM bytes, on-chip buffer bytes (sram_bytes) and MACs weighted by the board's
[energy] constants (bctvm/runtime/energy.py; microjoules, per group and in total).
validation: the boundary tensor against the integer reference (bit-exact flag, max error in
int8 steps) and the model output against the float PyTorch model (max error; top-1 agreement
for classifier outputs of shape N x K).
"""

from __future__ import annotations

import numpy as np

from .artifact import Artifact
from .energy import energy_uj
from .executor import KINDS, RunResult
from .float_model import load_float_model


def group_lower_bounds(art: Artifact) -> dict:
    """{group name: bytes} of the lower bound: the group's weight regions (not the compiler's
    identity tiles) + each network input / output tensor, counted in the first group that
    holds it. Their sum is lower_bound_bytes."""
    seen, out = set(), {}
    for g in art.groups:
        total = 0
        for name, r in g["regions"].items():
            if r["kind"] == "weights" and name != "identity":
                total += r["nbytes"]
            elif r["kind"] in ("input", "output") and "tensor" in r and r["tensor"] not in seen:
                seen.add(r["tensor"])
                total += r["nbytes"]
        out[g["name"]] = total
    return out


def lower_bound_bytes(art: Artifact) -> int:
    """Every weight region of the model once (not the compiler's identity tiles) + each
    network input / output tensor once (bytes)."""
    return sum(group_lower_bounds(art).values())


def _bytes(d: dict) -> dict:
    out = {k: int(d.get(k, 0)) for k in (*KINDS, "instructions")}
    if d.get("other"):
        out["other"] = int(d["other"])  # outside every named region: never expected
    out["total"] = sum(out.values())
    return out


def validate(art: Artifact, result: RunResult, x: np.ndarray, float_model: bool = True) -> dict:
    """Boundary vs the integer reference, output vs the float model (module docstring)."""
    import torch

    from bctvm.quant import IntegerReference
    from bctvm.quant.serialize import load_qnet

    qnet = load_qnet(art.file(art.manifest["qnet"]))
    ref = IntegerReference(qnet).run(x, keep_tensors=False)
    got = result.boundary
    if got.shape == ref.boundary.shape:
        diff = np.abs(got.astype(np.int32) - ref.boundary.astype(np.int32))
        max_err, bit_exact = int(diff.max()), bool((diff == 0).all())
        mismatches = int((diff != 0).sum())
    else:
        max_err, bit_exact, mismatches = None, False, None
    val = {"reference": "int8-torch", "bit_exact": bit_exact, "max_abs_err": max_err,
           "mismatched_values": mismatches}
    out = result.output[0] if result.output else None
    if out is not None:
        val["output_max_abs_err_vs_int8_reference"] = float(np.abs(out - ref.output).max())
    rel = art.manifest.get("float_model")
    if float_model and out is not None and rel:
        module = load_float_model(art.file(rel))  # never unpickles (float_model.py)
        with torch.no_grad():
            f = module(torch.from_numpy(x))
        f = (f[0] if isinstance(f, (tuple, list)) else f).numpy()
        fm = {"max_abs_err": float(np.abs(out - f).max()),
              "max_abs": float(np.abs(f).max())}
        if out.ndim == 2 and out.shape[1] > 1:
            fm["top1_agreement"] = float((out.argmax(1) == f.argmax(1)).mean())
            fm["top1_agreement_int8_ref"] = float((ref.output.argmax(1) == f.argmax(1)).mean())
        val["float_model"] = fm
    val["ok"] = bit_exact
    return val


def build_report(art: Artifact, result: RunResult, x: np.ndarray, validate_run: bool = True,
                 float_model: bool = True) -> dict:
    cfg = art.cfg
    m = art.manifest
    total = {}
    groups = []
    bounds = group_lower_bounds(art)
    for st in result.groups:
        for k, v in st.dram_bytes.items():
            total[k] = total.get(k, 0) + v
        gbytes = _bytes(st.dram_bytes)
        groups.append({"name": st.name, "layers": st.layers, "dram_bytes": gbytes,
                       "lower_bound_bytes": bounds.get(st.name, 0),
                       "cycles": st.cycles, "macs": st.macs, "sram_bytes": st.sram_bytes,
                       "energy_uj": energy_uj(gbytes["total"], st.sram_bytes, st.macs, cfg)})
    cycles = result.cycles
    macs = sum(st.macs for st in result.groups)
    sram = sum(st.sram_bytes for st in result.groups)
    rep = {
        "model": m["model"], "board": m["board"], "board_kind": result.board_kind,
        "mode": m["mode"],
        "onchip_reuse": cfg.onchip_reuse, "block": m.get("block", {}),
        "input_shape": m["input"]["shape"],
        "dram_bytes": _bytes(total),
        "lower_bound_bytes": lower_bound_bytes(art),
        "cycles": int(cycles), "latency_ms": cycles / (cfg.clock_mhz * 1e3),
        "clock_mhz": cfg.clock_mhz,
        "macs": int(macs),
        "gemm_utilisation": macs / (cycles * cfg.gemm_macs_per_cycle) if cycles else 0.0,
        "host_layers": m.get("host_layers", []),
        "sram_bytes": int(sram),
        "groups": groups,
    }
    rep["energy"] = energy_uj(rep["dram_bytes"]["total"], sram, macs, cfg)
    rep["dram_vs_lower_bound"] = rep["dram_bytes"]["total"] / max(1, rep["lower_bound_bytes"])
    if validate_run:
        rep["validation"] = validate(art, result, x, float_model)
    return rep


def summary_text(rep: dict) -> str:
    """A few human-readable lines of a report (the CLI prints them on stderr)."""
    b = rep["dram_bytes"]
    lines = [
        f"{rep['model']} on {rep['board']} ({rep['mode']}): {len(rep['groups'])} VTA groups, "
        f"{rep['cycles']:,} cycles = {rep['latency_ms']:.3f} ms at {rep['clock_mhz']:g} MHz, "
        f"GEMM utilisation {rep['gemm_utilisation']:.2f}",
        "DRAM bytes: " + ", ".join(f"{k} {v:,}" for k, v in b.items())
        + f"  ({rep['dram_vs_lower_bound']:.2f}x the lower bound {rep['lower_bound_bytes']:,})",
    ]
    e = rep.get("energy")
    if e:
        lines.append(f"energy estimate: {e['total_uj']:,.1f} uJ (DRAM {e['dram_uj']:,.1f}, "
                     f"on-chip buffers {e['sram_uj']:,.1f}, MACs {e['mac_uj']:,.1f}; "
                     f"constants of boards/{rep['board']}.toml)")
    v = rep.get("validation")
    if v:
        line = (f"validation: bit-exact vs the integer reference: {v['bit_exact']} "
                f"(max error {v['max_abs_err']})")
        fm = v.get("float_model")
        if fm:
            line += f"; vs float model: max error {fm['max_abs_err']:.4g}"
            if "top1_agreement" in fm:
                line += f", top-1 agreement {fm['top1_agreement']:.2f}"
        lines.append(line)
    return "\n".join(lines)
