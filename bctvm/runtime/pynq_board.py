"""The real-board driver: a VTA bitstream on a Pynq-class Zynq board, through the `pynq`
package (imported only when a PynqBoard is opened; it runs on the board's ARM Linux).

    board = PynqBoard(cfg, bitstream="vta.bit")        # Overlay(bitstream) programs the PL
    res = board.run(program, dram, regions)             # -> BoardRun(dram, cycles, counters)

One run, against the stock VTA IP's AXI-lite registers (the four HLS modules fetch, load,
compute, store, found by name in the overlay's ip_dict):
  1. allocate two physically contiguous buffers, copy the instruction stream and the DRAM
     image in, flush them from the CPU cache;
  2. fetch: instruction count and the stream's physical address; load/compute/store: the
     image's physical address as the base of every DRAM pointer (inputs, weights, micro-ops,
     biases, outputs), so the programs' `dram_base` element offsets address the image;
  3. start fetch (ap_start) and load/compute/store (ap_start + auto-restart);
  4. poll compute's done register until it reads 1, or raise BoardError after timeout_s;
  5. invalidate the image buffer, copy it out, free both buffers.
Stock VTA has no cycle counters: cycles are the measured wall time of steps 3-4 at the board
clock (an upper bound: it includes the polling), and the counters hold only that time, so a
report of a real board has no DRAM traffic figures (the simulator counts them).

The `io` argument is the MMIO/allocate layer (PynqIO; the default one wraps `pynq`); tests
pass a recording stand-in for exactly that layer.
"""

from __future__ import annotations

import time

import numpy as np

from bctvm.errors import BadInputError, BoardError
from boards import BoardConfig, load_board

from .board import Board, BoardRun

# Register offsets of the stock VTA HLS modules' AXI-lite control interfaces (bytes).
CTRL = 0x00  # ap_ctrl: bit 0 ap_start, bit 7 auto-restart
FETCH_INSN_COUNT = 0x10
FETCH_INSN_ADDR = 0x18
LOAD_INP_ADDR = 0x10
LOAD_WGT_ADDR = 0x18
COMPUTE_DONE_WR = 0x10
COMPUTE_DONE_RD = 0x18
COMPUTE_UOP_ADDR = 0x20
COMPUTE_BIAS_ADDR = 0x28
STORE_OUT_ADDR = 0x10
AP_START = 0x1
AP_START_AUTORESTART = 0x81
DONE = 0x1
MODULES = ("fetch", "load", "compute", "store")


class PynqIO:
    """The MMIO / contiguous-memory layer on `pynq`: overlay(path) -> ip_dict,
    mmio(phys_addr, length) -> .read(off) / .write(off, value), allocate(nbytes) -> uint8
    buffer with .physical_address, .flush(), .invalidate(), .freebuffer()."""

    def __init__(self):
        try:
            import pynq  # noqa: F401  (only on a Pynq board)
        except ImportError:
            raise BoardError("the pynq driver needs the `pynq` package (it runs on a Pynq "
                             "board's Linux); use the simulator board here") from None
        self._pynq = pynq

    def overlay(self, bitstream: str) -> dict:
        return self._pynq.Overlay(bitstream).ip_dict

    def mmio(self, phys_addr: int, length: int):
        return self._pynq.MMIO(phys_addr, length)

    def allocate(self, nbytes: int):
        return self._pynq.allocate(shape=(nbytes,), dtype=np.uint8)


def _find_ip(ip_dict: dict, module: str) -> dict:
    """The overlay IP of a VTA module ("fetch" matches "fetch_0", "vta/fetch_0", ...)."""
    hits = [v for k, v in ip_dict.items() if k.split("/")[-1].split("_")[0] == module]
    if len(hits) != 1:
        raise BoardError(f"the bitstream has {len(hits)} IP blocks named '{module}*' "
                         f"(expected one VTA {module} module; have {sorted(ip_dict)})")
    return hits[0]


class PynqBoard(Board):
    """A VTA bitstream on a Pynq-class board (module docstring). `timeout_s` bounds one
    program's run; `poll_s` is the wait between reads of the done register."""

    kind = "pynq"

    def __init__(self, cfg: BoardConfig | str, bitstream: str | None = None,
                 timeout_s: float = 10.0, poll_s: float = 1e-4, io=None):
        self.cfg = load_board(cfg)
        if bitstream is None:
            raise BadInputError("the pynq driver needs --bitstream (the VTA .bit built for "
                                f"board {self.cfg.name}, {self.cfg.key})")
        if self.cfg.onchip_reuse:
            raise BadInputError(f"board {self.cfg.name} uses onchip_reuse, which stock VTA "
                                "bitstreams do not implement")
        self.io = io or PynqIO()
        self.timeout_s, self.poll_s = float(timeout_s), float(poll_s)
        ips = self.io.overlay(str(bitstream))
        self.regs = {m: self.io.mmio(int(ip["phys_addr"]), int(ip["addr_range"]))
                     for m in MODULES for ip in [_find_ip(ips, m)]}

    def _buffer(self, data: np.ndarray):
        buf = self.io.allocate(data.nbytes)
        buf[:] = data
        buf.flush()
        return buf

    def run(self, program: bytes, dram: np.ndarray, regions: dict) -> BoardRun:
        if len(program) % self.cfg.insn_bytes:
            raise BadInputError(f"program of {len(program)} bytes is not a whole number of "
                                f"{self.cfg.insn_bytes}-byte instructions")
        insns = self._buffer(np.frombuffer(program, dtype=np.uint8))
        image = self._buffer(np.asarray(dram, dtype=np.uint8))
        try:
            r = self.regs
            base = int(image.physical_address)
            r["fetch"].write(FETCH_INSN_COUNT, len(program) // self.cfg.insn_bytes)
            r["fetch"].write(FETCH_INSN_ADDR, int(insns.physical_address))
            r["load"].write(LOAD_INP_ADDR, base)
            r["load"].write(LOAD_WGT_ADDR, base)
            r["compute"].write(COMPUTE_UOP_ADDR, base)
            r["compute"].write(COMPUTE_BIAS_ADDR, base)
            r["store"].write(STORE_OUT_ADDR, base)
            start = time.perf_counter()
            r["fetch"].write(CTRL, AP_START)
            for m in ("load", "compute", "store"):
                r[m].write(CTRL, AP_START_AUTORESTART)
            while r["compute"].read(COMPUTE_DONE_RD) != DONE:
                if time.perf_counter() - start > self.timeout_s:
                    raise BoardError(f"pynq board: the VTA program did not finish within "
                                     f"{self.timeout_s:g} s")
                time.sleep(self.poll_s)
            seconds = time.perf_counter() - start
            image.invalidate()
            out = np.array(image, dtype=np.uint8, copy=True)
        finally:
            insns.freebuffer()
            image.freebuffer()
        cycles = int(round(seconds * self.cfg.clock_mhz * 1e6))
        return BoardRun(out, cycles, {"wall_seconds": seconds})
