"""`bctvm run DIR`: load an artifact, run it on the simulator board, validate, report.

Returns the summary text; writes --output (float32 .npy) and --report (strict JSON) first,
each atomically (bctvm.outputs), then raises ValidationMismatch (exit 1) when the boundary
tensor is not bit-exact with the integer reference. Output paths are checked before anything
runs. A missing / unreadable / wrong-shape or wrong-dtype input, or one holding NaN or
infinite values, is a BadInputError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bctvm.errors import BadInputError, ValidationMismatch
from bctvm.outputs import check_output_file, save_npy_atomic, write_json_atomic

from .artifact import load_artifact
from .executor import ModelRunner
from .report import build_report, summary_text


def load_input(path, shape) -> np.ndarray:
    """float32 NCHW array from a .npy file (or random N(0,1) with seed 0 when path is None)."""
    if path is None:
        return np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"--input {p}: no such file")
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise BadInputError(f"--input {p}: not a .npy array ({err})") from None
    if x.dtype != np.float32:
        raise BadInputError(f"--input {p}: dtype {x.dtype}, expected float32 NCHW {tuple(shape)}")
    if tuple(x.shape) != tuple(shape):
        raise BadInputError(f"--input {p}: shape {tuple(x.shape)}, expected float32 NCHW "
                            f"{tuple(shape)}")
    check_finite(x, f"--input {p}")
    return x


def check_finite(x: np.ndarray, what: str) -> None:
    """BadInputError when a float input holds NaN or +-Inf (they have no int8 value)."""
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise BadInputError(f"{what}: {int(bad.sum())} values are NaN or infinite (first at "
                            f"index {first}); the input must be finite")


def run_artifact(path, input_path=None, output_path=None, report_path=None,
                 float_model: bool = True) -> str:
    if output_path:
        check_output_file(output_path, "--output")
    if report_path:
        check_output_file(report_path, "--report")
    art = load_artifact(path)
    x = load_input(input_path, art.input_shape())
    result = ModelRunner(art).run(x)
    return finish_run(art, result, x, output_path, report_path, float_model=float_model)[0]


def finish_run(art, result, x, output_path=None, report_path=None, float_model: bool = True,
               validate: bool = True, extra: dict | None = None) -> tuple[str, dict]:
    """Report a finished run (`run` and `deploy`): build the report (+ `extra` keys), write
    --output and --report, then raise ValidationMismatch when not bit-exact. (text, report)."""
    rep = build_report(art, result, x, validate_run=validate, float_model=float_model)
    rep.update(extra or {})
    if output_path:
        save_npy_atomic(output_path, result.output[0].astype(np.float32))
    if report_path:
        write_json_atomic(report_path, rep)
    text = summary_text(rep)
    v = rep.get("validation")
    if v and not v["ok"]:
        raise ValidationMismatch(
            f"{art.path}: VTA result differs from the integer reference "
            f"({v['mismatched_values']} values, max error {v['max_abs_err']})")
    return text, rep
