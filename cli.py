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


# --- models: zoo listing -------------------------------------------------------------------


@app.command("zoo")
def zoo_cmd(
    macs: bool = typer.Option(False, "--macs", help="also count conv + Linear MACs"),
    input_shape: str = typer.Option("1,3,224,224", help="N,C,H,W for --macs"),
    block_size: int = typer.Option(None, help="block size (default: each model's own)"),
    type: str = typer.Option("fixed", "--type", help="fixed | hierarchical"),
) -> None:
    """List the block-convolution model zoo (default block size, parameters, MACs)."""
    from bctvm.models.zoo import describe_zoo, parse_input_shape

    kw = {"type": type} if block_size is None else {"type": type, "block_size": block_size}
    shape = parse_input_shape(input_shape) if macs else None
    for line in describe_zoo(shape, **kw):
        typer.echo(line)


# --- VTA tools: disasm, sim, sim-selftest ---------------------------------------------------


@app.command("disasm")
def disasm_cmd(
    program: str = typer.Argument(..., help="instruction stream .bin (16-byte instructions)"),
    board: str = typer.Option("pynq", help="board name or .toml file"),
    dram: str = typer.Option(None, help="DRAM image: also list the micro-ops each LOAD UOP loads"),
) -> None:
    """Print a program, one line per instruction."""
    from boards import load_board
    from bctvm.disasm import disassemble
    from bctvm.program import load_dram, load_program

    cfg = load_board(board)
    image = load_dram(dram) if dram else None
    for line in disassemble(load_program(program, cfg), cfg, image):
        typer.echo(line)


@app.command("sim")
def sim_cmd(
    program: str = typer.Argument(..., help="instruction stream .bin"),
    dram: str = typer.Option(..., help="flat DRAM image file"),
    board: str = typer.Option("pynq", help="board name or .toml file"),
    dram_out: str = typer.Option(None, help="write the final DRAM image here"),
    report: str = typer.Option(None, help="write the JSON report (counters, cycles, latency)"),
    regions: str = typer.Option(None, help="region map JSON (default: IMAGE.regions.json if present)"),
) -> None:
    """Run a program on the simulator and print a short summary."""
    import json

    from boards import load_board
    from bctvm.program import load_dram, load_regions, read_program_bytes, regions_path, save_dram
    from bctvm.selftest import format_report
    from bctvm.sim import Simulator

    cfg = load_board(board)
    stream, image = read_program_bytes(program), load_dram(dram)  # the simulator decodes it
    side = regions or (regions_path(dram) if regions_path(dram).is_file() else None)
    res = Simulator(cfg).run(stream, image, regions=load_regions(side) if side else None)
    out = res.to_report()
    typer.echo(format_report(out))
    if dram_out:
        save_dram(dram_out, res.dram)
    if report:
        with open(report, "w") as f:
            json.dump(out, f, indent=1)


@app.command("sim-selftest")
def sim_selftest_cmd(
    board: str = typer.Option("pynq", help="board name or .toml file"),
    report: str = typer.Option(None, help="write the JSON report here"),
    out: str = typer.Option(None, help="folder for PROG.bin, IMAGE.bin (+ regions) of the self-test"),
    seed: int = typer.Option(0, help="random seed of the layer's data"),
) -> None:
    """Run a 3x3 conv layer program on the simulator and check it against numpy."""
    import json
    from pathlib import Path

    from bctvm.program import regions_path, save_dram, save_program, save_regions
    from bctvm.selftest import format_report, raise_on_mismatch, run_selftest

    rep, prog = run_selftest(board, seed=seed, strict=False)
    typer.echo(format_report(rep))
    if out:
        d = Path(out)
        save_program(d / "PROG.bin", prog.insns, prog.cfg)
        save_dram(d / "IMAGE.bin", prog.dram)
        save_regions(regions_path(d / "IMAGE.bin"), prog.regions)
        typer.echo(f"wrote {d / 'PROG.bin'} and {d / 'IMAGE.bin'}: try "
                   f"`bctvm sim {d / 'PROG.bin'} --dram {d / 'IMAGE.bin'} --board {prog.cfg.name}`")
    if report:
        Path(report).write_text(json.dumps(rep, indent=1))
    raise_on_mismatch(rep)


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
