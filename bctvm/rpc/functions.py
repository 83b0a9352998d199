"""The functions every board-server session offers (registered by `register`, which runs in
the server's worker before it listens; sessions are forked from it and inherit them).

    bctvm.board.info() -> str
        JSON {"board", "key", "driver", "host", "port", "pid", "bctvm"}: which board answers.
    bctvm.board.run_program(program: bytes, dram: bytes, regions_json: str) -> str
        Runs one encoded VTA instruction stream on a copy of the DRAM image; JSON
        {"cycles": int, "counters": {...}} (the board's counters; the image is not returned).
    bctvm.artifact.has(digest: str) -> int
        1 when the store holds the artifact and its board files verify, else 0.
    bctvm.artifact.put(digest: str, relpath: str, offset: int, data: bytes) -> int
        One chunk of one uploaded file (manifest.json first); returns the bytes written.
    bctvm.artifact.commit(digest: str, relpaths_json: str) -> int
        Verifies the upload's digests and makes it the stored artifact; returns 1.
    bctvm.artifact.run(digest: str, x_npy: bytes) -> bytes
        Runs the stored artifact on float32 NCHW input; an .npz (bctvm.rpc.wire) of "out<i>",
        "boundary" and meta {"groups": [...], "board": info, "run_seconds"}.

A bctvm error raised by any of them reaches the client as the RPCError message
"ClassName: message" (bctvm.rpc.wire.remote_error turns it back into that class).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from dataclasses import asdict

import numpy as np

from bctvm.errors import BctvmError, BadInputError

from . import wire

_runners: dict = {}  # digest -> ModelRunner, per session process


def _named_errors(fn):
    """Re-raise a bctvm error as RuntimeError("ClassName: message") so the class crosses RPC."""

    @functools.wraps(fn)
    def call(*args):
        try:
            return fn(*args)
        except BctvmError as err:
            raise RuntimeError(wire.error_line(err)) from None

    return call


def board_info(board, port: int) -> dict:
    from bctvm import __version__

    return {"board": board.cfg.name, "key": board.cfg.key, "driver": board.kind,
            "host": socket.gethostname(), "port": port, "pid": os.getpid(),
            "bctvm": __version__}


def register(board, store, port: int) -> None:
    """Register the functions of the module docstring for `board` and `store` (a server
    listening on `port`)."""
    import tvm_ffi

    from bctvm.runtime.executor import ModelRunner

    def reg(name, fn):
        tvm_ffi.register_global_func(name, _named_errors(fn), override=True)

    def info() -> str:
        return json.dumps(board_info(board, port))

    def run_program(program, dram, regions_json) -> str:
        try:
            regions = json.loads(str(regions_json) or "{}")
        except json.JSONDecodeError as err:
            raise BadInputError(f"run_program: regions_json is not JSON ({err})") from None
        img = np.frombuffer(bytes(dram), dtype=np.uint8).copy()
        res = board.run(bytes(program), img, regions)
        return json.dumps({"cycles": int(res.cycles), "counters": res.counters})

    def has(digest) -> int:
        return int(store.has(str(digest)))

    def put(digest, relpath, offset, data) -> int:
        return store.put(str(digest), str(relpath), int(offset), bytes(data))

    def commit(digest, relpaths_json) -> int:
        store.commit(str(digest), json.loads(str(relpaths_json)))
        _runners.pop(str(digest), None)
        return 1

    def run(digest, x_npy) -> bytes:
        digest = str(digest)
        if digest not in _runners:
            _runners[digest] = ModelRunner(store.load(digest), board)
        runner = _runners[digest]
        x = wire.from_npy_bytes(x_npy)
        start = time.perf_counter()
        res = runner.run(x)
        seconds = time.perf_counter() - start
        arrays = {f"out{i}": o for i, o in enumerate(res.output)}
        arrays["boundary"] = res.boundary
        meta = {"groups": [asdict(g) for g in res.groups], "board": board_info(board, port),
                "run_seconds": seconds}
        return wire.pack_arrays(arrays, meta)

    reg("bctvm.board.info", info)
    reg("bctvm.board.run_program", run_program)
    reg("bctvm.artifact.has", has)
    reg("bctvm.artifact.put", put)
    reg("bctvm.artifact.commit", commit)
    reg("bctvm.artifact.run", run)
