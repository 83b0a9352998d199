"""bctvm command line (typer). Each command is a few lines over the library.

Errors: every bctvm.errors.BctvmError becomes a one-line message on stderr and its exit code
(0 ok, 1 validation mismatch, 2 bad input, 3 board/RPC failure); this mapping lives in main().
"""

from __future__ import annotations

import sys

import typer

from bctvm.errors import BctvmError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


@app.callback()
def _root() -> None:
    """bctvm: block-convolution CNNs on the VTA accelerator, built on Apache TVM."""


# --- boards ------------------------------------------------------------------------------


@app.command("boards")
def boards_cmd() -> None:
    """List the board configurations with their derived sizes."""
    from boards import list_boards, load_board

    for name in list_boards():
        typer.echo(load_board(name).summary())


# --- commands are added below by area (VTA tools, models/training, compiler, RPC) --------


def main() -> None:
    """Console-script entry: run the app, turning BctvmError into a one-line error + exit code."""
    try:
        app(standalone_mode=False)
    except BctvmError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except SystemExit:
        raise
    except (typer.Exit, typer.Abort) as err:
        sys.exit(getattr(err, "exit_code", 1))
    except Exception as err:  # click usage errors carry their own exit code
        code = getattr(err, "exit_code", None)
        if code is not None:
            if hasattr(err, "show"):
                err.show()
            sys.exit(code)
        raise


if __name__ == "__main__":
    main()
