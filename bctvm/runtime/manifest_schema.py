"""Field-by-field check of an artifact's manifest.json (the format bctvm.compiler writes).

    check_manifest(manifest, root)   # BadInputError naming the field, e.g.
                                     # "manifest.json groups[0].regions.out.nbytes: must be ..."

It checks types, ranges and the cross-references the runtime relies on: every file the
manifest names is listed in `files` (and `digest` is the digest of `files`), program and
template sizes agree with `files`, regions lie inside their template, argument regions exist,
and each group's packed-function name is "bctvm.vta.<key>.<group name>" (the runtime
registers those names; nothing else may be overridden). File contents are checked by
bctvm.runtime.integrity, not here.
"""

from __future__ import annotations

import math
import re

import numpy as np

from boards import board_from_dict
from bctvm.errors import BadInputError
from bctvm.lower.program import KINDS

from .integrity import check_entry, files_digest, is_hex_digest

_KEY = re.compile(r"[0-9a-f]{1,64}")
_GROUP = re.compile(r"g[0-9]{1,6}")
_DTYPES = ("int8", "uint8", "int32", "uint32", "float32")


class _Fields:
    """Typed access to manifest fields; every failure names the dotted field path."""

    def __init__(self, root):
        self.root = root

    def fail(self, where: str, why: str):
        raise BadInputError(f"artifact {self.root}: manifest.json {where}: {why}")

    def get(self, obj: dict, key: str, where: str, kind, optional: bool = False):
        path = f"{where}.{key}" if where else key
        if key not in obj:
            if optional:
                return None
            self.fail(path, "missing")
        value = obj[key]
        self.of(value, kind, path)
        return value

    def of(self, value, kind, path: str):
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "num": isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value),
            "dict": isinstance(value, dict),
            "list": isinstance(value, list),
            "bool": isinstance(value, bool),
        }[kind]
        if not ok:
            self.fail(path, f"must be a {kind}, got {type(value).__name__} {_short(value)}")

    def nat(self, obj: dict, key: str, where: str, low: int = 0) -> int:
        v = self.get(obj, key, where, "int")
        if v < low:
            self.fail(f"{where}.{key}", f"must be >= {low}, got {v}")
        return v

    def shape(self, obj: dict, key: str, where: str, low: int = 1) -> list:
        v = self.get(obj, key, where, "list")
        for i, d in enumerate(v):
            self.of(d, "int", f"{where}.{key}[{i}]")
            if d < low:
                self.fail(f"{where}.{key}[{i}]", f"must be >= {low}, got {d}")
        return v

    def strs(self, obj: dict, key: str, where: str, optional: bool = False) -> list:
        v = self.get(obj, key, where, "list", optional)
        for i, s in enumerate(v or []):
            self.of(s, "str", f"{where}.{key}[{i}]")
        return v or []


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_manifest(m, root) -> None:
    """Raise BadInputError naming the first bad field of manifest `m` (module docstring)."""
    f = _Fields(root)
    if not isinstance(m, dict):
        f.fail("(top level)", "must be a JSON object")
    key = f.get(m, "key", "", "str")
    if not _KEY.fullmatch(key):
        f.fail("key", f"must be 1-64 lower-case hex digits, got {_short(key)}")
    for name in ("model", "board", "mode", "host_library", "qnet"):
        f.get(m, name, "", "str")
    f.get(m, "float_model", "", "str", optional=True)
    for name in ("board_config", "block", "versions", "compile_seconds"):
        f.get(m, name, "", "dict")
    f.strs(m, "host_layers", "")
    f.get(m, "host_fallbacks", "", "dict", optional=True)

    inp = f.get(m, "input", "", "dict")
    f.get(inp, "name", "input", "str")
    if len(f.shape(inp, "shape", "input")) != 4:
        f.fail("input.shape", "must be N,C,H,W (4 dimensions)")
    if f.get(inp, "dtype", "input", "str") != "float32":
        f.fail("input.dtype", f"must be float32, got {inp['dtype']!r}")
    f.get(inp, "exponent", "input", "int")
    bnd = f.get(m, "boundary", "", "dict")
    f.shape(bnd, "shape", "boundary")
    f.get(bnd, "exponent", "boundary", "int")
    for i, o in enumerate(f.get(m, "output", "", "list")):
        f.of(o, "dict", f"output[{i}]")
        f.shape(o, "shape", f"output[{i}]", low=0)
        f.get(o, "dtype", f"output[{i}]", "str")

    files = f.get(m, "files", "", "dict")
    for rel, entry in files.items():
        check_entry(rel, entry, root)
    digest = f.get(m, "digest", "", "str")
    if not is_hex_digest(digest):
        f.fail("digest", "must be 64 lower-case hex digits")
    if digest != files_digest(files):
        f.fail("digest", "is not the digest of 'files' (the manifest was edited)")

    def listed(rel: str, where: str) -> dict:
        if rel not in files:
            f.fail(where, f"'{rel}' is not listed in 'files'")
        return files[rel]

    listed(m["host_library"], "host_library")
    for ext in (".json", ".npz"):
        listed(m["qnet"] + ext, "qnet")
    if m.get("float_model") is not None:
        listed(m["float_model"], "float_model")

    groups = f.get(m, "groups", "", "list")
    if not groups:
        f.fail("groups", "must list at least one VTA group")
    insn_bytes = board_from_dict(m["board_config"], f"artifact {root} board").insn_bytes
    for i, g in enumerate(groups):
        _check_group(f, g, f"groups[{i}]", key, listed, insn_bytes)


def _check_group(f: _Fields, g, where: str, key: str, listed, insn_bytes: int) -> None:
    f.of(g, "dict", where)
    name = f.get(g, "name", where, "str")
    if not _GROUP.fullmatch(name):
        f.fail(f"{where}.name", f"must be g<number>, got {_short(name)}")
    fn = f.get(g, "function", where, "str")
    if fn != f"bctvm.vta.{key}.{name}":
        f.fail(f"{where}.function", f"must be 'bctvm.vta.{key}.{name}', got {_short(fn)}")
    f.strs(g, "layers", where)
    f.shape(g, "grid", where)
    f.get(g, "signature", where, "dict")
    f.get(g, "macs", where, "int")
    dram = f.get(g, "dram", where, "str")
    size = f.nat(g, "dram_bytes", where)
    if listed(dram, f"{where}.dram")["bytes"] != size:
        f.fail(f"{where}.dram_bytes", f"{size} disagrees with files['{dram}']")
    programs = f.get(g, "programs", where, "list")
    if not programs:
        f.fail(f"{where}.programs", "must list at least one program")
    for k, p in enumerate(programs):
        pw = f"{where}.programs[{k}]"
        f.of(p, "dict", pw)
        pf = f.get(p, "file", pw, "str")
        f.get(p, "name", pw, "str")
        n = f.nat(p, "instructions", pw, low=1)
        if listed(pf, f"{pw}.file")["bytes"] != n * insn_bytes:
            f.fail(f"{pw}.instructions", f"{n} instructions of {insn_bytes} bytes disagree "
                   f"with files['{pf}']")
    regions = f.get(g, "regions", where, "dict")
    for rname, r in regions.items():
        rw = f"{where}.regions.{rname}"
        f.of(r, "dict", rw)
        start, nbytes = f.nat(r, "start", rw), f.nat(r, "nbytes", rw)
        shape = f.shape(r, "shape", rw, low=0)
        dtype = f.get(r, "dtype", rw, "str")
        if dtype not in _DTYPES:
            f.fail(f"{rw}.dtype", f"must be one of {', '.join(_DTYPES)}, got {_short(dtype)}")
        if int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize != nbytes:
            f.fail(f"{rw}.nbytes", f"{nbytes} is not the size of {dtype} {tuple(shape)}")
        if start + nbytes > size:
            f.fail(rw, f"bytes [{start}, {start + nbytes}) lie past the template "
                   f"({size} bytes)")
        if f.get(r, "kind", rw, "str") not in KINDS:
            f.fail(f"{rw}.kind", f"must be one of {', '.join(KINDS)}, got {_short(r['kind'])}")
        f.get(r, "tensor", rw, "str", optional=True)
    if "out" not in regions:
        f.fail(f"{where}.regions", "has no 'out' region")
    args = f.get(g, "args", where, "list")
    for a, names in enumerate(args):
        f.of(names, "list", f"{where}.args[{a}]")
        for j, rname in enumerate(names):
            f.of(rname, "str", f"{where}.args[{a}][{j}]")
            if rname not in regions:
                f.fail(f"{where}.args[{a}][{j}]", f"names no region ('{_short(rname)}')")
