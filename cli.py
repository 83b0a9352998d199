"""bctvm command line (typer). Each command is a few lines over the library.

Errors: every bctvm.errors.BctvmError becomes a one-line message on stderr and its exit code
(0 ok, 1 validation mismatch, 2 bad input, 3 board/RPC failure, 4 internal error, 130 SIGINT,
143 SIGTERM; the codes live in bctvm/errors.py); this mapping lives in main().
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
from dataclasses import dataclass

import typer

from bctvm import errors
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


# --- training: data, train, eval (bctvm/train/run.py) ---------------------------------------


@app.command("data")
def data_cmd(
    name: str = typer.Argument(..., help="bundled dataset to export: digits"),
    out_dir: str = typer.Argument(..., help="writes OUT_DIR/train/<class>/*.png and OUT_DIR/val/"),
    size: int = typer.Option(32, help="image side in pixels"),
    per_class: int = typer.Option(None, help="keep only the first N images per class and split"),
) -> None:
    """Export a bundled dataset (no download) as an ImageFolder tree of PNGs."""
    from bctvm.train.run import export_dataset

    counts = export_dataset(name, out_dir, size=size, per_class=per_class)
    typer.echo(", ".join(f"{k}: {n} images" for k, n in counts.items()) + f" in {out_dir}")


@app.command("train")
def train_cmd(
    data_dir: str = typer.Argument(..., help="ImageFolder root with train/ (and val/)"),
    arch: str = typer.Option(None, help="zoo model (default block_resnet18, or the --resume one)"),
    block_size: str = typer.Option(None, help="N or H,W; 0 = whole side (default 8)"),
    type: str = typer.Option(None, "--type", help="fixed | hierarchical (default fixed)"),
    padding: str = typer.Option(None, help="constant | replicate | reflect (default constant)"),
    input_size: int = typer.Option(None, help="image side in pixels (default 32)"),
    epochs: int = typer.Option(10, help="total epochs (a resumed run continues up to this)"),
    lr: float = typer.Option(0.1, help="initial learning rate"),
    wd: float = typer.Option(1e-4, help="weight decay"),
    momentum: float = typer.Option(0.9, help="SGD momentum"),
    milestones: str = typer.Option("", help="epochs where lr is multiplied by 0.1, e.g. 10,20"),
    batch_size: int = typer.Option(64, help="images per SGD step"),
    workers: int = typer.Option(0, help="data-loading worker processes"),
    resume: str = typer.Option(None, help="checkpoint to continue from (last.pt)"),
    reset_optimizer: bool = typer.Option(False, help="with --resume: keep only the weights"),
    out: str = typer.Option("runs/train", help="folder for last.pt and best.pt"),
    seed: int = typer.Option(0, help="seed of weight init and shuffling"),
) -> None:
    """Train a zoo block CNN on an ImageFolder tree; checkpoints every epoch."""
    from bctvm.train.run import summarize, train_from_folder

    history, _ = train_from_folder(
        data_dir, out, arch=arch, block_size=block_size, type=type, padding_mode=padding,
        input_size=input_size, epochs=epochs, lr=lr, wd=wd, momentum=momentum,
        milestones=milestones, batch_size=batch_size, workers=workers, resume=resume,
        reset_optimizer=reset_optimizer, seed=seed)
    typer.echo(summarize(history, out))


@app.command("eval")
def eval_cmd(
    ckpt: str = typer.Argument(..., help="checkpoint written by `bctvm train`"),
    data_dir: str = typer.Argument(..., help="ImageFolder root"),
    split: str = typer.Option("val", help="subfolder of DATA_DIR to evaluate"),
    batch_size: int = typer.Option(128, help="images per batch"),
    workers: int = typer.Option(0, help="data-loading worker processes"),
) -> None:
    """Rebuild the model from a checkpoint and print its top-1 / top-5 on DATA_DIR/SPLIT."""
    from bctvm.train.run import eval_checkpoint

    r = eval_checkpoint(ckpt, data_dir, split=split, batch_size=batch_size, workers=workers)
    typer.echo(f"{split}: top-1 {r['top1']:.2f}%  top-5 {r['top5']:.2f}%  "
               f"loss {r['loss']:.4f}  ({r['images']} images)")


# --- quantization: int8 calibration and its integer reference (bctvm/quant/run.py) ----------


@app.command("quantize")
def quantize_cmd(
    ckpt: str = typer.Argument(..., help="checkpoint written by `bctvm train`"),
    data_dir: str = typer.Argument(..., help="ImageFolder root (calibrates on DATA_DIR/train)"),
    calib: int = typer.Option(256, help="calibration images, spread over DATA_DIR/train"),
    split: str = typer.Option("val", help="subfolder of DATA_DIR to compare on"),
    out: str = typer.Option(None, "-o", "--out", help="write OUT.json + OUT.npz"),
    batch_size: int = typer.Option(64, help="images per batch"),
) -> None:
    """Calibrate int8 power-of-two quantization; print float vs int8 accuracy and agreement."""
    from bctvm.quant.run import quantize_checkpoint

    qnet, r = quantize_checkpoint(ckpt, data_dir, calib=calib, split=split, out=out,
                                  batch_size=batch_size)
    typer.echo(f"{len(qnet.layers)} integer layers, boundary {qnet.boundary} "
               f"(e={qnet.boundary_exponent}), {len(qnet.head)} host ops")
    typer.echo(f"{split}: float top-1 {r['float_top1']:.2f}%  int8 top-1 {r['int8_top1']:.2f}%  "
               f"agreement {100 * r['top1_agreement']:.2f}%  ({r['images']} images)")
    if out:
        typer.echo(f"wrote {out}.json / .npz")


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
    from boards import load_board
    from bctvm.outputs import check_output_file, write_atomic, write_json_atomic
    from bctvm.program import load_dram, load_regions, read_program_bytes, regions_path
    from bctvm.selftest import format_report
    from bctvm.sim import Simulator

    for path, option in ((dram_out, "--dram-out"), (report, "--report")):
        if path:
            check_output_file(path, option)
    cfg = load_board(board)
    stream, image = read_program_bytes(program), load_dram(dram)  # the simulator decodes it
    side = regions or (regions_path(dram) if regions_path(dram).is_file() else None)
    res = Simulator(cfg).run(stream, image, regions=load_regions(side) if side else None)
    out = res.to_report()
    typer.echo(format_report(out))
    if dram_out:
        write_atomic(dram_out, res.dram.tobytes())
    if report:
        write_json_atomic(report, out)


@app.command("sim-selftest")
def sim_selftest_cmd(
    board: str = typer.Option("pynq", help="board name or .toml file"),
    report: str = typer.Option(None, help="write the JSON report here"),
    out: str = typer.Option(None, help="folder for PROG.bin, IMAGE.bin (+ regions) of the self-test"),
    seed: int = typer.Option(0, help="random seed of the layer's data"),
) -> None:
    """Run a 3x3 conv layer program on the simulator and check it against numpy."""
    from pathlib import Path

    from bctvm.outputs import check_output_file, write_json_atomic
    from bctvm.program import regions_path, save_dram, save_program, save_regions
    from bctvm.selftest import format_report, raise_on_mismatch, run_selftest

    if report:
        check_output_file(report, "--report")
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
        write_json_atomic(report, rep)
    raise_on_mismatch(rep)


# --- compiler: plan, compile, run (relay_passes/, bctvm/compiler, bctvm/runtime) ----------

# the model options of `plan`, `compile` and `tune` (one definition: MODEL_OPTIONS)
MODEL_ARG = typer.Argument(..., help="zoo name, file.pt2 or path/to/file.py:factory")
BOARD_OPT = typer.Option("pynq", help="board name or .toml file")
MODEL_OPTIONS = {  # name: (type, typer option), in --help order
    "board": (str, BOARD_OPT),
    "block_size": (int, typer.Option(None, help="block size: a zoo model's, or convert the "
                                     "convs of a model without block convs (default: the "
                                     "model's)")),
    "type": (str, typer.Option(None, "--type", help="fixed | hierarchical (zoo or converted "
                               "models)")),
    "padding": (str, typer.Option(None, help="constant | replicate | reflect (zoo or "
                                  "converted models)")),
    "input_shape": (str, typer.Option("1,3,224,224", help="N,C,H,W")),
    "calib": (int, typer.Option(1, help="random calibration images (fixed seed)")),
    "stem": (str, typer.Option("auto", help="3-channel stem on: auto | vta | host")),
}
CHECKPOINT_OPT = typer.Option(None, "--checkpoint", help="PyTorch checkpoint to load into the "
                              "model (state dict, bare or under 'state_dict'; weights only)")
MODE_OPT = typer.Option("fused", help="fused (blocks stay on chip) | layerwise (stock VTA)")
VERBOSE_OPT = typer.Option(False, "--verbose", "-v", help="plan: one line per layer")


@dataclass
class ModelOptions:
    """The MODEL argument and the MODEL_OPTIONS of a command, as given."""

    model: str
    board: str
    block_size: int | None
    type: str | None
    padding: str | None
    input_shape: str
    calib: int
    stem: str

    def request(self, **more) -> dict:
        """The compile driver's model keywords (bctvm.compiler.driver.front_end), with `more`."""
        from bctvm.models.zoo import parse_input_shape

        return {"board": self.board, "block_size": self.block_size, "block_type": self.type,
                "padding_mode": self.padding,
                "input_shape": parse_input_shape(self.input_shape), "calib": self.calib,
                "stem": self.stem, **more}


def model_command(command):
    """Give a command the MODEL argument (first) and the MODEL_OPTIONS (where its parameter
    `opts: ModelOptions = None` stands, in --help too); it is called with them as one
    ModelOptions `opts` (the None is never used)."""
    sig = inspect.signature(command, eval_str=True)
    own = list(sig.parameters.values())
    at = [p.name for p in own].index("opts")
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    shared = [inspect.Parameter(name, kind, default=opt, annotation=tp)
              for name, (tp, opt) in {"model": (str, MODEL_ARG), **MODEL_OPTIONS}.items()]
    params = shared[:1] + own[:at] + shared[1:] + own[at + 1:]

    @functools.wraps(command)
    def run(**kw):
        opts = ModelOptions(**{p.name: kw.pop(p.name) for p in shared})
        return command(opts=opts, **kw)

    run.__signature__ = sig.replace(parameters=params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


@app.command("plan")
@model_command
def plan_cmd(
    opts: ModelOptions = None,
    groups: str = typer.Option("graph", help="grouping: graph (branches) | chain (linear)"),
    mode: str = MODE_OPT,
    verbose: bool = VERBOSE_OPT,
    json_out: str = typer.Option(None, "--json", help="also write the plan as JSON"),
    checkpoint: str = CHECKPOINT_OPT,
) -> None:
    """Print the program plan the compile executes: groups, footprint vs capacity, knobs."""
    from bctvm.compiler.plan import plan_text

    typer.echo(plan_text(opts.model, **opts.request(mode=mode, checkpoint=checkpoint),
                         policy=groups, verbose=verbose, json_path=json_out))


@app.command("compile")
@model_command
def compile_cmd(
    out: str = typer.Option(None, "--out", "-o", help="artifact directory to write"),
    plan: bool = typer.Option(False, "--plan", help="print the fused-group plan and stop"),
    opts: ModelOptions = None,
    mode: str = MODE_OPT,
    qnet: str = typer.Option(None, "--qnet", help="a saved QuantizedNet (bctvm quantize -o) "
                             "instead of calibrating; needed for .pt2 models"),
    host_fallback: bool = typer.Option(False, "--host-fallback",
                                       help="run a layer that cannot fit the board on the host "
                                       "instead of failing"),
    force: bool = typer.Option(False, "--force", help="replace -o DIR even when it is a "
                               "non-empty folder that is not a bctvm artifact"),
    tuning_log: str = typer.Option(None, "--tuning-log",
                                   help="bctvm tune --log DIR: the best knobs per group"),
    verbose: bool = VERBOSE_OPT,
    checkpoint: str = CHECKPOINT_OPT,
) -> None:
    """Compile a model for a board into an artifact directory (`--plan`: print the plan only)."""
    from bctvm.errors import BadInputError

    request = opts.request(mode=mode, host_fallback=host_fallback, checkpoint=checkpoint)
    if plan:
        from bctvm.compiler.plan import plan_text

        typer.echo(plan_text(opts.model, **request, verbose=verbose))
        return
    if not out:
        raise BadInputError("compile: give the artifact directory with -o DIR (or --plan)")
    from bctvm.compiler import compile_model
    from bctvm.compiler.driver import describe

    manifest = compile_model(opts.model, out_dir=out, **request, qnet=qnet, force=force,
                             tuning_log=tuning_log)
    typer.echo(describe(manifest, out))


@app.command("run")
def run_cmd(
    artifact: str = typer.Argument(..., help="artifact directory (bctvm compile -o DIR)"),
    input: str = typer.Option(None, "--input", help="float32 NCHW .npy (default: random, seed 0)"),
    output: str = typer.Option(None, "--output", help="write the float32 model output (.npy)"),
    report: str = typer.Option(None, "--report", help="write the JSON report here"),
    no_float: bool = typer.Option(False, "--no-float-check",
                                  help="skip the comparison with the float PyTorch model"),
) -> None:
    """Run an artifact on the local simulator board, validate it and report (exit 1: mismatch)."""
    from bctvm.runtime.cli_run import run_artifact

    typer.echo(run_artifact(artifact, input, output, report, float_model=not no_float))


# --- tuning: bctvm tune (bctvm/tune/) ------------------------------------------------------


@app.command("tune")
@model_command
def tune_cmd(
    trials: int = typer.Option(..., "--trials", help="records per task in the log (resumes)"),
    log: str = typer.Option(..., "--log", help="tuning log directory (MetaSchedule JSON database)"),
    opts: ModelOptions = None,
    mode: str = typer.Option("fused", help="fused | layerwise (as compile)"),
    qnet: str = typer.Option(None, "--qnet", help="a saved QuantizedNet (as compile)"),
    checkpoint: str = CHECKPOINT_OPT,
    rpc: str = typer.Option(None, "--rpc", help="measure on the RPC board server at H:P"),
    tracker: str = typer.Option(None, "--tracker", help="lease boards from the tracker at H:P"),
    key: str = typer.Option(None, "--key", help="with --tracker: the boards' key"),
    local: bool = typer.Option(False, "--local", help="measure on the simulator in-process"),
    strategy: str = typer.Option("evolutionary", help="evolutionary (XGBoost-guided) | random"),
    timeout: float = typer.Option(60.0, help="seconds before a board's lease or run fails"),
    parallel: int = typer.Option(None, help="boards measuring at once (default: all the "
                                 "tracker lists under the key; 1 otherwise)"),
    per_iter: int = typer.Option(8, help="candidates measured per search iteration"),
    seed: int = typer.Option(0, help="search seed"),
) -> None:
    """Tune the schedule knobs of a model's fused groups on boards; writes the tuning log."""
    from bctvm.tune.cli_tune import run_tune

    typer.echo(run_tune(opts.model, trials=trials, log=log, strategy=strategy, rpc=rpc,
                        tracker=tracker, key=key, local=local, timeout=timeout,
                        parallel=parallel, per_iter=per_iter, seed=seed,
                        **opts.request(mode=mode, qnet=qnet, checkpoint=checkpoint)))


# --- integrity: verify (bctvm/runtime/integrity.py) ----------------------------------------


@app.command("verify")
def verify_cmd(
    artifact: str = typer.Argument(..., help="artifact directory (bctvm compile -o DIR)"),
) -> None:
    """Check an artifact's manifest, paths, sizes and SHA-256 digests (exit 2 on a mismatch)."""
    from bctvm.runtime.artifact import verify_artifact, verify_text

    typer.echo(verify_text(verify_artifact(artifact)))



# --- boards over RPC: serve, deploy, demo; reports (bctvm/rpc, bctvm/runtime/report_view.py)


TIMEOUT_OPT = typer.Option(120.0, "--timeout", help="seconds each RPC step may take before "
                           "the client gives up (a hung server: exit 3)")


@app.command("serve")
def serve_cmd(
    board: str = BOARD_OPT,
    host: str = typer.Option("127.0.0.1", help="address to bind (TVM RPC has no "
                             "authentication: keep it loopback unless the network is trusted)"),
    port: int = typer.Option(9091, help="port to bind"),
    tracker: str = typer.Option(None, help="register with the tracker at HOST:PORT"),
    key: str = typer.Option(None, help="with --tracker: the key clients lease this board by"),
    workdir: str = typer.Option(None, help="where uploaded artifacts are kept by digest "
                                "(default ~/.cache/bctvm/serve/BOARD)"),
    driver: str = typer.Option("simulator", help="simulator | pynq (a real Pynq board)"),
    bitstream: str = typer.Option(None, help="pynq driver: the VTA bitstream (.bit)"),
) -> None:
    """Serve a board over TVM RPC until Ctrl-C (which stops every child process)."""
    import logging

    from bctvm.rpc.server import BoardServer, serve_forever

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    opts = {"bitstream": bitstream} if driver == "pynq" else {}
    srv = BoardServer(board, host, port, tracker=tracker, key=key, workdir=workdir,
                      driver=driver, options=opts)
    serve_forever(srv, typer.echo)


@app.command("deploy")
def deploy_cmd(
    artifact: str = typer.Argument(..., help="artifact directory (bctvm compile -o DIR)"),
    rpc: str = typer.Option(None, "--rpc", help="board server HOST:PORT"),
    tracker: str = typer.Option(None, help="tracker HOST:PORT (with --key)"),
    key: str = typer.Option(None, help="board key to lease from the tracker"),
    validate: bool = typer.Option(True, "--validate/--no-validate",
                                  help="check the result against the integer reference and "
                                  "the float model"),
    input: str = typer.Option(None, "--input", help="float32 NCHW .npy (default: random, seed 0)"),
    output: str = typer.Option(None, "--output", help="write the float32 model output (.npy)"),
    report: str = typer.Option(None, "--report", help="write the JSON report here"),
    timeout: float = TIMEOUT_OPT,
    wait: float = typer.Option(None, help="seconds to wait for a free board at the tracker "
                               "(default: --timeout)"),
) -> None:
    """Run an artifact on a board server, validate it here and report (exit 3: board/RPC)."""
    from bctvm.rpc.deploy import deploy

    text, _ = deploy(artifact, rpc=rpc, tracker=tracker, key=key, input_path=input,
                     output_path=output, report_path=report, timeout=timeout, wait=wait,
                     validate=validate)
    typer.echo(text)


@app.command("demo")
def demo_cmd(
    model: str = typer.Option("block_resnet18", help="zoo model"),
    board: str = BOARD_OPT,
    input_shape: str = typer.Option("1,3,64,64", help="N,C,H,W"),
    block_size: int = typer.Option(8, help="block size"),
    out: str = typer.Option("build/demo", "--out", "-o", help="artifact directory to write"),
    timeout: float = TIMEOUT_OPT,
) -> None:
    """The main job: compile, serve the simulator board on loopback, deploy over RPC, print
    the validated report (OUT/report.json, OUT/report.png), stop the server."""
    from bctvm.models.zoo import parse_input_shape
    from bctvm.rpc.demo import run_demo

    run_demo(model, board, parse_input_shape(input_shape), block_size, out, timeout, typer.echo)


@app.command("report")
def report_cmd(
    reports: list[str] = typer.Argument(..., help="r.json files or artifact directories "
                                        "(two or more: side by side)"),
    png: str = typer.Option(None, "--png", help="write the plot here (PNG)"),
) -> None:
    """Print reports as a table (per group: DRAM bytes by kind vs the lower bound, cycles)."""
    from bctvm.outputs import check_output_file
    from bctvm.runtime.report_view import plot_reports, read_report, report_table

    if png:
        check_output_file(png, "--png")
    reps = [read_report(r) for r in reports]
    typer.echo(report_table(reps))
    if png:
        plot_reports(reps, png)
        typer.echo(f"wrote {png}")


_SIGNALLED: list[int] = []  # signals received, so an interrupt that an FFI callback turned
#                             into another exception still ends as an interrupt


def _on_signal(signum, frame):
    _SIGNALLED.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise errors.Terminated()


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def _interrupted(signum: int) -> None:
    if signum == signal.SIGINT:
        _fail("interrupted (SIGINT); nothing was left half-written", errors.EXIT_SIGINT)
    _fail("terminated (SIGTERM); nothing was left half-written", errors.EXIT_SIGTERM)


def main() -> None:
    """Console-script entry: run the app and map every outcome to one line + an exit code
    (bctvm/errors.py). Unexpected exceptions are bugs: one line, exit 4, and the traceback
    only with BCTVM_DEBUG=1."""
    _SIGNALLED.clear()
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = app(standalone_mode=False)
    except BctvmError as err:
        _fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        _interrupted(signal.SIGINT)
    except errors.Terminated:
        _interrupted(signal.SIGTERM)
    except MemoryError:
        _fail("out of memory: the model, input shape or program needs more memory than this "
              "machine has", errors.EXIT_BAD_INPUT)
    except SystemExit:
        raise
    except (typer.Exit, typer.Abort) as err:
        if _SIGNALLED:
            _interrupted(_SIGNALLED[0])
        sys.exit(getattr(err, "exit_code", 1))
    except Exception as err:  # click usage errors carry their own exit code
        if _SIGNALLED:  # e.g. a RuntimeError the TVM FFI made of the interrupt
            _interrupted(_SIGNALLED[0])
        code = getattr(err, "exit_code", None)
        if isinstance(code, int) and hasattr(err, "show"):
            err.show()
            sys.exit(code)
        if os.environ.get(errors.DEBUG_ENV) == "1":
            import traceback

            traceback.print_exc()
        first = (str(err).strip().splitlines() or [""])[0][:300]
        _fail(f"internal error: {type(err).__name__}: {first} (a bctvm bug; re-run with "
              f"{errors.DEBUG_ENV}=1 for the traceback)", errors.EXIT_INTERNAL)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if _SIGNALLED or rc == errors.EXIT_SIGINT:  # typer returns 130 for KeyboardInterrupt
        _interrupted(_SIGNALLED[0] if _SIGNALLED else signal.SIGINT)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
