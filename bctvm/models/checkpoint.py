"""Load a user's PyTorch checkpoint into a model, without running code from the file.

    state = read_state_dict("model_best.pth.tar")   # name -> tensor
    load_checkpoint(model, "model_best.pth.tar")    # strict: every key must match

Accepted files (what training scripts save): a bare state dict, or a dict holding it under
"state_dict" next to anything else ("epoch", "arch", "optimizer_state_dict", ...). Keys
prefixed "module." (nn.DataParallel / DistributedDataParallel) are stripped. The file is read
with `torch.load(weights_only=True)`: only tensors, containers and primitive values unpickle;
torch's own optimizer classes (`torch.optim.SGD`, ...) are allowed as safe globals because
training scripts store the optimizer's class, and nothing else is.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from bctvm.errors import BadInputError

__all__ = ["read_state_dict", "load_checkpoint", "has_block_convs", "optimizer_classes"]

_PREFIX = "module."


def optimizer_classes() -> list[type]:
    """torch.optim's optimizer classes (the only globals a checkpoint may name)."""
    return [c for c in vars(torch.optim).values()
            if isinstance(c, type) and issubclass(c, torch.optim.Optimizer)]


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The state dict of checkpoint `path` (bare or under "state_dict", "module." stripped);
    BadInputError naming the file when it is missing, needs code to load or holds no
    state dict."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"checkpoint not found: {p}")
    try:
        with torch.serialization.safe_globals(optimizer_classes()):
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(f"{p}: cannot be loaded without running code from the file "
                            f"(weights_only=True): {first}") from None
    except Exception as err:  # noqa: BLE001 - a corrupt or foreign file
        raise BadInputError(f"{p}: not a PyTorch checkpoint ({type(err).__name__}: "
                            f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})"
                            ) from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise BadInputError(f"{p}: holds no state dict (a dict of tensors, bare or under "
                            "'state_dict')")
    return {k[len(_PREFIX):] if k.startswith(_PREFIX) else k: v for k, v in state.items()}


def load_checkpoint(model: nn.Module, path) -> nn.Module:
    """Load checkpoint `path` into `model` strictly; BadInputError naming the first missing
    or unexpected key (model order) or a shape mismatch. Returns the model."""
    state = read_state_dict(path)
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            extra = [k for k in state if k not in own]
            hint = f" (the checkpoint has '{extra[0]}' instead)" if extra else ""
            raise BadInputError(f"{path}: missing key '{key}' for {type(model).__name__}{hint}"
                                " - a checkpoint of another architecture?")
        if tuple(state[key].shape) != tuple(value.shape):
            raise BadInputError(f"{path}: key '{key}' has shape {tuple(state[key].shape)}, the "
                                f"model's is {tuple(value.shape)}")
    for key in state:
        if key not in own:
            raise BadInputError(f"{path}: unexpected key '{key}' for {type(model).__name__}")
    model.load_state_dict(state, strict=True)
    return model


def has_block_convs(model: nn.Module) -> bool:
    """Does `model` hold block convolutions of its own: bctvm's BlockConv2d or a conv layer in
    the style of the BlockConv repository (a torch `_ConvNd` carrying `block_size`)?"""
    from torch.nn.modules.conv import _ConvNd

    from .block_conv import BlockConv2d

    return any(isinstance(m, BlockConv2d) or (isinstance(m, _ConvNd) and hasattr(m, "block_size"))
               for m in model.modules())
