"""File integrity of an artifact directory: sizes, SHA-256 digests and safe relative paths.

    files = record_files(dir)        # {relpath: {"bytes": int, "sha256": hex}} (not manifest.json)
    digest = files_digest(files)     # sha256 of the canonical JSON of `files`: the identity
    check_files(dir, files, only)    # sizes and digests on disk; BadInputError naming the file

A relpath is "/"-separated, relative, without "." or ".." components, and resolves (through
any symlink) to a regular file inside the directory. Nothing here reads a file's content
except to hash it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath

from bctvm.errors import BadInputError

MANIFEST = "manifest.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20  # bytes hashed per read


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_digest(files: dict) -> str:
    """sha256 of the canonical JSON (sorted keys, compact separators) of the files mapping."""
    text = json.dumps(files, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def record_files(root) -> dict:
    """{relpath: {"bytes", "sha256"}} of every regular file under `root` but manifest.json."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel == MANIFEST or not p.is_file():
            continue
        out[rel] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    return out


def check_relpath(root: Path, rel, what: str) -> None:
    """rel is a plain "/"-separated relative path: no "", ".", ".." parts, not absolute."""
    if not isinstance(rel, str) or not rel:
        raise BadInputError(f"artifact {root}: {what} must be a relative file name, got {rel!r}")
    if PurePosixPath(rel).is_absolute() or "\\" in rel or "\0" in rel or \
            any(part in ("", ".", "..") for part in rel.split("/")):
        raise BadInputError(f"artifact {root}: {what} '{rel}' is not a plain relative path "
                            "inside the artifact directory")


def safe_path(root: Path, rel, what: str) -> Path:
    """root/rel after checking rel is a plain relative path that stays inside root (also
    through symlinks)."""
    check_relpath(root, rel, what)
    full = root / rel
    try:
        full.resolve().relative_to(root.resolve())
    except ValueError:
        raise BadInputError(f"artifact {root}: {what} '{rel}' resolves outside the artifact "
                            "directory") from None
    return full


def check_entry(rel, entry, root: Path) -> None:
    """One `files` entry: {"bytes": int >= 0, "sha256": 64 lower-case hex digits}."""
    check_relpath(root, rel, "file")
    where = f"artifact {root}: manifest.json files['{rel}']"
    if not isinstance(entry, dict) or set(entry) != {"bytes", "sha256"}:
        raise BadInputError(f"{where} must be {{\"bytes\": int, \"sha256\": hex}}")
    n, h = entry["bytes"], entry["sha256"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise BadInputError(f"{where}.bytes must be a non-negative integer, got {n!r}")
    if not isinstance(h, str) or not _HEX64.fullmatch(h):
        raise BadInputError(f"{where}.sha256 must be 64 lower-case hex digits, got {h!r}")


def is_hex_digest(value) -> bool:
    return isinstance(value, str) and bool(_HEX64.fullmatch(value))


def check_files(root: Path, files: dict, only=None) -> None:
    """Each listed file (or each of `only`) exists inside root with its size and SHA-256."""
    names = sorted(files) if only is None else list(dict.fromkeys(only))
    for rel in names:
        if rel not in files:
            raise BadInputError(f"artifact {root}: {rel} is not a file of this artifact "
                                "(not in the manifest)")
        path = safe_path(root, rel, "file")
        if not path.exists():
            raise BadInputError(f"artifact {root}: {rel} is missing")
        if not path.is_file():
            raise BadInputError(f"artifact {root}: {rel} is not a regular file")
        want = files[rel]
        size = os.stat(path).st_size
        if size != want["bytes"]:
            raise BadInputError(f"artifact {root}: {rel} has {size} bytes, the manifest says "
                                f"{want['bytes']}")
        got = sha256_file(path)
        if got != want["sha256"]:
            raise BadInputError(f"artifact {root}: {rel} has SHA-256 {got[:16]}..., "
                                f"the manifest says {want['sha256'][:16]}... (the file was "
                                "changed after compiling)")
