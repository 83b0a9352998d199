"""`bctvm deploy DIR (--rpc H:P | --tracker H:P --key K)`: run an artifact on a board server
and validate the result on the client.

    text, rep = deploy("build/r18", rpc="127.0.0.1:9091", report_path="r.json")

Steps, each bounded by `timeout` seconds (bctvm.rpc.client):
  1. verify the whole artifact locally (load_artifact: every digest; exit 2 when corrupt);
  2. connect or lease a board; refuse a board of another configuration (exit 2) before
     anything is uploaded;
  3. upload what the board runs (bctvm.rpc.store.board_files: manifest, host library, VTA
     programs, DRAM templates; not the float model or the integer reference), skipped when
     the board already holds an artifact of the same digest; the server verifies the digests;
  4. run on the board: output, boundary tensor, per-group cycles and counters come back;
  5. validate here against the integer reference (bit-exact) and the float model (max
     error, top-1 agreement), write the report of design.md with the board's identity
     (`board_identity`) and the timing of each step (`timing`, seconds).
Failures of the board or the connection are one-line BoardErrors (exit 3), never a hang.
"""

from __future__ import annotations

import json
import time

from bctvm.errors import BadInputError
from bctvm.outputs import check_output_file
from bctvm.runtime.artifact import Artifact, load_artifact
from bctvm.runtime.cli_run import finish_run, load_input
from bctvm.runtime.executor import GroupStats, RunResult
from bctvm.runtime.integrity import MANIFEST

from . import wire
from .client import BoardClient
from .store import board_files

CHUNK = 4 << 20  # bytes per upload call


def upload(client: BoardClient, art: Artifact, progress: bool = True) -> int:
    """Send the board files of `art` unless the board holds its digest; bytes sent (0: skip)."""
    if int(client.call("bctvm.artifact.has", art.digest)):
        return 0
    from tqdm import tqdm

    files = board_files(art.manifest)
    sizes = {rel: art.file(rel).stat().st_size for rel in [MANIFEST, *files]}
    sent = 0
    with tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc="upload",
              disable=not progress, leave=False) as bar:
        for rel in sizes:
            with open(art.file(rel), "rb") as f:
                offset = 0
                while True:
                    chunk = f.read(CHUNK)
                    if not chunk and offset:
                        break
                    client.call("bctvm.artifact.put", art.digest, rel, offset, bytearray(chunk))
                    offset += len(chunk)
                    sent += len(chunk)
                    bar.update(len(chunk))
                    if not chunk:
                        break
    client.call("bctvm.artifact.commit", art.digest, json.dumps(files))
    return sent


def check_board(art: Artifact, info: dict, where: str) -> None:
    """An artifact runs only on a board of the configuration it was compiled for."""
    if info.get("key") != art.cfg.key:
        raise BadInputError(f"artifact {art.path} was compiled for board '{art.cfg.name}' "
                            f"({art.cfg.key}); the board at {where} is '{info.get('board')}' "
                            f"({info.get('key')}): nothing was uploaded")


def deploy(path, rpc: str | None = None, tracker: str | None = None, key: str | None = None,
           input_path=None, output_path=None, report_path=None, timeout: float = 120.0,
           wait: float | None = None, validate: bool = True, float_model: bool = True,
           progress: bool = True) -> tuple[str, dict]:
    """Deploy, run and validate (module docstring); (summary text, report)."""
    for p, opt in ((output_path, "--output"), (report_path, "--report")):
        if p:
            check_output_file(p, opt)
    art = load_artifact(path)
    x = load_input(input_path, art.input_shape())
    t = {}
    start = time.perf_counter()
    with BoardClient.connect(rpc=rpc, tracker=tracker, key=key, timeout=timeout,
                             wait=wait) as client:
        t["connect_s"] = time.perf_counter() - start
        info = client.info()
        check_board(art, info, client.address)
        mark = time.perf_counter()
        sent = upload(client, art, progress)
        t["upload_s"], t["uploaded_bytes"], t["upload_skipped"] = \
            time.perf_counter() - mark, sent, sent == 0
        mark = time.perf_counter()
        reply = client.call("bctvm.artifact.run", art.digest, bytearray(wire.npy_bytes(x)))
        t["run_call_s"] = time.perf_counter() - mark
        address = client.address
    arrays, meta = wire.unpack_arrays(reply)
    t["board_run_s"] = meta["run_seconds"]
    outputs = [arrays[f"out{i}"] for i in range(sum(k.startswith("out") for k in arrays))]
    result = RunResult(outputs, arrays["boundary"], [GroupStats(**g) for g in meta["groups"]],
                       meta["board"]["driver"])
    t["board_total_s"] = time.perf_counter() - start
    extra = {"board_identity": {**meta["board"], "address": address}, "timing": t}
    text, rep = finish_run(art, result, x, output_path, report_path, float_model=float_model,
                           validate=validate, extra=extra)
    return text + "\n" + deploy_line(rep), rep


def deploy_line(rep: dict) -> str:
    """One line: which board ran it, where, and how long each step took."""
    b, t = rep["board_identity"], rep["timing"]
    up = "skipped (board holds the digest)" if t["upload_skipped"] else \
        f"{t['uploaded_bytes']:,} B in {t['upload_s']:.2f} s"
    return (f"board: {b['board']} ({b['key']}, {b['driver']}) at {b['address']} on host "
            f"{b['host']}; upload {up}; board run {t['board_run_s']:.2f} s, round trip "
            f"{t['run_call_s']:.2f} s")
