"""The functions every server session offers (what the tuner uses): board identity, one
program run with the same cycles and counters as the local simulator, bctvm errors keeping
their class across RPC."""

from __future__ import annotations

import pytest

from bctvm.errors import BadInputError, SimulatorError
from bctvm.rpc.client import BoardClient
from bctvm.runtime import SimulatorBoard, load_artifact

pytestmark = pytest.mark.rpc


def test_info_and_run_program_match_the_local_simulator(r18, servers):
    srv = servers()
    art = load_artifact(r18)
    g = art.groups[5]
    program, dram = art.programs(g)[0], art.template(g)
    regions = art.layout(g).region_map()
    local = SimulatorBoard("pynq").run(program, dram, regions)
    with BoardClient.connect(rpc=f"127.0.0.1:{srv.port}", timeout=60) as c:
        info = c.info()
        assert (info["board"], info["key"], info["driver"]) == ("pynq", art.cfg.key, "simulator")
        got = c.run_program(program, dram, {k: list(v) for k, v in regions.items()})
        assert got["cycles"] == local.cycles > 0
        assert got["counters"] == local.counters
        # errors come back as their own class (exit codes kept), the session survives
        with pytest.raises(SimulatorError):
            c.run_program(program[:-16], dram)  # no FINISH
        with pytest.raises(BadInputError, match="regions_json"):
            c.call("bctvm.board.run_program", bytearray(program), bytearray(dram.tobytes()),
                   "{not json")
        with pytest.raises(BadInputError, match="digest"):
            c.call("bctvm.artifact.has", "../../etc")
        assert c.info()["pid"] == info["pid"]
