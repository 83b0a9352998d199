"""Weight initialisation shared by the zoo (torchvision's choices)."""

from __future__ import annotations

from torch import nn

from .block_conv import BlockConv2d

__all__ = ["init_cnn_weights"]


def init_cnn_weights(model: nn.Module, linear_std: float | None = None) -> None:
    """Kaiming-normal (fan_out, relu) convs with zero bias, BN weight 1 / bias 0; Linear layers
    get N(0, linear_std) with zero bias when linear_std is given, else PyTorch's default."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, BlockConv2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)
