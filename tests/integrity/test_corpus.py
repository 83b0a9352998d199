"""Table-driven corpus of tampered artifacts, programs, inputs and output paths: each case
has its expected exit code and a fragment of its one-line message; none prints a traceback.

Most cases run the console entry in-process (fast); the crash-class ones (a host library
that must never be loaded, faults raised inside group calls behind the TVM FFI) run in a
subprocess. "resealed" cases re-record the digests after the change (as someone editing an
artifact on purpose would), so the run itself must catch the fault.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from bctvm import isa
from bctvm.errors import BadInputError
from bctvm.runtime.integrity import files_digest
from boards import load_board
from tests.cli_runner import run_cli
from tests.compiler.conftest import reseal

from .conftest import bctvm, manifest, one_error_line, write_manifest

ZCU = load_board("zcu102")
SHAPE = (1, 3, 32, 32)


@dataclass
class Case:
    name: str
    prepare: Callable  # (art dir, tmp dir) -> command args
    code: int
    fragments: tuple
    subprocess: bool = False


# --- tampering helpers --------------------------------------------------------------------


def edit(d: Path, change, digest: bool = False) -> None:
    """Apply change(manifest) and write it back (digest recomputed from 'files' if asked)."""
    m = manifest(d)
    change(m)
    if digest:
        m["digest"] = files_digest(m["files"])
    write_manifest(d, m)


def edit_program(d: Path, change) -> None:
    """Decode g0.p0.bin, apply change(list of instructions) -> list, re-encode, reseal."""
    m = manifest(d)
    prog = m["groups"][0]["programs"][0]
    path = d / prog["file"]
    insns = change(isa.decode_program(path.read_bytes(), ZCU))
    path.write_bytes(isa.encode_program(insns, ZCU))
    prog["instructions"] = len(insns)
    write_manifest(d, m)
    reseal(d)


def first(insns, pred) -> int:
    return next(i for i, x in enumerate(insns) if pred(x))


def replaced(insns, i, **kw):
    out = list(insns)
    out[i] = out[i].replace(**kw)
    return out


def edit_pt2(d: Path, change_entry) -> None:
    """Rewrite model.pt2 with change_entry(name, data) -> data applied to every entry; reseal."""
    src = d / "model.pt2"
    entries = []
    with zipfile.ZipFile(src) as z:
        for info in z.infolist():
            entries.append((info.filename, change_entry(info.filename, z.read(info))))
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(name, data)
    reseal(d)


def json_entry(suffix: str, change):
    def apply(name, data):
        if not name.endswith(suffix):
            return data
        obj = json.loads(data)
        change(obj)
        return json.dumps(obj).encode()
    return apply


def put(path: Path, data) -> None:
    """Write bytes or text (returns None, so `put(...) or [args]` reads as one step)."""
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def npy(tmp: Path, name: str, x) -> Path:
    p = tmp / name
    np.save(p, x)
    return p


def x_with(value) -> np.ndarray:
    x = np.zeros(SHAPE, np.float32)
    x[0, 1, 2, 3] = value
    return x


# --- the corpus ---------------------------------------------------------------------------


def _symlink_out(d: Path, tmp: Path):
    target = tmp / "outside.bin"
    target.write_bytes((d / "g0.dram.bin").read_bytes())
    (d / "g0.dram.bin").unlink()
    (d / "g0.dram.bin").symlink_to(target)
    return ["run", d]


def _dram_outside(d: Path, tmp: Path):
    def change(m):
        m["groups"][0]["dram"] = "../../etc/passwd"
        m["files"]["../../etc/passwd"] = {"bytes": 1, "sha256": "0" * 64}
    edit(d, change, digest=True)
    return ["run", d]


def _absolute_host(d: Path, tmp: Path):
    def change(m):
        m["host_library"] = "/bin/true"
        m["files"]["/bin/true"] = m["files"].pop("host.so")
    edit(d, change, digest=True)
    return ["run", d]


def _pickled_weight(d: Path, tmp: Path):
    def change(cfg):
        next(iter(cfg["config"].values()))["use_pickle"] = True
    edit_pt2(d, json_entry("weights_config.json", change))
    return ["run", d]


def _guard_code(d: Path, tmp: Path):
    edit_pt2(d, json_entry("models/model.json",
                           lambda g: g.__setitem__("guards_code", ["__import__('os')"])))
    return ["run", d]


def _torch_load_node(d: Path, tmp: Path):
    edit_pt2(d, json_entry("models/model.json",
                           lambda g: g["graph_module"]["graph"]["nodes"][0]
                           .__setitem__("target", "torch.load")))
    return ["run", d]


def _weights_mismatch(d: Path, tmp: Path):
    g = manifest(d)["groups"][0]
    w = g["regions"]["l0_weight"]
    img = np.fromfile(d / g["dram"], dtype=np.uint8)
    img[w["start"]:w["start"] + w["nbytes"]] ^= 0x41
    img.tofile(d / g["dram"])
    reseal(d)
    return ["run", d, "--no-float-check"]


def _reseal(d: Path) -> None:
    reseal(d)


def _with_opcode(stream: bytes, index: int, opcode: int) -> bytes:
    """The stream with instruction `index`'s opcode field (low 3 bits) set to `opcode`."""
    b = bytearray(stream)
    b[16 * index] = (b[16 * index] & ~0x7) | opcode
    return bytes(b)


def _program_bytes(d: Path, tmp: Path) -> Path:
    p = d / manifest(d)["groups"][0]["programs"][0]["file"]
    return p


CASES = [
    # manifest: presence, syntax, format, field by field
    Case("manifest missing", lambda d, t: (d / "manifest.json").unlink() or ["run", d], 2,
         ("manifest.json is missing",)),
    Case("manifest not JSON", lambda d, t: put((d / "manifest.json"), "{ no") or
         ["run", d], 2, ("manifest.json is corrupt",)),
    Case("manifest with a NaN literal", lambda d, t: put((d / "manifest.json"), 
        (d / "manifest.json").read_text().replace('"exponent": 4', '"exponent": NaN', 1))
        or ["run", d], 2, ("manifest.json is corrupt", "NaN")),
    Case("foreign format", lambda d, t: edit(d, lambda m: m.__setitem__("format", "x"))
         or ["run", d], 2, ("not a bctvm-artifact manifest",)),
    Case("old format version", lambda d, t: edit(d, lambda m: m.__setitem__("version", 1))
         or ["run", d], 2, ("version 1 is not supported", "recompile")),
    Case("input.shape a string", lambda d, t: edit(
        d, lambda m: m["input"].__setitem__("shape", "1,3,32,32")) or ["run", d], 2,
        ("input.shape", "must be a list")),
    Case("dram_bytes a string", lambda d, t: edit(
        d, lambda m: m["groups"][0].__setitem__("dram_bytes", "116736")) or ["run", d], 2,
        ("groups[0].dram_bytes", "must be a int")),
    Case("groups missing", lambda d, t: edit(d, lambda m: m.pop("groups")) or ["run", d], 2,
         ("manifest.json groups: missing",)),
    Case("key not hex", lambda d, t: edit(d, lambda m: m.__setitem__("key", "../x"))
         or ["run", d], 2, ("key", "hex")),
    Case("group function overrides another name", lambda d, t: edit(
        d, lambda m: m["groups"][0].__setitem__("function", "runtime.ModuleLoadFromFile"))
        or ["run", d], 2, ("groups[0].function", "bctvm.vta.")),
    Case("region past the template", lambda d, t: edit(
        d, lambda m: m["groups"][0]["regions"]["out"].__setitem__("start", 1 << 30))
        or ["run", d], 2, ("regions.out", "past the template")),
    Case("argument names no region", lambda d, t: edit(
        d, lambda m: m["groups"][0]["args"][0].__setitem__(0, "nowhere")) or ["run", d], 2,
        ("groups[0].args[0][0]", "names no region")),
    Case("board config field of the wrong type", lambda d, t: edit(
        d, lambda m: m["board_config"].__setitem__("log_block_in", "five")) or ["run", d], 2,
        ("board",)),
    # paths
    Case("dram path outside the directory", _dram_outside, 2,
         ("../../etc/passwd", "not a plain relative path")),
    Case("absolute host library", _absolute_host, 2, ("/bin/true", "not a plain relative")),
    Case("symlink leading out", _symlink_out, 2, ("g0.dram.bin", "resolves outside")),
    # integrity
    Case("digest edited", lambda d, t: edit(d, lambda m: m.__setitem__("digest", "a" * 64))
         or ["run", d], 2, ("digest", "not the digest of 'files'")),
    Case("file digest edited consistently, file unchanged", lambda d, t: edit(
        d, lambda m: m["files"]["qnet.npz"].__setitem__("sha256", "b" * 64), digest=True)
        or ["run", d], 2, ("qnet.npz", "SHA-256")),
    Case("program truncated", lambda d, t: put(_program_bytes(d, t), 
        _program_bytes(d, t).read_bytes()[:-8]) or ["run", d], 2, ("g0.p0.bin", "bytes")),
    Case("program byte flipped", lambda d, t: put(_program_bytes(d, t), 
        b"\x01" + _program_bytes(d, t).read_bytes()[1:]) or ["run", d], 2,
        ("g0.p0.bin", "SHA-256")),
    Case("template missing", lambda d, t: (d / "g0.dram.bin").unlink() or ["run", d], 2,
         ("g0.dram.bin is missing",)),
    Case("truncated host.so (never loaded)", lambda d, t: put((d / "host.so"), 
        (d / "host.so").read_bytes()[:4096]) or ["run", d], 2, ("host.so", "bytes"), True),
    Case("replaced host.so, same size (never loaded)", lambda d, t: put(
        (d / "host.so"), b"\0" * (d / "host.so").stat().st_size) or ["run", d], 2,
         ("host.so", "SHA-256"), True),
    Case("verify a tampered artifact", lambda d, t: put((d / "qnet.json"), "{}")
         or ["verify", d], 2, ("qnet.json",)),
    # faults inside group calls (resealed programs), through the TVM FFI
    Case("illegal opcode in a group", lambda d, t: put(
        _program_bytes(d, t), _with_opcode(_program_bytes(d, t).read_bytes(), 3, 7))
        or _reseal(d) or ["run", d], 2,
        ("group g0", "g0.p0.bin", "instruction 3", "opcode 7"), True),
    Case("SRAM index out of range in a group", lambda d, t: edit_program(
        d, lambda p: replaced(p, first(p, lambda x: isinstance(x, isa.Load)),
                              sram_base=ZCU.wgt_depth - 1)) or ["run", d], 2,
        ("group g0", "g0.p0.bin", "instruction 0", "wgt buffer"), True),
    Case("DRAM address past the image in a group", lambda d, t: edit_program(
        d, lambda p: replaced(p, first(p, lambda x: isinstance(x, isa.Load)),
                              dram_base=(1 << 20))) or ["run", d], 2,
        ("group g0", "g0.p0.bin", "instruction 0", "DRAM"), False),
    Case("deadlock in a group", lambda d, t: edit_program(
        d, lambda p: replaced(p, 0, pop_next=True)) or ["run", d], 2,
        ("group g0", "g0.p0.bin", "deadlock", "never pushed"), False),
    Case("missing FINISH in a group", lambda d, t: edit_program(d, lambda p: p[:-1])
         or ["run", d], 2, ("group g0", "g0.p0.bin", "FINISH")),
    Case("corrupted weights (resealed): validation mismatch", _weights_mismatch, 1,
         ("differs from the integer reference",)),
    # the float model is data only
    Case("pickled weight in model.pt2", _pickled_weight, 2, ("model.pt2", "pickled")),
    Case("guard code in model.pt2", _guard_code, 2, ("model.pt2", "guard code")),
    Case("a node calling torch.load in model.pt2", _torch_load_node, 2,
         ("model.pt2", "not an ATen operator")),
    # inputs
    Case("NaN input", lambda d, t: ["run", d, "--input", npy(t, "x.npy", x_with(np.nan))], 2,
         ("NaN or infinite", "(0, 1, 2, 3)")),
    Case("Inf input", lambda d, t: ["run", d, "--input", npy(t, "x.npy", x_with(np.inf))], 2,
         ("NaN or infinite",)),
    Case("float64 input", lambda d, t: ["run", d, "--input",
                                        npy(t, "x.npy", np.zeros(SHAPE))], 2, ("float64",)),
    Case("pickled object input", lambda d, t: ["run", d, "--input", npy(
        t, "x.npy", np.array([{"a": 1}], dtype=object))], 2, ("not a .npy array",)),
    # output paths, checked before the work
    Case("--report is a directory", lambda d, t: ["run", d, "--report", t], 2,
         ("--report", "is a directory")),
    Case("--output in a missing folder", lambda d, t: ["run", d, "--output",
                                                       t / "no" / "y.npy"], 2,
         ("--output", "does not exist")),
    Case("compile -o is a file", lambda d, t: put((t / "f"), "x") or
         ["compile", "nowhere.py:f", "-o", t / "f"], 2, ("is a file",)),
    Case("compile -o a non-empty folder that is no artifact", lambda d, t:
         (t / "mine").mkdir() or put((t / "mine" / "notes.txt"), "keep") or
         ["compile", "nowhere.py:f", "-o", t / "mine"], 2, ("not empty", "--force")),
    Case("factory that raises", lambda d, t: put((t / "m.py"), 
        "def f():\n    raise RuntimeError('no weights here')\n") or
        ["compile", f"{t / 'm.py'}:f", "-o", t / "o"], 2,
        ("factory raised RuntimeError", "no weights here")),
    Case("input shape too large to allocate", lambda d, t: [
        "compile", "block_resnet18", "--input-shape", "64,3,4096,4096", "-o", t / "o"], 2,
        ("--input-shape", "too large")),
    # bctvm sim on raw program files
    Case("sim: illegal opcode", lambda d, t: put((t / "p.bin"), b"\x07" + b"\0" * 15)
         or ["sim", t / "p.bin", "--dram", d / "g0.dram.bin", "--board", "zcu102"], 2,
         ("instruction 0", "opcode")),
    Case("sim: --dram-out is a directory", lambda d, t: [
        "sim", d / "g0.p0.bin", "--dram", d / "g0.dram.bin", "--board", "zcu102",
        "--dram-out", t], 2, ("--dram-out", "is a directory")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus(case, art, tmp_path, monkeypatch, capsys):
    args = case.prepare(art, tmp_path)
    t0 = time.monotonic()
    if case.subprocess:
        res = bctvm(*args)
        code, err = res.returncode, res.stderr
    else:
        code = run_cli(monkeypatch, *args)
        err = capsys.readouterr().err
    assert time.monotonic() - t0 < 20
    line = one_error_line(err)
    assert code == case.code, err
    for fragment in case.fragments:
        assert fragment in line, line
    assert not (tmp_path / "o").exists()  # nothing written by a failed compile


def test_corpus_is_large_enough():
    assert len(CASES) >= 25


def test_verify_prints_every_file_and_the_digest(art, monkeypatch, capsys):
    assert run_cli(monkeypatch, "verify", art) == 0
    out = capsys.readouterr().out
    m = manifest(art)
    for rel, e in m["files"].items():
        assert f"sha256 {e['sha256']}" in out and rel in out
    assert f"digest {m['digest']}" in out


def test_a_board_holds_only_the_files_it_needs(art):
    from bctvm.runtime.artifact import verify_artifact

    (art / "model.pt2").unlink()
    (art / "example_input.npy").unlink()
    needed = ["host.so", "g0.p0.bin", "g0.dram.bin"]
    assert verify_artifact(art, only=needed).digest == manifest(art)["digest"]
    with pytest.raises(BadInputError, match="is missing"):
        verify_artifact(art)


def test_an_unexpected_exception_is_exit_4_with_a_hint(art, tmp_path):
    """An exception bctvm did not raise on purpose (here a KeyError: a resealed integer
    reference that lost layers the artifact's head still names, a consistency the manifest
    checks do not cover) prints one line naming BCTVM_DEBUG=1 and exits 4, never 0 or 1;
    with BCTVM_DEBUG=1 the traceback follows."""
    q = json.loads((art / "qnet.json").read_text())
    q["layers"] = q["layers"][:1]
    (art / "qnet.json").write_text(json.dumps(q))
    reseal(art)
    res = bctvm("run", art)
    line = one_error_line(res.stderr)
    assert res.returncode == 4 and "BCTVM_DEBUG=1" in line and "internal error" in line
    res = bctvm("run", art, debug=True)
    assert res.returncode == 4 and "Traceback" in res.stderr
