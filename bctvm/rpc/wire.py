"""What travels between a deploy client and a board server besides files: arrays as .npy /
.npz bytes (never pickled) and remote errors as "ClassName: message" lines.

    data = pack_arrays({"boundary": b, "out0": y}, meta={"groups": [...]})
    arrays, meta = unpack_arrays(data)
    raise remote_error(rpc_error_text, where)   # the bctvm error class named remotely, else BoardError
"""

from __future__ import annotations

import io
import json
import re

import numpy as np

from bctvm import errors

_META = "__meta__"
_REMOTE = re.compile(r"^([A-Za-z_]\w*(?:Error|Mismatch)): (.+)$", re.M)


def pack_arrays(arrays: dict, meta: dict | None = None) -> bytes:
    """An uncompressed .npz of `arrays` (+ `meta` as JSON text in a uint8 array)."""
    buf = io.BytesIO()
    extra = {_META: np.frombuffer(json.dumps(meta or {}).encode(), dtype=np.uint8)}
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()}, **extra)
    return buf.getvalue()


def unpack_arrays(data: bytes) -> tuple[dict, dict]:
    """(arrays, meta) of pack_arrays' bytes; pickled objects are refused."""
    with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != _META}
        meta = json.loads(z[_META].tobytes().decode()) if _META in z.files else {}
    return arrays, meta


def npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(x), allow_pickle=False)
    return buf.getvalue()


def from_npy_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(bytes(data)), allow_pickle=False)


def error_line(err: BaseException) -> str:
    """How a server names an error to its client: "ClassName: message" on one line."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def remote_error(text: str, where: str) -> errors.BctvmError:
    """The bctvm error a remote "ClassName: message" line names (same class, so the same exit
    code), or a BoardError carrying the first line of any other remote failure."""
    for name, msg in _REMOTE.findall(text):
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, errors.BctvmError):
            return cls(f"{where}: {msg}")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln),
                  lines[-1] if lines else "no detail")
    return errors.BoardError(f"{where}: {detail}")
