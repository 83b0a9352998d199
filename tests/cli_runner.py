"""Run the `bctvm` console entry in-process (tests of the CLI's output and exit codes)."""

from __future__ import annotations

import sys


def run_cli(monkeypatch, *args) -> int:
    """cli.main() with argv = bctvm ARGS; returns the exit code (0 when it returns)."""
    import cli

    monkeypatch.setattr(sys, "argv", ["bctvm", *map(str, args)])
    try:
        cli.main()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def cli_output(*args) -> tuple[int, str, str]:
    """cli.main() with argv = bctvm ARGS, its stdout and stderr captured (no monkeypatch, so
    module-scoped fixtures can use it): (exit code, stdout, stderr)."""
    import contextlib
    import io

    import cli

    argv, sys.argv = sys.argv, ["bctvm", *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()
