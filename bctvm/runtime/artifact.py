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

Every problem (missing directory or file, corrupt JSON, wrong format version, a file whose
size disagrees with the manifest) is a BadInputError naming the file (exit code 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bctvm.errors import BadInputError
from bctvm.lower.program import DramLayout
from boards import BoardConfig, board_from_dict

FORMAT = "bctvm-artifact"
VERSION = 1


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


def load_artifact(path) -> Artifact:
    """Read and check an artifact directory (see the module docstring)."""
    root = Path(path)
    _need(root.is_dir(), root, "not a directory (compile one with `bctvm compile ... -o DIR`)")
    mpath = root / "manifest.json"
    _need(mpath.is_file(), root, "manifest.json is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadInputError(f"artifact {root}: manifest.json is corrupt ({err})") from None
    _need(isinstance(manifest, dict) and manifest.get("format") == FORMAT, root,
          f"manifest.json is not a {FORMAT} manifest")
    _need(manifest.get("version") == VERSION, root,
          f"manifest version {manifest.get('version')} is not supported (expected {VERSION})")
    for key in ("key", "board_config", "groups", "input", "host_library", "mode"):
        _need(key in manifest, root, f"manifest.json has no '{key}'")
    cfg = board_from_dict(manifest["board_config"], f"artifact {root} board")
    for fname in (manifest["host_library"], "qnet.json", "qnet.npz"):
        _need((root / fname).is_file(), root, f"{fname} is missing")
    for g in manifest["groups"]:
        dram = root / g["dram"]
        _need(dram.is_file(), root, f"{g['dram']} is missing")
        _need(dram.stat().st_size == g["dram_bytes"], root,
              f"{g['dram']} has {dram.stat().st_size} bytes, the manifest says {g['dram_bytes']}")
        for p in g["programs"]:
            f = root / p["file"]
            _need(f.is_file(), root, f"{p['file']} is missing")
            size = f.stat().st_size
            _need(size == p["instructions"] * cfg.insn_bytes, root,
                  f"{p['file']} has {size} bytes, expected {p['instructions']} instructions "
                  f"of {cfg.insn_bytes} bytes")
    return Artifact(root, manifest, cfg)
