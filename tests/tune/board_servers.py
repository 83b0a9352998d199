"""Real TVM RPC board servers on 127.0.0.1 for the tuning tests (until `bctvm serve` lands:
plain tvm.rpc.Servers whose init callback registers the two board functions of the RPC
board protocol on a simulator board)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def board_functions(board: str, hang: bool = False):
    """server_init_callback: register bctvm.board.info / run_program on a simulator board
    (`hang`: run_program never returns, a hung board)."""

    def init():
        import json
        import time

        import numpy as np
        import tvm_ffi

        from bctvm.runtime.board import SimulatorBoard

        b = SimulatorBoard(board)

        @tvm_ffi.register_global_func("bctvm.board.info", override=True)
        def info():
            return json.dumps({"board": b.cfg.name, "kind": b.kind})

        @tvm_ffi.register_global_func("bctvm.board.run_program", override=True)
        def run_program(program, dram, regions_json):
            while hang:
                time.sleep(1)
            regions = {k: tuple(v) for k, v in json.loads(regions_json).items()}
            res = b.run(bytes(program), np.frombuffer(bytes(dram), np.uint8).copy(), regions)
            return json.dumps({"cycles": res.cycles, "counters": {}})

    return init


def start_server(board: str, tracker_port: int | None = None, key: str = "", hang=False):
    """A tvm.rpc.Server (call .terminate()); registered at the tracker under `key`."""
    from tvm import rpc

    port = free_port()
    kw = {"tracker_addr": ("127.0.0.1", tracker_port), "key": key} if tracker_port else {}
    return rpc.Server("127.0.0.1", port, port + 1, silent=True,
                      server_init_callback=board_functions(board, hang), **kw)


def start_tracker():
    from tvm.rpc.tracker import Tracker

    port = free_port()
    return Tracker("127.0.0.1", port=port, port_end=port + 1, silent=True)
