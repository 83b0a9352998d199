"""Block settings shared by the zoo builders: one object that makes every block conv alike."""

from __future__ import annotations

from dataclasses import dataclass

from .block_conv import BlockConv2d, IntPair, normalize_block_type, normalize_padding_mode

__all__ = ["BlockSettings"]


@dataclass(frozen=True)
class BlockSettings:
    """block_size (pixels for 'fixed', blocks per side for 'hierarchical'), type, padding mode."""

    block_size: IntPair
    type: str = "fixed"  # noqa: A003 - the seed's name
    padding_mode: str = "constant"

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", normalize_block_type(self.type))
        object.__setattr__(self, "padding_mode", normalize_padding_mode(self.padding_mode))

    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
    ) -> BlockConv2d:
        """A BlockConv2d with these block settings (stride 2 = block conv + 2x2 max-pool)."""
        return BlockConv2d(
            in_channels,
            out_channels,
            kernel_size,
            self.block_size,
            type=self.type,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=bias,
            padding_mode=self.padding_mode,
        )
