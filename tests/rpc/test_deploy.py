"""bctvm deploy over real board servers: bit-exact through a server and through a tracker
with two servers and concurrent deploys, upload skipped by digest, wrong board / corrupt
artifact refused before upload (exit 2), unreachable server (exit 3)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from bctvm.rpc.deploy import deploy
from bctvm.rpc.server import free_port

from .conftest import SHAPE, run_cli, tracker_free, wait_until

pytestmark = pytest.mark.rpc


def test_deploy_is_bit_exact_and_second_upload_is_skipped(r18, servers, tmp_path, monkeypatch,
                                                          capsys):
    srv = servers()
    x = np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = run_cli(monkeypatch, "deploy", r18, "--rpc", f"127.0.0.1:{srv.port}",
                   "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                   "--report", tmp_path / "r.json")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "bit-exact vs the integer reference: True" in out and "top-1 agreement" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    v = rep["validation"]
    assert v["bit_exact"] and v["max_abs_err"] == 0 and v["float_model"]["top1_agreement"] == 1.0
    ident = rep["board_identity"]
    assert (ident["board"], ident["driver"], ident["port"]) == ("pynq", "simulator", srv.port)
    assert ident["key"] == "1x16_i8w8a32_15_15_18_17"
    t = rep["timing"]
    assert not t["upload_skipped"] and t["uploaded_bytes"] > 0 and t["board_run_s"] > 0
    assert rep["cycles"] > 0 and rep["dram_bytes"]["total"] >= rep["lower_bound_bytes"] > 0
    assert rep["energy"]["total_uj"] > 0
    # the output is the one a local run of the same artifact gives
    from bctvm.runtime import ModelRunner, load_artifact

    local = ModelRunner(load_artifact(r18)).run(x)
    assert np.array_equal(np.load(tmp_path / "y.npy"), local.output[0])
    assert rep["cycles"] == local.cycles
    # the board holds only what it runs: no float model, no integer reference
    held = {p.name for p in (Path(srv.workdir) / "artifacts").glob("*/*")}
    assert "host.so" in held and "manifest.json" in held
    assert not held & {"model.pt2", "qnet.json", "qnet.npz", "example_input.npy"}
    # same digest again: nothing uploaded
    _, rep2 = deploy(r18, rpc=f"127.0.0.1:{srv.port}", input_path=tmp_path / "x.npy",
                     progress=False)
    assert rep2["timing"]["upload_skipped"] and rep2["timing"]["uploaded_bytes"] == 0
    assert rep2["validation"]["bit_exact"]


def test_tracker_two_servers_several_deploys_at_once(r18, servers, tracker):
    a = servers(tracker=tracker, key="pynq")
    b = servers(tracker=tracker, key="pynq")
    wait_until(lambda: tracker_free(tracker, "pynq") == 2, 20, "two boards at the tracker")
    results, errors = [], []

    def one():
        try:
            results.append(deploy(r18, tracker=f"{tracker[0]}:{tracker[1]}", key="pynq",
                                  timeout=120, wait=120, progress=False, float_model=False)[1])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert len(results) == 4
    assert all(r["validation"]["bit_exact"] for r in results)
    assert len({json.dumps(r["groups"], sort_keys=True) for r in results}) == 1
    assert {r["board_identity"]["port"] for r in results} == {a.port, b.port}
    wait_until(lambda: tracker_free(tracker, "pynq") == 2, 20, "both boards free again")


def test_wrong_board_is_refused_before_upload(r18, servers, monkeypatch, capsys):
    srv = servers("zcu102")
    code = run_cli(monkeypatch, "deploy", r18, "--rpc", f"127.0.0.1:{srv.port}")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "compiled for board 'pynq'" in err and "'zcu102'" in err and "nothing was uploaded" in err
    assert not any((Path(srv.workdir) / "staging").iterdir())
    assert not any((Path(srv.workdir) / "artifacts").iterdir())


def test_corrupt_artifact_is_exit_2_before_connecting(r18, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(r18, bad)
    blob = bytearray((bad / "g3.dram.bin").read_bytes())
    blob[len(blob) // 2] ^= 0x40
    (bad / "g3.dram.bin").write_bytes(bytes(blob))
    # no server at that port: the artifact is checked first
    code = run_cli(monkeypatch, "deploy", bad, "--rpc", f"127.0.0.1:{free_port()}")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "g3.dram.bin" in err


def test_unreachable_server_is_exit_3(r18, monkeypatch, capsys):
    code = run_cli(monkeypatch, "deploy", r18, "--rpc", f"127.0.0.1:{free_port()}",
                   "--timeout", "20")
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1 and "connect to board server" in err


def test_relative_workdir_is_kept_where_it_was_given(r18, servers, tmp_path, monkeypatch):
    """TVM runs each RPC session in a temporary working directory: a relative --workdir must
    still name the folder it named where the server started (the demo's build/demo.board)."""
    monkeypatch.chdir(tmp_path)
    srv = servers(workdir="held/relative")
    assert Path(srv.workdir) == tmp_path / "held" / "relative"
    _, rep = deploy(r18, rpc=f"127.0.0.1:{srv.port}", progress=False)
    assert rep["validation"]["bit_exact"]
    held = list((tmp_path / "held" / "relative" / "artifacts").glob("*/manifest.json"))
    assert len(held) == 1
