"""QuantizedNet <-> disk: PATH.json (everything but arrays) + PATH.npz (int8 weights, int32
biases, int8 signs, float32 host weights).

json: {"format": "bctvm-qnet", "version": 1, "input_name", "input_shape", "input_exponent",
       "boundary", "boundary_exponent", "boundary_shape", "exponents", "max_abs", "info",
       "layers": [{"kind", <layer fields>, "arrays": {field: npz key}}],
       "head": [{"name", "kind", "params", "weights": {name: npz key}}]}
npz keys: "L<index>.<field>" for layer arrays, "H<index>.<name>" for host weights.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np

from bctvm.errors import ProgramFormatError
from bctvm.jsonfile import read_json_object

from .qnet import LAYER_KINDS, HostOp, QLayer, QuantizedNet

__all__ = ["save_qnet", "load_qnet", "qnet_paths"]

_ARRAY_DTYPES = {"weight": np.int8, "bias": np.int32, "sign": np.int8}


def qnet_paths(path) -> tuple[Path, Path]:
    """(PATH.json, PATH.npz) for PATH given with or without either suffix."""
    p = Path(path)
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".npz")


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(i) for i in v]
    if isinstance(v, list):
        return [_jsonable(i) for i in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(i) for k, i in v.items()}
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _layer_to_json(i: int, layer: QLayer, arrays: dict[str, np.ndarray]) -> dict:
    entry = {"kind": layer.kind}
    refs = {}
    for f in fields(layer):
        value = getattr(layer, f.name)
        if f.name in layer.ARRAYS:
            if value is not None:
                key = f"L{i}.{f.name}"
                arrays[key] = np.ascontiguousarray(value)
                refs[f.name] = key
            continue
        entry[f.name] = _jsonable(value)
    entry["arrays"] = refs
    return entry


def save_qnet(qnet: QuantizedNet, path) -> tuple[Path, Path]:
    """Write `qnet` as PATH.json + PATH.npz (parent directories created); returns the paths."""
    jpath, npath = qnet_paths(path)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    layers = [_layer_to_json(i, layer, arrays) for i, layer in enumerate(qnet.layers)]
    head = []
    for i, op in enumerate(qnet.head):
        refs = {}
        for name, w in op.weights.items():
            key = f"H{i}.{name}"
            arrays[key] = np.ascontiguousarray(w, dtype=np.float32)
            refs[name] = key
        head.append({"name": op.name, "kind": op.kind, "params": _jsonable(op.params),
                     "weights": refs})
    meta = {
        "format": QuantizedNet.FORMAT,
        "version": QuantizedNet.VERSION,
        "input_name": qnet.input_name,
        "input_shape": list(qnet.input_shape),
        "input_exponent": qnet.input_exponent,
        "boundary": qnet.boundary,
        "boundary_exponent": qnet.boundary_exponent,
        "boundary_shape": list(qnet.boundary_shape),
        "exponents": _jsonable(qnet.exponents),
        "max_abs": _jsonable(qnet.max_abs),
        "info": _jsonable(qnet.info),
        "layers": layers,
        "head": head,
    }
    jpath.write_text(json.dumps(meta, indent=1))
    np.savez(npath, **arrays)
    return jpath, npath


def load_qnet(path) -> QuantizedNet:
    """Read a QuantizedNet saved by save_qnet; ProgramFormatError naming the file if it is
    missing, of another format or version, or inconsistent with its npz."""
    jpath, npath = qnet_paths(path)
    for p in (jpath, npath):
        if not p.is_file():
            raise ProgramFormatError(f"{p}: quantized net file not found")
    meta = read_json_object(jpath, str(jpath), ProgramFormatError)
    if meta.get("format") != QuantizedNet.FORMAT or meta.get("version") != QuantizedNet.VERSION:
        raise ProgramFormatError(
            f"{jpath}: expected format {QuantizedNet.FORMAT!r} version {QuantizedNet.VERSION}, "
            f"got {meta.get('format')!r} version {meta.get('version')!r}"
        )
    try:
        with np.load(npath, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise ProgramFormatError(f"{npath}: not a readable npz file ({err})") from None
    try:
        layers = [_layer_from_json(entry, arrays) for entry in meta["layers"]]
        head = [HostOp(name=h["name"], kind=h["kind"], params=h["params"],
                       weights={n: arrays[k] for n, k in h["weights"].items()})
                for h in meta["head"]]
        return QuantizedNet(
            input_name=meta["input_name"],
            input_shape=tuple(meta["input_shape"]),
            input_exponent=int(meta["input_exponent"]),
            layers=layers,
            boundary=meta["boundary"],
            boundary_exponent=int(meta["boundary_exponent"]),
            boundary_shape=tuple(meta["boundary_shape"]),
            head=head,
            exponents={k: int(v) for k, v in meta["exponents"].items()},
            max_abs={k: float(v) for k, v in meta["max_abs"].items()},
            info=meta["info"],
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ProgramFormatError(f"{jpath}: malformed quantized net ({err!r})") from None


def _layer_from_json(entry: dict, arrays: dict[str, np.ndarray]) -> QLayer:
    cls = LAYER_KINDS.get(entry.get("kind"))
    if cls is None:
        raise ValueError(f"unknown layer kind {entry.get('kind')!r}")
    kwargs = {}
    names = {f.name for f in fields(cls)}
    for key, value in entry.items():
        if key in ("kind", "arrays"):
            continue
        if key not in names:
            raise ValueError(f"layer {entry.get('name')!r}: unknown field {key!r}")
        kwargs[key] = tuple(value) if key in cls.TUPLES and value is not None else value
    for fname, key in entry.get("arrays", {}).items():
        arr = arrays[key]
        want = _ARRAY_DTYPES.get(fname)
        if want is not None and arr.dtype != want:
            raise ValueError(f"{key}: dtype {arr.dtype}, expected {np.dtype(want)}")
        kwargs[fname] = arr
    return cls(**kwargs)
