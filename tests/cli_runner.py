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
