"""The pynq real-board driver up to the hardware boundary: its register and buffer sequence
against a recording stand-in for the MMIO / allocate layer (the only stand-in: the driver,
the board config, the programs and the simulator that plays the fabric are real)."""

from __future__ import annotations

import numpy as np
import pytest

from bctvm.errors import BadInputError, BoardError
from bctvm.program import save_program
from bctvm.runtime import SimulatorBoard
from bctvm.runtime import pynq_board as pb
from bctvm.runtime.board import open_board
from bctvm.selftest import run_selftest

IPS = {"fetch_0": {"phys_addr": 0x43C00000, "addr_range": 0x1000},
       "load_0": {"phys_addr": 0x43C01000, "addr_range": 0x1000},
       "compute_0": {"phys_addr": 0x43C02000, "addr_range": 0x1000},
       "store_0": {"phys_addr": 0x43C03000, "addr_range": 0x1000}}
NAMES = {ip["phys_addr"]: name.split("_")[0] for name, ip in IPS.items()}


class Buffer(np.ndarray):
    """A uint8 buffer with a fake physical address; flush/invalidate/free are recorded."""

    def flush(self):
        self.io.log.append(("flush", self.physical_address))

    def invalidate(self):
        self.io.log.append(("invalidate", self.physical_address))

    def freebuffer(self):
        self.io.log.append(("free", self.physical_address))


class Regs:
    def __init__(self, io, module):
        self.io, self.module, self.values = io, module, {}

    def write(self, off, value):
        self.io.log.append(("write", self.module, off, value))
        self.values[off] = value
        if self.module == "fetch" and off == pb.CTRL and value & pb.AP_START:
            self.io.start()

    def read(self, off):
        self.io.log.append(("read", self.module, off))
        return self.values.get(off, 0)


class RecordingIO:
    """Records every MMIO / allocate call. When fetch starts, the bctvm simulator plays the
    fabric: it runs the stream found at the fetch address on the buffer at the load base and
    sets compute's done register (unless `hang`)."""

    def __init__(self, cfg, hang=False, ips=IPS):
        self.cfg, self.hang, self.ips = cfg, hang, ips
        self.log, self.buffers, self.regs = [], {}, {}
        self._next = 0x1800_0000

    def overlay(self, path):
        self.log.append(("overlay", path))
        return self.ips

    def mmio(self, phys, length):
        self.log.append(("mmio", NAMES[phys], length))
        self.regs[NAMES[phys]] = Regs(self, NAMES[phys])
        return self.regs[NAMES[phys]]

    def allocate(self, nbytes):
        buf = np.zeros(nbytes, np.uint8).view(Buffer)
        buf.io, buf.physical_address = self, self._next
        self.buffers[self._next] = buf
        self.log.append(("allocate", nbytes, self._next))
        self._next += (nbytes + 0xFFF) & ~0xFFF
        return buf

    def start(self):
        if self.hang:
            return
        from bctvm.sim import Simulator

        fetch, load = self.regs["fetch"].values, self.regs["load"].values
        stream = self.buffers[fetch[pb.FETCH_INSN_ADDR]]
        image = self.buffers[load[pb.LOAD_INP_ADDR]]
        nbytes = fetch[pb.FETCH_INSN_COUNT] * self.cfg.insn_bytes
        res = Simulator(self.cfg).run(bytes(stream[:nbytes]), np.asarray(image).copy(),
                                      progress=False)
        image[:] = res.dram
        self.regs["compute"].values[pb.COMPUTE_DONE_RD] = pb.DONE


@pytest.fixture(scope="module")
def selftest(tmp_path_factory):
    _, prog = run_selftest("pynq")
    path = save_program(tmp_path_factory.mktemp("pynq") / "PROG.bin", prog.insns, prog.cfg)
    return path.read_bytes(), np.asarray(prog.dram, np.uint8), prog.regions, prog.cfg


def test_run_matches_the_simulator_board_with_the_vta_register_sequence(selftest):
    program, dram, regions, cfg = selftest
    io = RecordingIO(cfg)
    board = pb.PynqBoard("pynq", bitstream="vta.bit", io=io)
    res = board.run(program, dram, regions)
    want = SimulatorBoard("pynq").run(program, dram, regions)
    assert np.array_equal(res.dram, want.dram) and not np.array_equal(res.dram, dram)
    assert res.cycles > 0 and res.counters["wall_seconds"] > 0
    insn_addr, image_addr = (e[2] for e in io.log if e[0] == "allocate")
    assert io.log[0] == ("overlay", "vta.bit")
    writes = [e[1:] for e in io.log if e[0] == "write"]
    assert writes == [
        ("fetch", pb.FETCH_INSN_COUNT, len(program) // 16),
        ("fetch", pb.FETCH_INSN_ADDR, insn_addr),
        ("load", pb.LOAD_INP_ADDR, image_addr), ("load", pb.LOAD_WGT_ADDR, image_addr),
        ("compute", pb.COMPUTE_UOP_ADDR, image_addr),
        ("compute", pb.COMPUTE_BIAS_ADDR, image_addr),
        ("store", pb.STORE_OUT_ADDR, image_addr),
        ("fetch", pb.CTRL, pb.AP_START), ("load", pb.CTRL, pb.AP_START_AUTORESTART),
        ("compute", pb.CTRL, pb.AP_START_AUTORESTART),
        ("store", pb.CTRL, pb.AP_START_AUTORESTART)]
    kinds = [e[0] for e in io.log]
    start = io.log.index(("write", "fetch", pb.CTRL, pb.AP_START))
    assert {("flush", insn_addr), ("flush", image_addr)} <= set(io.log[:start])
    assert ("read", "compute", pb.COMPUTE_DONE_RD) in io.log[start:]
    assert io.log.index(("invalidate", image_addr)) > start
    assert kinds[-2:] == ["free", "free"]
    assert board.run(program, dram, regions).dram.tobytes() == want.dram.tobytes()  # again


def test_a_board_that_never_finishes_times_out_and_frees_its_buffers(selftest):
    program, dram, regions, cfg = selftest
    io = RecordingIO(cfg, hang=True)
    board = pb.PynqBoard("pynq", bitstream="vta.bit", io=io, timeout_s=0.2)
    with pytest.raises(BoardError, match="did not finish within 0.2 s"):
        board.run(program, dram, regions)
    assert [e[0] for e in io.log[-2:]] == ["free", "free"]


def test_driver_errors(selftest):
    cfg = selftest[3]
    with pytest.raises(BoardError, match="needs the `pynq` package"):
        open_board("pynq", "pynq", bitstream="vta.bit")  # no pynq on this machine
    with pytest.raises(BadInputError, match="--bitstream"):
        pb.PynqBoard("pynq", io=RecordingIO(cfg))
    with pytest.raises(BadInputError, match="onchip_reuse"):
        pb.PynqBoard("zcu102", bitstream="vta.bit", io=RecordingIO(cfg))
    no_store = {k: v for k, v in IPS.items() if not k.startswith("store")}
    with pytest.raises(BoardError, match="'store"):
        pb.PynqBoard("pynq", bitstream="vta.bit", io=RecordingIO(cfg, ips=no_store))
    with pytest.raises(BadInputError, match="unknown board driver"):
        open_board("pynq", "fpga")
