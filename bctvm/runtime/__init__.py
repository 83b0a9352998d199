"""Running a compiled artifact: the board interface, the artifact reader, the executor and
the report.

    art = load_artifact("build/r18")
    runner = ModelRunner(art)                # registers the VTA groups, loads host.so
    result = runner.run(x)                   # float32 NCHW -> output, boundary, group stats
    rep = build_report(art, result, x)       # design.md's report JSON, with validation
"""

from .artifact import Artifact, load_artifact
from .board import Board, BoardRun, SimulatorBoard
from .executor import ModelRunner, RunResult
from .report import build_report

__all__ = ["Artifact", "load_artifact", "Board", "BoardRun", "SimulatorBoard", "ModelRunner",
           "RunResult", "build_report"]
