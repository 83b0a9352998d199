"""Reading a compiled artifact directory (what bctvm.compiler writes).

Files:
    manifest.json     model, board (name + every field), mode, block settings, input /
                      boundary / output signatures and exponents, versions, and per group:
                      layers, VTA programs, DRAM template, regions, argument -> regions
    host.so           host library (Relax VM executable, llvm) for the host ops; it calls
                      each VTA group by name (call_dps_packed "bctvm.vta.<key>.g<i>")
    g<i>.p<k>.bin     group i's VTA instruction streams (16-byte little-endian instructions)
    g<i>.dram.bin     group i's DRAM template: packed weights, biases, signs and micro-ops
                      (input and residual regions zero; filled per inference)
    qnet.json/.npz    the calibrated QuantizedNet (integer reference)
    model.pt2         the float model (torch.export) for validation
    example_input.npy the example input the model was compiled with

Integrity (bctvm.runtime.integrity): the manifest lists every other file of the directory
under "files" ({relpath: {"bytes", "sha256"}}) and "digest" = sha256 of the canonical JSON of
that mapping, the artifact's identity. `verify_artifact` checks the manifest field by field
(manifest_schema.py), that every path stays inside the directory, and the size and SHA-256 of
every file, before anything is read or loaded. Every problem is a BadInputError naming the
file or field (exit code 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bctvm.errors import BadInputError
from bctvm.lower.program import DramLayout
from boards import BoardConfig, board_from_dict

from .integrity import MANIFEST, check_files, safe_path
from .manifest_schema import check_manifest

FORMAT = "bctvm-artifact"
VERSION = 2  # 2: "files" (size + SHA-256 of every file) and "digest"
_MANIFEST_MAX_BYTES = 64 << 20


@dataclass
class Artifact:
    """A loaded, checked artifact directory."""

    path: Path
    manifest: dict
    cfg: BoardConfig

    @property
    def groups(self) -> list[dict]:
        return self.manifest["groups"]

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON of the manifest's "files": the artifact's identity."""
        return self.manifest["digest"]

    def file(self, name: str) -> Path:
        return self.path / name

    def programs(self, group: dict) -> list[bytes]:
        """The encoded instruction streams of a group, in run order."""
        return [self.file(p["file"]).read_bytes() for p in group["programs"]]

    def template(self, group: dict) -> np.ndarray:
        """The group's DRAM template image (uint8)."""
        return np.fromfile(self.file(group["dram"]), dtype=np.uint8)

    def layout(self, group: dict) -> DramLayout:
        """The group's DRAM layout as compiled (regions with model-level kinds)."""
        return DramLayout.from_regions(self.cfg, group["regions"])

    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["input"]["shape"])


def _need(cond: bool, path: Path, why: str) -> None:
    if not cond:
        raise BadInputError(f"artifact {path}: {why}")


def read_manifest(root: Path) -> dict:
    """manifest.json of `root` as a dict (format and version checked, nothing else)."""
    _need(root.is_dir(), root, "not a directory (compile one with `bctvm compile ... -o DIR`)")
    mpath = root / MANIFEST
    _need(mpath.is_file(), root, "manifest.json is missing")
    _need(mpath.stat().st_size <= _MANIFEST_MAX_BYTES, root,
          f"manifest.json is larger than {_MANIFEST_MAX_BYTES} bytes")
    try:
        manifest = json.loads(mpath.read_text(), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise BadInputError(f"artifact {root}: manifest.json is corrupt ({err})") from None
    _need(isinstance(manifest, dict) and manifest.get("format") == FORMAT, root,
          f"manifest.json is not a {FORMAT} manifest")
    _need(manifest.get("version") == VERSION, root,
          f"manifest version {manifest.get('version')!r} is not supported (expected {VERSION}; "
          "recompile the model)")
    return manifest


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def verify_artifact(path, only=None) -> Artifact:
    """Check an artifact directory without loading anything from it (module docstring).

    `only`: an iterable of relpaths; only those files are checked (the others listed in the
    manifest may be absent, e.g. on a board that holds just the files it needs)."""
    root = Path(path)
    manifest = read_manifest(root)
    check_manifest(manifest, root)
    for rel in manifest["files"]:
        safe_path(root, rel, "file")
    check_files(root, manifest["files"], only)
    cfg = board_from_dict(manifest["board_config"], f"artifact {root} board")
    return Artifact(root, manifest, cfg)


def load_artifact(path) -> Artifact:
    """verify_artifact(path): every file checked before the runtime reads or loads any."""
    return verify_artifact(path)


def verify_text(art: Artifact) -> str:
    """What `bctvm verify DIR` prints: every file with its size and SHA-256, then the digest."""
    files = art.manifest["files"]
    width = max(len(rel) for rel in files)
    lines = [f"{rel:<{width}}  {e['bytes']:>12,} bytes  sha256 {e['sha256']}"
             for rel, e in sorted(files.items())]
    lines.append(f"artifact {art.path}: {len(files)} files verified, digest {art.digest}")
    return "\n".join(lines)
