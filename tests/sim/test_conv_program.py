"""The benchmark's conv-layer program (tiled 3x3 conv, GEMM micro-op loops, ALU epilogue,
token handshakes) matches numpy on each board; the full-size run sustains >= 100 M MAC/s."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from boards import load_board
from bctvm import isa
from bctvm.sim import Simulator

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "sim_throughput.py"
_spec = importlib.util.spec_from_file_location("sim_throughput", _BENCH)
sim_throughput = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sim_throughput)


@pytest.mark.parametrize("board,size,channels,tile_rows", [
    ("pynq", 8, 32, 2), ("ultra96", 6, 16, 3), ("zcu102", 8, 64, 4)])
def test_conv_layer_program_matches_numpy(board, size, channels, tile_rows):
    cfg = load_board(board)
    case = sim_throughput.build_conv_program(cfg, size, channels, channels, tile_rows, seed=3)
    res = Simulator(cfg).run(isa.encode_program(case["program"], cfg), case["dram"],
                             regions=case["regions"])
    got = res.dram[case["out_slice"]].view(np.int8).reshape(case["expected"].shape)
    np.testing.assert_array_equal(got, case["expected"])
    c = res.counters
    assert c["macs"] == case["macs"]
    assert c["region_read_bytes"]["weights"] == c["dram_read_bytes"]["wgt"]
    assert c["region_read_bytes"]["input"] == c["dram_read_bytes"]["inp"]
    assert c["region_write_bytes"]["output"] == size * size * channels // cfg.block_out * cfg.out_elem_bytes
    assert res.cycles < sum(res.module_busy_cycles[m] for m in ("load", "compute", "store"))


@pytest.mark.slow
def test_full_size_conv_throughput():
    """ResNet-18 stage-1 conv (115.6 M MACs): at least 100 M MAC/s on this machine."""
    cfg = load_board("pynq")
    case = sim_throughput.build_conv_program(cfg, 56, 64, 64, 4)
    sim = Simulator(cfg)
    t0 = time.perf_counter()
    res = sim.run(case["program"], case["dram"])
    dt = time.perf_counter() - t0
    got = res.dram[case["out_slice"]].view(np.int8).reshape(case["expected"].shape)
    np.testing.assert_array_equal(got, case["expected"])
    assert res.counters["macs"] / dt >= 100e6
