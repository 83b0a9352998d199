"""Boards over TVM RPC: the board server, the bounded client and the deployment harness.

    srv = BoardServer("pynq", port=9091).start()     # a tvm.rpc server with bctvm functions
    with BoardClient.connect(rpc="127.0.0.1:9091", timeout=120) as c:
        c.info()                                      # {"board", "key", "driver", ...}
    deploy("build/r18", rpc="127.0.0.1:9091")         # upload (skip by digest), run, validate
    srv.stop()

Remote functions (registered on every server session, bctvm/rpc/functions.py):
    bctvm.board.info() -> str (JSON)
    bctvm.board.run_program(program: bytes, dram: bytes, regions_json: str) -> str (JSON)
    bctvm.artifact.has / put / commit / run  (the artifact store of deploy)
"""

from .client import BoardClient, parse_addr
from .server import BoardServer

__all__ = ["BoardClient", "BoardServer", "parse_addr"]
