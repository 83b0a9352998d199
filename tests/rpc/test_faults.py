"""Board and RPC faults: each a one-line error and exit 3 within its bound, never a hang;
a crashed session leaves the board served; Ctrl-C on `bctvm serve` leaves no process."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from bctvm.errors import BoardError
from bctvm.rpc.client import BoardClient
from bctvm.rpc.deploy import deploy
from bctvm.rpc.server import free_port

from .conftest import cli_process, port_listening, run_cli, sessions, tracker_free, wait_until

pytestmark = pytest.mark.rpc


def test_server_killed_mid_run_is_exit_3(r18, servers):
    srv = servers()
    proc = cli_process("deploy", r18, "--rpc", f"127.0.0.1:{srv.port}", "--timeout", "60")
    wait_until(lambda: sessions(srv), 60, "the deploy's session")
    time.sleep(0.3)  # inside the session: uploading or running
    srv.stop()
    out, err = proc.communicate(timeout=60)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("upload")]
    assert proc.returncode == 3, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "127.0.0.1" in lines[0]
    assert "closed the session" in lines[0]
    wait_until(lambda: not port_listening(srv.port), 10, "the port to close")


def test_crashed_session_leaves_the_board_served(r18, servers, tracker):
    srv = servers(tracker=tracker, key="pynq")
    addr = f"{tracker[0]}:{tracker[1]}"
    wait_until(lambda: tracker_free(tracker, "pynq") == 1, 20, "the board at the tracker")
    client = BoardClient.connect(tracker=addr, key="pynq", timeout=30, wait=30)
    assert client.info()["board"] == "pynq"
    (session,) = sessions(srv)
    session.kill()  # the session process dies as if the board code had crashed
    with pytest.raises(BoardError, match="closed the session|no answer"):
        client.info()
    client.close()
    # the watchdog restarts the worker, which registers with the tracker again
    wait_until(lambda: srv.restarts == 1 and tracker_free(tracker, "pynq") == 1, 30,
               "the board back at the tracker")
    _, rep = deploy(r18, tracker=addr, key="pynq", timeout=60, wait=30, progress=False,
                    float_model=False)
    assert rep["validation"]["bit_exact"] and rep["board_identity"]["port"] == srv.port


def test_hung_server_is_a_client_timeout_exit_3(r18, servers, monkeypatch, capsys):
    srv = servers()
    worker = psutil.Process(srv.worker_pid)
    worker.suspend()  # a hung server: the port accepts TCP, nothing answers
    try:
        start = time.monotonic()
        code = run_cli(monkeypatch, "deploy", r18, "--rpc", f"127.0.0.1:{srv.port}",
                       "--timeout", "3")
        took = time.monotonic() - start
    finally:
        worker.resume()
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1 and "no answer within 3 s" in err
    assert took < 30


def test_tracker_without_a_free_board_is_a_bounded_wait_exit_3(r18, servers, tracker,
                                                               monkeypatch, capsys):
    addr = f"{tracker[0]}:{tracker[1]}"
    code = run_cli(monkeypatch, "deploy", r18, "--tracker", addr, "--key", "nosuch",
                   "--wait", "2")
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1
    assert "lease a 'nosuch' board" in err and "no server is registered" in err
    # the only board is busy: the lease gives up after --wait, and the board stays usable
    servers(tracker=tracker, key="pynq")
    wait_until(lambda: tracker_free(tracker, "pynq") == 1, 20, "the board at the tracker")
    with BoardClient.connect(tracker=addr, key="pynq", timeout=30, wait=10) as holder:
        start = time.monotonic()
        code = run_cli(monkeypatch, "deploy", r18, "--tracker", addr, "--key", "pynq",
                       "--wait", "2")
        assert time.monotonic() - start < 30
        err = capsys.readouterr().err.strip()
        assert code == 3 and "no free board within 2 s" in err and "0 of 1 boards" in err
        assert holder.info()["board"] == "pynq"


def test_ctrl_c_on_serve_stops_every_child(tmp_path):
    port = free_port()
    proc = cli_process("serve", "--port", port, "--workdir", tmp_path / "w")
    line = proc.stdout.readline()
    assert f"127.0.0.1:{port}" in line, line + proc.stderr.read()
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children and port_listening(port)
    with BoardClient.connect(rpc=f"127.0.0.1:{port}", timeout=30) as c:
        assert c.info()["port"] == port
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    wait_until(lambda: not any(ch.is_running() and ch.status() != psutil.STATUS_ZOMBIE
                               for ch in children), 10, "the server's children to exit")
    wait_until(lambda: not port_listening(port), 10, "the port to close")


def test_serve_warns_when_not_loopback(tmp_path):
    port = free_port("0.0.0.0")
    proc = cli_process("serve", "--host", "0.0.0.0", "--port", port, "--workdir", tmp_path)
    try:
        assert "0.0.0.0" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "no authentication" in proc.stderr.read()
    assert os.path.isdir(tmp_path / "artifacts")


def test_serve_option_errors_are_exit_2(monkeypatch, capsys):
    assert run_cli(monkeypatch, "serve", "--driver", "fpga") == 2
    assert "--driver fpga" in capsys.readouterr().err
    assert run_cli(monkeypatch, "serve", "--driver", "pynq") == 2
    assert "--bitstream" in capsys.readouterr().err
    assert run_cli(monkeypatch, "serve", "--tracker", "127.0.0.1:9190") == 2
    assert "--key" in capsys.readouterr().err


def test_a_killed_serve_leaves_no_orphan_listening(tmp_path):
    port = free_port()
    proc = cli_process("serve", "--port", port, "--workdir", tmp_path)
    assert f"127.0.0.1:{port}" in proc.stdout.readline()
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children
    proc.kill()  # SIGKILL: no handler runs; the worker's guard sees its parent gone
    proc.wait(timeout=10)
    wait_until(lambda: not any(ch.is_running() and ch.status() != psutil.STATUS_ZOMBIE
                               for ch in children), 15, "the orphaned worker to exit")
    wait_until(lambda: not port_listening(port), 10, "the port to close")
