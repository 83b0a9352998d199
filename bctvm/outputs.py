"""Output files and directories written whole or not at all.

    check_output_file(path, "--report")        # before the work: a writable file path
    write_atomic(path, data)                   # bytes or text: temp file + os.replace
    with staged_dir(out_dir, force=False) as stage:   # compile -o: build in a staging dir
        ...write files into stage...                  # beside out_dir, renamed into place
                                                      # only when the block completes

An interrupted or failed write leaves the previous content (or nothing) at the destination,
never a partial file: the data goes to a temporary name in the same directory, which is
removed on any exception (KeyboardInterrupt and SIGTERM included) and renamed over the
destination (atomic on POSIX) once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

from bctvm.errors import BadInputError

def check_output_file(path, option: str) -> Path:
    """`path` as a Path after checking a file can be written there (exit 2 otherwise):
    not a directory, its parent an existing writable directory, itself writable if present."""
    p = Path(path)
    if p.is_dir():
        raise BadInputError(f"{option} {p}: is a directory, expected a file path")
    parent = p.parent
    if not parent.is_dir():
        raise BadInputError(f"{option} {p}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{option} {p}: the folder {parent} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise BadInputError(f"{option} {p}: the file is not writable")
    return p


def write_atomic(path, data) -> None:
    """Write bytes or str to `path` through a temporary file in its folder + os.replace."""
    p = Path(path)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".partial", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path, obj) -> None:
    """Strict JSON (NaN/Infinity refused) written atomically."""
    write_atomic(path, json.dumps(obj, indent=1, allow_nan=False))


def save_npy_atomic(path, array) -> None:
    """np.save to `path` atomically (the name is used as given; no .npy is appended)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_atomic(path, buf.getvalue())


def is_artifact_dir(p: Path) -> bool:
    """True when `p` holds a bctvm artifact manifest (any version)."""
    from bctvm.runtime.artifact import FORMAT

    m = p / "manifest.json"
    if not m.is_file():
        return False
    try:
        return json.loads(m.read_text()).get("format") == FORMAT
    except (ValueError, UnicodeDecodeError, AttributeError, OSError):
        return False


def check_output_dir(out, force: bool = False) -> Path:
    """`compile -o` before the work: not a file; an existing non-empty folder must be a
    bctvm artifact (replaced whole) unless `force`."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise BadInputError(f"-o {p}: is a file, expected an artifact directory")
    existing = next(a for a in (p.absolute(), *p.absolute().parents) if a.exists())
    if existing != p.absolute() and not existing.is_dir():
        raise BadInputError(f"-o {p}: {existing} is a file, not a folder")
    if not os.access(existing if existing != p.absolute() else p.absolute().parent,
                     os.W_OK | os.X_OK):
        raise BadInputError(f"-o {p}: cannot write in {existing}")
    if p.is_dir() and any(p.iterdir()) and not is_artifact_dir(p) and not force:
        raise BadInputError(f"-o {p}: the folder is not empty and holds no bctvm artifact; "
                            "choose another folder or pass --force to replace its content")
    return p


@contextlib.contextmanager
def staged_dir(out, force: bool = False):
    """Yield a fresh staging folder beside `out`; on success it replaces `out` as a whole
    (module docstring). On any exception the staging folder is removed and `out` is left
    as it was."""
    p = check_output_dir(out, force)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".staging", dir=parent))
    except OSError as err:
        raise BadInputError(f"-o {p}: cannot write there ({err.strerror})") from None
    try:
        yield stage
        _swap_into_place(stage, p)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _swap_into_place(stage: Path, out: Path) -> None:
    """Rename `stage` to `out`, moving an existing `out` aside first and deleting it after.
    SIGINT/SIGTERM are held back for the two renames, so `out` is the old or the new folder."""
    old = None
    blocked = {signal.SIGINT, signal.SIGTERM}
    prev = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rename(out, old / out.name)
        try:
            os.rename(stage, out)
        except OSError:
            if old is not None:
                os.rename(old / out.name, out)
            raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, prev)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
