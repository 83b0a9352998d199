"""`bctvm demo`: the whole main job in one command, on one machine.

    run_demo("block_resnet18", "pynq", (1, 3, 64, 64), 8, "build/demo", 120, print)

compile the zoo model -> serve the simulator board on a free loopback port (artifacts kept in
OUT.board/) -> deploy over TVM RPC, validate on the client -> print the report, write
OUT/report.json and OUT/report.png -> stop the server (also on any error or Ctrl-C).
"""

from __future__ import annotations

from pathlib import Path


def run_demo(model: str, board: str, input_shape, block_size: int, out, timeout: float,
             echo=print) -> dict:
    from bctvm.compiler import compile_model
    from bctvm.compiler.driver import describe
    from bctvm.runtime.report_view import plot_reports

    from .deploy import deploy
    from .server import BoardServer, free_port

    out = Path(out)
    echo(f"== compile {model} {'x'.join(map(str, input_shape))} (blocks {block_size}) for "
         f"{board} -> {out}")
    manifest = compile_model(model, out_dir=out, board=board, block_size=block_size,
                             input_shape=tuple(input_shape))
    echo(describe(manifest, out))
    srv = BoardServer(board, "127.0.0.1", free_port(), workdir=out.with_name(out.name + ".board"))
    with srv:
        echo(f"== serve the simulator board {srv.cfg.name} on 127.0.0.1:{srv.port}")
        echo(f"== deploy {out} --rpc 127.0.0.1:{srv.port}")
        text, rep = deploy(out, rpc=f"127.0.0.1:{srv.port}", report_path=out / "report.json",
                           timeout=timeout)
    echo(text)
    plot_reports([rep], out / "report.png")
    echo(f"== server stopped; wrote {out / 'report.json'} and {out / 'report.png'} "
         f"(`bctvm report {out / 'report.json'} --png FILE` redraws it)")
    return rep
