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


def test_store_accepts_only_files_of_the_uploaded_manifest(r18, tmp_path):
    from bctvm.rpc.store import ArtifactStore, board_files
    from bctvm.runtime.artifact import load_artifact

    art = load_artifact(r18)
    store = ArtifactStore(tmp_path)
    with pytest.raises(BadInputError, match="manifest"):
        store.put(art.digest, "host.so", 0, b"x")  # before the manifest
    store.put(art.digest, "manifest.json", 0, art.file("manifest.json").read_bytes())
    with pytest.raises(BadInputError, match="not a file of its manifest"):
        store.put(art.digest, "evil.so", 0, b"x")
    with pytest.raises(BadInputError, match="not a file of its manifest"):
        store.put(art.digest, "../evil", 0, b"x")
    files = board_files(art.manifest)
    for rel in files:
        data = art.file(rel).read_bytes()
        if rel == files[0]:
            data = data[:-1] + bytes([data[-1] ^ 1])  # one flipped bit
        store.put(art.digest, rel, 0, data)
    with pytest.raises(BadInputError, match=files[0]):
        store.commit(art.digest, files)
    assert not store.has(art.digest)
    store.put(art.digest, files[0], 0, art.file(files[0]).read_bytes())
    store.commit(art.digest, files)
    assert store.has(art.digest) and store.load(art.digest).digest == art.digest
