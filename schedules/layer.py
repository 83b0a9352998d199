"""LayerSpec: one integer block-conv layer as the VTA schedules see it (shapes, block, epilogue).

Units: channels and pixels are counts; `block` is the *input* block (bh, bw) in pixels;
`padding` is (top, left, bottom, right) pixels, applied to every block on its own; `groups`
as nn.Conv2d (weights O x C/groups x kh x kw), `dilation` (dh, dw).
The integer arithmetic (the project contract, docs/quantization.md):

    acc = blockconv(x_q, w_q) + b_q          int32, wraps like hardware
    if pool:      acc = maxpool2x2(acc)
    if sign:      acc = acc * sign[c]        sign is +1/-1 per output channel
    if residual:  acc = acc + align(r_q, s)  align(v, s) = v << s (s >= 0), round_shift(v, -s)
    acc = round_shift(acc, shift)            (acc + (1 << (sh-1))) >> sh, or << -sh
    y = clip(acc, 0 if relu else -128, 127) -> int8   [then clip(y, *clip): a fused clamp/ReLU6]

Rounding folded into the bias (`rounding_in_bias`): without pool and sign and with shift > 0,
conv + b + residual + 2^(sh-1) is the same wrapping int32 sum as conv + (b + 2^(sh-1)) +
residual, so the programs receive b + `bias_offset` (schedules.layout.pack_bias) and the
epilogue only shifts. Not with pool or sign: max and multiply do not commute with the add.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from boards import BoardConfig
from bctvm.errors import BadInputError, BlockShapeError, UnsupportedOpError

PADDING_MODES = ("constant", "replicate", "reflect")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class LayerSpec:
    """A block-conv layer with its fused epilogue, in NCHW terms (packing is derived)."""

    name: str
    in_channels: int
    out_channels: int
    height: int  # input map rows
    width: int  # input map columns
    block: tuple[int, int]  # input block (bh, bw), pixels
    kernel: tuple[int, int] = (3, 3)
    padding: tuple[int, int, int, int] = (1, 1, 1, 1)  # top, left, bottom, right
    padding_mode: str = "constant"
    pool: bool = False
    relu: bool = False
    shift: int = 0
    sign: bool = False
    residual_shift: int | None = None  # None: no residual input
    batch: int = 1
    groups: int = 1  # grouped conv (groups == channels: depthwise)
    dilation: tuple[int, int] = (1, 1)
    clip: tuple[int, int] | None = None  # int8 bounds of a fused clamp / ReLU6 (ALU MAX/MIN)
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        pad = tuple(int(p) for p in self.padding)
        if len(pad) == 2:
            pad = (pad[0], pad[1], pad[0], pad[1])
        object.__setattr__(self, "padding", pad)
        object.__setattr__(self, "block", tuple(int(b) for b in self.block))
        object.__setattr__(self, "kernel", tuple(int(k) for k in self.kernel))
        object.__setattr__(self, "dilation", tuple(int(d) for d in self.dilation))

    # ---- derived geometry -------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        """Blocks per side (nbh, nbw)."""
        return self.height // self.block[0], self.width // self.block[1]

    @property
    def padded_block(self) -> tuple[int, int]:
        """(rows, cols) of one padded input block."""
        t, l, b, r = self.padding
        return self.block[0] + t + b, self.block[1] + l + r

    @property
    def conv_block(self) -> tuple[int, int]:
        """(rows, cols) of one block's convolution output (before the pool)."""
        ph, pw = self.padded_block
        (kh, kw), (dh, dw) = self.kernel, self.dilation
        return ph - dh * (kh - 1), pw - dw * (kw - 1)

    @property
    def out_block(self) -> tuple[int, int]:
        """(rows, cols) of one block of the layer's output (after the pool)."""
        ch, cw = self.conv_block
        return (ch // 2, cw // 2) if self.pool else (ch, cw)

    @property
    def rounding_in_bias(self) -> bool:
        """True when the requant rounding constant 2^(shift-1) is added to the bias data
        instead of by an ALU step (shift > 0, no pool, no sign; see the module docstring)."""
        return self.shift > 0 and not self.pool and not self.sign

    @property
    def bias_offset(self) -> int:
        """What pack_bias adds to every bias entry (int32 wrap): 2^(shift-1) or 0."""
        return 1 << (self.shift - 1) if self.rounding_in_bias else 0

    @property
    def out_size(self) -> tuple[int, int]:
        nbh, nbw = self.grid
        oh, ow = self.out_block
        return nbh * oh, nbw * ow

    def ci_tiles(self, cfg: BoardConfig) -> int:
        return _ceil_div(self.in_channels, cfg.block_in)

    def co_tiles(self, cfg: BoardConfig) -> int:
        return _ceil_div(self.out_channels, cfg.block_out)

    def packed_groups(self, cfg: BoardConfig) -> int:
        """G': independent (input-tile range, output-tile range) pairs of the packed weight
        (schedules.layout.packed_groups; 1 for a dense conv, the tile count for depthwise)."""
        from .layout import packed_groups

        return packed_groups(self.out_channels, self.in_channels, self.groups, cfg)

    def ci_tiles_per_group(self, cfg: BoardConfig) -> int:
        """Input tiles one output tile reads (the packed weight's second dimension)."""
        return self.ci_tiles(cfg) // self.packed_groups(cfg)

    def macs(self) -> int:
        """Useful multiply-accumulates (unpadded channels, per group)."""
        nbh, nbw = self.grid
        ch, cw = self.conv_block
        return (self.batch * nbh * nbw * ch * cw * self.out_channels
                * (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1])

    def where(self) -> str:
        return f"layer '{self.name}'"

    # ---- validation -------------------------------------------------------------------------
    def validate(self, cfg: BoardConfig) -> None:
        """Raise a one-line BadInputError naming the layer if VTA cannot run it on `cfg`."""
        w = self.where()
        if self.in_channels <= 0 or self.out_channels <= 0 or self.height <= 0 or self.width <= 0:
            raise BadInputError(f"{w}: channels and map size must be positive")
        if self.batch <= 0 or self.batch % cfg.batch:
            raise BadInputError(
                f"{w}: batch {self.batch} is not a multiple of the board's BATCH {cfg.batch}")
        if self.padding_mode not in PADDING_MODES:
            raise BadInputError(f"{w}: padding mode {self.padding_mode!r} not in {PADDING_MODES}")
        bh, bw = self.block
        if bh <= 0 or bw <= 0 or self.height % bh or self.width % bw:
            raise BlockShapeError(
                f"{w}: block {bh}x{bw} does not divide the {self.height}x{self.width} map")
        if min(self.kernel) <= 0 or min(self.padding) < 0 or min(self.dilation) <= 0:
            raise BadInputError(f"{w}: kernel {self.kernel} / padding {self.padding} / "
                                f"dilation {self.dilation} invalid")
        if self.groups <= 0 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise BadInputError(f"{w}: groups {self.groups} must divide {self.in_channels} "
                                f"input and {self.out_channels} output channels")
        ch, cw = self.conv_block
        if ch < 1 or cw < 1:
            raise BlockShapeError(f"{w}: padded block {self.padded_block} is smaller than the "
                                  f"kernel {self.kernel}")
        t, l, b, r = self.padding
        if self.padding_mode == "reflect" and (max(t, b) >= bh or max(l, r) >= bw):
            raise BlockShapeError(f"{w}: reflect padding {self.padding} needs blocks larger "
                                  f"than the padding (block {bh}x{bw})")
        if self.pool and (ch % 2 or cw % 2):
            raise UnsupportedOpError(
                f"{w}: 2x2 max-pool needs an even per-block conv output, got {ch}x{cw}")
        if self.residual_shift is not None and abs(self.residual_shift) > 31:
            raise BadInputError(f"{w}: residual shift {self.residual_shift} out of range")
        if abs(self.shift) > 31:
            raise BadInputError(f"{w}: requant shift {self.shift} out of range")
