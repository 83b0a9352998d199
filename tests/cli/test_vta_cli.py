"""The VTA tool commands, run as the installed CLI would run them (a real subprocess)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from boards import load_board
from bctvm.isa import Alu, Finish, Load, MemType, Store, encode_program
from bctvm.program import load_dram
from bctvm.selftest import build_selftest


def bctvm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def selftest_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("st")
    r = bctvm("sim-selftest", "--board", "pynq", "--out", d, "--report", d / "selftest.json")
    assert r.returncode == 0, r.stderr
    return d, r


def test_selftest_prints_report_and_writes_files(selftest_dir):
    d, r = selftest_dir
    assert "bit-exact" in r.stdout and "cycles" in r.stdout
    assert (d / "PROG.bin").stat().st_size % 16 == 0
    assert (d / "IMAGE.bin").stat().st_size > 0
    assert (d / "IMAGE.regions.json").is_file()
    rep = json.loads((d / "selftest.json").read_text())
    assert rep["validation"]["bit_exact"] is True
    assert rep["board"] == "pynq" and rep["cycles"] > 0
    assert set(rep["counters"]["region_read_bytes"]) >= {"weights", "input", "uops"}


def test_sim_on_the_written_files_reproduces_the_selftest(selftest_dir, tmp_path):
    d, _ = selftest_dir
    r = bctvm("sim", d / "PROG.bin", "--dram", d / "IMAGE.bin", "--board", "pynq",
              "--dram-out", tmp_path / "OUT.bin", "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "cycles" in r.stdout
    st = json.loads((d / "selftest.json").read_text())
    rep = json.loads((tmp_path / "r.json").read_text())
    for key in ("cycles", "latency_ms", "counters", "clock_mhz", "board"):
        assert rep[key] == st[key], key
    # the final image holds the layer's output, equal to the numpy reference
    prog = build_selftest(load_board("pynq"))
    final = load_dram(tmp_path / "OUT.bin")
    assert final.size == (d / "IMAGE.bin").stat().st_size
    assert np.array_equal(prog.output(final), prog.expected)


def test_disasm_one_line_per_instruction(selftest_dir):
    d, _ = selftest_dir
    r = bctvm("disasm", d / "PROG.bin", "--board", "pynq")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == (d / "PROG.bin").stat().st_size // 16
    assert lines[-1].split()[:2] == [str(len(lines) - 1), "FINISH"]
    r2 = bctvm("disasm", d / "PROG.bin", "--board", "pynq", "--dram", d / "IMAGE.bin")
    uop_lines = [ln for ln in r2.stdout.splitlines() if ln.strip().startswith("uop[")]
    assert len(uop_lines) == build_selftest(load_board("pynq")).image.region("uops").n_elems


def _one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), r.stderr
    for w in words:
        assert w in err[0], (w, err[0])


def test_bad_files_exit_2_with_one_line(selftest_dir, tmp_path):
    d, _ = selftest_dir
    image = d / "IMAGE.bin"
    _one_line_error(bctvm("sim", tmp_path / "none.bin", "--dram", image), "none.bin", "not found")
    (tmp_path / "odd.bin").write_bytes(bytes(20))
    _one_line_error(bctvm("sim", tmp_path / "odd.bin", "--dram", image), "odd.bin", "multiple of 16")
    _one_line_error(bctvm("disasm", tmp_path / "odd.bin"), "odd.bin", "multiple of 16")
    (tmp_path / "empty.bin").write_bytes(b"")
    _one_line_error(bctvm("sim", d / "PROG.bin", "--dram", tmp_path / "empty.bin"), "empty.bin", "empty")
    np.save(tmp_path / "img.npy", np.zeros(16, np.uint8))
    _one_line_error(bctvm("sim", d / "PROG.bin", "--dram", tmp_path / "img.npy"), "img.npy", ".npy")
    _one_line_error(bctvm("sim", d / "PROG.bin", "--dram", image, "--board", "nosuch"), "nosuch")
    bad = bytearray((d / "PROG.bin").read_bytes())
    bad[16 * 3] |= 7  # instruction 3 gets opcode 7
    (tmp_path / "badop.bin").write_bytes(bytes(bad))
    _one_line_error(bctvm("disasm", tmp_path / "badop.bin"), "instruction 3", "opcode 7")
    r = bctvm("sim", tmp_path / "badop.bin", "--dram", image)
    _one_line_error(r, "opcode")


def test_illegal_programs_exit_2_with_one_line(tmp_path):
    cfg = load_board("pynq")
    image = tmp_path / "IMAGE.bin"
    image.write_bytes(bytes(4096))
    cases = {
        "nofinish": ([Alu(use_imm=True, imm=1)], "FINISH"),
        "deadlock": ([Store(pop_prev=True), Finish()], "STORE"),
        "dram": ([Load(memory_type=MemType.INP, dram_base=10_000, x_size=1), Finish()], "DRAM"),
    }
    for name, (insns, word) in cases.items():
        (tmp_path / f"{name}.bin").write_bytes(encode_program(insns, cfg))
        r = bctvm("sim", tmp_path / f"{name}.bin", "--dram", image, "--board", "pynq")
        _one_line_error(r)
        assert word.lower() in r.stderr.lower(), (name, r.stderr)


def test_selftest_on_the_onchip_reuse_board(tmp_path):
    r = bctvm("sim-selftest", "--board", "zcu102", "--report", tmp_path / "z.json")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "z.json").read_text())
    assert rep["board"] == "zcu102" and rep["validation"]["bit_exact"] is True
