"""BoardConfig: one VTA board's hardware parameters, validated, with everything derived.

The TOML file of a board (boards/<name>.toml) gives log2 sizes, clock, bus width, the
`onchip_reuse` capability and the cycle-model costs. Everything else (element bytes, buffer
depths, instruction field widths, GEMM shape) is derived here and nowhere else.

Units: sizes in bytes unless named `*_depth` (elements of that buffer) or `*_bits`.
Layouts: input/output elements are BATCH x BLOCK_IN (resp. BLOCK_OUT) vectors
(NCHW1n16c tiles on the default board), weight elements BLOCK_OUT x BLOCK_IN matrices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bctvm.errors import BoardConfigError

# ISA constants fixed by the VTA instruction format (not board choices).
INSN_BYTES = 16
UOP_BYTES = 4
OPCODE_BITS = 3
MEMTYPE_BITS = 3
ALU_OPCODE_BITS = 3
FLAG_BITS = 4  # pop_prev, pop_next, push_prev, push_next
WORD_BITS = 64


@dataclass(frozen=True)
class Timing:
    """Cycle-model costs, in board clock cycles (see docs/cycle-model.md)."""

    insn_issue_cycles: int = 1  # fetch/decode/dispatch of one instruction
    dram_request_cycles: int = 32  # fixed latency of one LOAD/STORE request
    dram_row_cycles: int = 4  # extra cost per row of a 2-D transfer (burst set-up)
    sram_fill_bytes_per_cycle: int = 16  # zero-padding / on-chip write rate (bytes)
    onchip_bytes_per_cycle: int = 16  # onchip_reuse copy rate OUT -> INP (bytes)
    gemm_uop_cycles: int = 1  # initiation interval of one GEMM micro-op
    alu_uop_cycles: int = 1  # initiation interval of one ALU micro-op (imm)
    alu_reg_uop_cycles: int = 2  # ... with an accumulator-tile operand (two reads)
    pipeline_fill_cycles: int = 4  # GEMM/ALU pipeline depth paid once per instruction


@dataclass(frozen=True)
class Energy:
    """Energy per event, in picojoules (the [energy] table of a board TOML, which cites its
    sources). Estimates of the data movement and arithmetic, not a measured board power."""

    dram_pj_per_byte: float  # one byte read from or written to off-chip DRAM
    sram_pj_per_byte: float  # one byte read from or written to an on-chip VTA buffer
    mac_pj: float  # one int8 x int8 multiply with int32 accumulate


@dataclass(frozen=True)
class BoardConfig:
    """A VTA board. Raw fields come from boards/<name>.toml; properties derive the rest."""

    name: str
    description: str
    log_inp_width: int  # input element bits = 2**log_inp_width
    log_wgt_width: int
    log_acc_width: int
    log_batch: int
    log_block_in: int
    log_block_out: int
    log_uop_buff_size: int  # bytes, log2
    log_inp_buff_size: int
    log_wgt_buff_size: int
    log_acc_buff_size: int
    log_bus_width: int  # DRAM bus width in bits, log2
    clock_mhz: float
    onchip_reuse: bool = False
    loop_iter_bits: int = 14  # GEMM/ALU iter_out / iter_in field width
    alu_imm_bits: int = 16  # signed ALU immediate
    sram_addr_bits: int = 16  # LOAD/STORE sram_base
    dram_addr_bits: int = 32  # LOAD/STORE dram_base
    xfer_size_bits: int = 16  # y_size, x_size, x_stride
    pad_bits: int = 4  # y_pad_0/1, x_pad_0/1
    timing: Timing = field(default_factory=Timing)
    energy: Energy | None = None  # None: the board gives no energy constants

    def __post_init__(self):
        self.validate()

    # ---- element widths and shapes --------------------------------------------------------
    @property
    def inp_bits(self) -> int:
        return 1 << self.log_inp_width

    @property
    def wgt_bits(self) -> int:
        return 1 << self.log_wgt_width

    @property
    def acc_bits(self) -> int:
        return 1 << self.log_acc_width

    @property
    def out_bits(self) -> int:
        return self.inp_bits  # LOG_OUT_WIDTH = LOG_INP_WIDTH

    @property
    def batch(self) -> int:
        return 1 << self.log_batch

    @property
    def block_in(self) -> int:
        return 1 << self.log_block_in

    @property
    def block_out(self) -> int:
        return 1 << self.log_block_out

    @property
    def inp_dtype(self) -> str:
        return f"int{self.inp_bits}"

    @property
    def wgt_dtype(self) -> str:
        return f"int{self.wgt_bits}"

    @property
    def acc_dtype(self) -> str:
        return f"int{self.acc_bits}"

    @property
    def out_dtype(self) -> str:
        return f"int{self.out_bits}"

    # ---- element bytes (one buffer element is a whole tile) --------------------------------
    @property
    def inp_elem_bytes(self) -> int:
        return self.batch * self.block_in * self.inp_bits // 8

    @property
    def wgt_elem_bytes(self) -> int:
        return self.block_out * self.block_in * self.wgt_bits // 8

    @property
    def acc_elem_bytes(self) -> int:
        return self.batch * self.block_out * self.acc_bits // 8

    @property
    def out_elem_bytes(self) -> int:
        return self.batch * self.block_out * self.out_bits // 8

    @property
    def uop_elem_bytes(self) -> int:
        return UOP_BYTES

    @property
    def insn_bytes(self) -> int:
        return INSN_BYTES

    # ---- buffer sizes (bytes) and depths (elements) ---------------------------------------
    @property
    def uop_buff_bytes(self) -> int:
        return 1 << self.log_uop_buff_size

    @property
    def inp_buff_bytes(self) -> int:
        return 1 << self.log_inp_buff_size

    @property
    def wgt_buff_bytes(self) -> int:
        return 1 << self.log_wgt_buff_size

    @property
    def acc_buff_bytes(self) -> int:
        return 1 << self.log_acc_buff_size

    @property
    def out_buff_bytes(self) -> int:
        return self.acc_depth * self.out_elem_bytes

    @property
    def log_uop_depth(self) -> int:
        return self.log_uop_buff_size - (UOP_BYTES.bit_length() - 1)

    @property
    def log_inp_depth(self) -> int:
        return self.log_inp_buff_size - (self.inp_elem_bytes.bit_length() - 1)

    @property
    def log_wgt_depth(self) -> int:
        return self.log_wgt_buff_size - (self.wgt_elem_bytes.bit_length() - 1)

    @property
    def log_acc_depth(self) -> int:
        return self.log_acc_buff_size - (self.acc_elem_bytes.bit_length() - 1)

    @property
    def uop_depth(self) -> int:
        return 1 << self.log_uop_depth

    @property
    def inp_depth(self) -> int:
        return 1 << self.log_inp_depth

    @property
    def wgt_depth(self) -> int:
        return 1 << self.log_wgt_depth

    @property
    def acc_depth(self) -> int:
        return 1 << self.log_acc_depth

    @property
    def out_depth(self) -> int:
        return self.acc_depth  # the output buffer holds the narrowed copy of each acc element

    # ---- micro-op and instruction field widths (bits) -------------------------------------
    @property
    def uop_dst_bits(self) -> int:
        return self.log_acc_depth

    @property
    def uop_src_bits(self) -> int:
        # indexes the input buffer (GEMM) or the accumulator (ALU): wide enough for both
        return max(self.log_inp_depth, self.log_acc_depth)

    @property
    def uop_wgt_bits(self) -> int:
        return self.log_wgt_depth

    @property
    def uop_bgn_bits(self) -> int:
        return self.log_uop_depth

    @property
    def uop_end_bits(self) -> int:
        return self.log_uop_depth + 1

    # ---- system -----------------------------------------------------------------------------
    @property
    def bus_bits(self) -> int:
        return 1 << self.log_bus_width

    @property
    def bus_bytes(self) -> int:
        return self.bus_bits // 8

    @property
    def gemm_macs_per_cycle(self) -> int:
        return self.batch * self.block_in * self.block_out

    @property
    def key(self) -> str:
        """Self-describing name, e.g. 1x16_i8w8a32_15_15_18_17 (VTA's naming)."""
        return (
            f"{self.batch}x{self.block_in}"
            + (f"x{self.block_out}" if self.block_out != self.block_in else "")
            + f"_i{self.inp_bits}w{self.wgt_bits}a{self.acc_bits}"
            + f"_{self.log_uop_buff_size}_{self.log_inp_buff_size}"
            + f"_{self.log_wgt_buff_size}_{self.log_acc_buff_size}"
        )

    def memtype_elem_bytes(self) -> dict[str, int]:
        """Element bytes per memory type name (DRAM addresses count these elements)."""
        return {
            "uop": self.uop_elem_bytes,
            "wgt": self.wgt_elem_bytes,
            "inp": self.inp_elem_bytes,
            "acc": self.acc_elem_bytes,
            "out": self.out_elem_bytes,
            "acc8": self.out_elem_bytes,
        }

    # ---- encoding layout sums, checked against 64-bit words ----------------------------------
    def word_bits(self) -> dict[str, int]:
        """Bits used in each 64-bit instruction word / the 32-bit micro-op, per format."""
        head = OPCODE_BITS + FLAG_BITS
        return {
            "mem.word0": head + MEMTYPE_BITS + self.sram_addr_bits + self.dram_addr_bits,
            "mem.word1": 3 * self.xfer_size_bits + 4 * self.pad_bits,
            "gemm.word0": head + 1 + self.uop_bgn_bits + self.uop_end_bits
            + 2 * self.loop_iter_bits,
            "gemm.word1": 2 * (self.log_acc_depth + self.log_inp_depth + self.log_wgt_depth),
            "alu.word0": head + 1 + self.uop_bgn_bits + self.uop_end_bits
            + 2 * self.loop_iter_bits,
            "alu.word1": 4 * self.log_acc_depth + ALU_OPCODE_BITS + 1 + self.alu_imm_bits,
            "uop": self.uop_dst_bits + self.uop_src_bits + self.uop_wgt_bits,
        }

    def validate(self) -> None:
        """Raise BoardConfigError naming the board and field if the config is not buildable."""

        def bad(fieldname: str, why: str):
            raise BoardConfigError(f"board '{self.name}': {fieldname}: {why}")

        for f in dataclasses.fields(self):
            if f.name.startswith("log_") and not isinstance(getattr(self, f.name), int):
                bad(f.name, "must be an integer (log2 of the size)")
        if self.log_inp_width != 3 or self.log_wgt_width != 3:
            bad("log_inp_width/log_wgt_width", "bctvm supports 8-bit inputs and weights (3)")
        if self.log_acc_width != 5:
            bad("log_acc_width", "bctvm supports 32-bit accumulators (5)")
        if not 0 <= self.log_batch <= 4:
            bad("log_batch", f"{self.log_batch} not in 0..4")
        for n in ("log_block_in", "log_block_out"):
            if not 2 <= getattr(self, n) <= 6:
                bad(n, f"{getattr(self, n)} not in 2..6 (4..64 lanes)")
        for n, elem in (
            ("log_uop_buff_size", UOP_BYTES),
            ("log_inp_buff_size", self.inp_elem_bytes),
            ("log_wgt_buff_size", self.wgt_elem_bytes),
            ("log_acc_buff_size", self.acc_elem_bytes),
        ):
            if (1 << getattr(self, n)) < elem:
                bad(n, f"buffer of {1 << getattr(self, n)} B is smaller than one element ({elem} B)")
        for n, log_depth in (
            ("log_uop_buff_size", self.log_uop_depth),
            ("log_inp_buff_size", self.log_inp_depth),
            ("log_wgt_buff_size", self.log_wgt_depth),
            ("log_acc_buff_size", self.log_acc_depth),
        ):
            if log_depth > self.sram_addr_bits:
                bad(n, f"depth 2**{log_depth} exceeds the {self.sram_addr_bits}-bit sram_base field")
        if not 3 <= self.log_bus_width <= 10:
            bad("log_bus_width", f"{self.log_bus_width} not in 3..10 (8..1024-bit bus)")
        if not self.clock_mhz > 0:
            bad("clock_mhz", "must be positive")
        if self.onchip_reuse and self.inp_elem_bytes != self.out_elem_bytes:
            bad("onchip_reuse", "needs BLOCK_IN == BLOCK_OUT (an output element must be an input element)")
        for fmt, used in self.word_bits().items():
            limit = 32 if fmt == "uop" else WORD_BITS
            if used > limit:
                bad(fmt, f"fields take {used} bits, more than the {limit}-bit "
                    f"{'micro-op' if fmt == 'uop' else 'instruction word'}")
        for n in dataclasses.fields(Timing):
            if getattr(self.timing, n.name) < 0:
                bad(f"timing.{n.name}", "must be >= 0")
        for n in dataclasses.fields(Energy) if self.energy else ():
            v = getattr(self.energy, n.name)
            if not isinstance(v, (int, float)) or v < 0:
                bad(f"energy.{n.name}", "must be a number >= 0 (picojoules)")

    def summary(self) -> str:
        """One line for `bctvm boards`."""
        kib = lambda b: f"{b // 1024} KiB"  # noqa: E731
        return (
            f"{self.name:8s} {self.key:24s} GEMM {self.batch}x{self.block_in}x{self.block_out} "
            f"({self.gemm_macs_per_cycle} MAC/cycle)  uop {kib(self.uop_buff_bytes)}/{self.uop_depth}  "
            f"inp {kib(self.inp_buff_bytes)}/{self.inp_depth}  wgt {kib(self.wgt_buff_bytes)}/{self.wgt_depth}  "
            f"acc {kib(self.acc_buff_bytes)}/{self.acc_depth}  out {kib(self.out_buff_bytes)}  "
            f"bus {self.bus_bits}-bit  {self.clock_mhz:g} MHz  "
            f"onchip_reuse {'on' if self.onchip_reuse else 'off'}"
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
