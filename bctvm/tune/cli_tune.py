"""`bctvm tune`: the command's logic (cli.py only parses options)."""

from __future__ import annotations

from boards import load_board
from bctvm.errors import BadInputError
from bctvm.rpc.client import parse_addr

from .boards import LocalBoards, RpcBoards, TrackerBoards
from .tasks import extract_tasks
from .tune import summary, tune_tasks


def make_boards(board: str, rpc: str | None, tracker: str | None, key: str | None,
                local: bool, timeout: float, parallel: int | None):
    """The measuring boards of exactly one of --rpc / --tracker with --key / --local."""
    chosen = [name for name, on in (("--rpc", rpc), ("--tracker", tracker), ("--local", local))
              if on]
    if len(chosen) != 1:
        raise BadInputError("tune: give exactly one of --rpc H:P, --tracker H:P --key K, "
                            f"--local (got {', '.join(chosen) or 'none'})")
    if key and not tracker:
        raise BadInputError("tune: --key goes with --tracker")
    if timeout <= 0:
        raise BadInputError(f"--timeout must be positive, got {timeout}")
    cfg = load_board(board)
    if local:
        return LocalBoards(cfg, parallel or 1)
    if rpc:
        return RpcBoards(cfg, *parse_addr(rpc, "--rpc"), timeout=timeout)
    if not key:
        raise BadInputError("tune: --tracker needs --key K (the boards' key)")
    return TrackerBoards(cfg, *parse_addr(tracker, "--tracker"), key, timeout=timeout,
                         parallel=parallel)


def run_tune(model: str, *, board: str, trials: int, log: str, strategy: str,
             rpc=None, tracker=None, key=None, local=False, timeout=60.0, parallel=None,
             per_iter=8, seed=0, **compile_options) -> str:
    """Extract the model's tasks, tune them into `log`; returns the summary text."""
    if trials < 1:
        raise BadInputError(f"--trials must be at least 1, got {trials}")
    boards = make_boards(board, rpc, tracker, key, local, timeout, parallel)
    untuned: list = []
    tasks = extract_tasks(model, board=board, untuned=untuned, **compile_options)
    results = tune_tasks(tasks, boards, log, trials, strategy, per_iter, seed)
    return (f"{len(tasks)} distinct tasks, measured on {boards.describe()}; log {log}\n"
            + summary(results) + untuned_text(untuned))


def untuned_text(untuned: list) -> str:
    """The lines naming the segments `tune` leaves at the planned knobs (not in the totals):
    those run as several programs (layer by layer), which no task describes."""
    return "".join(f"\nnot tuned (several programs keep the planned knobs; not in the totals): "
                   f"{name} {layers[0]}" + (f" .. {layers[-1]} ({len(layers)} layers)"
                                            if len(layers) > 1 else "")
                   for name, layers in untuned)
