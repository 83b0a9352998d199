"""The board server's artifact store: artifacts a client uploaded, kept by digest.

    store = ArtifactStore(workdir)
    store.has(digest)                          # held and every board file verifies
    store.put(digest, relpath, offset, data)   # one chunk of one file into staging
    store.commit(digest, relpaths)             # verify staging, move to WORKDIR/artifacts/<digest>
    art = store.load(digest)                   # the verified Artifact (board files only)

Layout: WORKDIR/artifacts/<digest>/ (complete, verified) and WORKDIR/staging/<digest>/ (being
uploaded). A board holds only what it runs (`board_files`): the manifest, the host library,
the VTA programs and the DRAM templates; not the float model nor the integer reference, which
stay with the client that validates. Nothing is loaded before its digests check.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from bctvm.errors import BadInputError
from bctvm.runtime.artifact import Artifact, read_manifest, verify_artifact
from bctvm.runtime.integrity import MANIFEST, safe_path

_DIGEST = re.compile(r"[0-9a-f]{64}")


def board_files(manifest: dict) -> list[str]:
    """Relpaths a board needs to run an artifact (not manifest.json, which is sent first)."""
    files = [manifest["host_library"]]
    for g in manifest["groups"]:
        files += [p["file"] for p in g["programs"]]
        files.append(g["dram"])
    return files


class ArtifactStore:
    """Artifacts by digest under a work directory (module docstring)."""

    def __init__(self, workdir):
        # absolute: TVM's RPC server runs each session in a temporary working directory
        self.root = Path(workdir).resolve()
        (self.root / "artifacts").mkdir(parents=True, exist_ok=True)
        (self.root / "staging").mkdir(parents=True, exist_ok=True)

    def _dir(self, kind: str, digest: str) -> Path:
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise BadInputError(f"artifact digest {digest!r} is not 64 hex digits")
        return self.root / kind / digest

    def has(self, digest: str) -> bool:
        """True when the artifact is held and all its board files verify."""
        d = self._dir("artifacts", digest)
        if not (d / MANIFEST).is_file():
            return False
        try:
            self.load(digest)
        except BadInputError:
            shutil.rmtree(d, ignore_errors=True)  # corrupted on disk: the client re-uploads
            return False
        return True

    def put(self, digest: str, relpath: str, offset: int, data: bytes) -> int:
        """Write `data` at byte `offset` of staging/<digest>/<relpath>; returns the bytes written."""
        d = self._dir("staging", digest)
        if offset == 0 and relpath == MANIFEST:
            shutil.rmtree(d, ignore_errors=True)  # a fresh upload starts with the manifest
        d.mkdir(parents=True, exist_ok=True)
        if relpath != MANIFEST and relpath not in read_manifest(d).get("files", {}):
            raise BadInputError(f"upload of {digest[:12]}: {relpath!r} is not a file of its "
                                "manifest (send manifest.json first)")
        path = safe_path(d, relpath, "uploaded file")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.write(bytes(data))
        return len(data)

    def commit(self, digest: str, relpaths: list[str]) -> None:
        """Verify the staged upload (its digest and every uploaded file) and make it current."""
        staged = self._dir("staging", digest)
        art = verify_artifact(staged, only=list(relpaths))
        if art.digest != digest:
            raise BadInputError(f"uploaded artifact has digest {art.digest}, expected {digest}")
        missing = sorted(set(board_files(art.manifest)) - set(relpaths))
        if missing:
            raise BadInputError(f"upload of {digest[:12]} lacks {', '.join(missing)}")
        final = self._dir("artifacts", digest)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staged, final)

    def load(self, digest: str) -> Artifact:
        """The held artifact, its manifest and board files verified first."""
        d = self._dir("artifacts", digest)
        art = verify_artifact(d, only=())  # schema, paths and digest of the manifest
        return verify_artifact(d, only=board_files(art.manifest))
