"""Training checkpoints: what they hold, how they are written and read, and how a model is
rebuilt from one.

A checkpoint is a torch.save'd dict (readable with torch.load(weights_only=True)):
  format "bctvm-train", version 1, epoch (completed epochs), model / optimizer / scheduler
  state dicts, best_top1 (% on the validation set, or training set without one), history
  (one dict per epoch), hparams (lr, wd, momentum, milestones, gamma), arch (ArchSpec as a
  dict, or None when the caller did not give one), classes (class names by label, or None).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from bctvm.errors import BadInputError

FORMAT = "bctvm-train"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "epoch", "model", "arch")


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to rebuild a zoo model: zoo name, block settings (as
    bctvm.models.get_model takes them), classes, and the input it was trained on
    (input_size x input_size pixels, `channels` channels)."""

    name: str
    block_size: int | tuple[int, int] = 0
    type: str = "fixed"
    padding_mode: str = "constant"
    num_classes: int = 10
    input_size: int = 32
    channels: int = 3

    def build(self) -> nn.Module:
        """A freshly initialised model of this architecture (BadInputError on an unknown name)."""
        from bctvm import models

        if self.name not in models.ZOO:
            known = ", ".join(sorted(models.ZOO))
            raise BadInputError(f"unknown arch {self.name!r}; known: {known}")
        return models.get_model(self.name, block_size=self.block_size, type=self.type,
                                padding_mode=self.padding_mode, num_classes=self.num_classes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "checkpoint") -> ArchSpec:
        names = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or "name" not in d:
            raise BadInputError(f"{source}: arch entry is not a dict with a 'name'")
        unknown = set(d) - names
        if unknown:
            raise BadInputError(f"{source}: unknown arch field(s) {sorted(unknown)}")
        d = dict(d)
        if isinstance(d.get("block_size"), list):
            d["block_size"] = tuple(d["block_size"])
        return cls(**d)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` (format/version added) to `path` atomically (temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a bctvm training checkpoint; BadInputError (naming the file) if it is missing,
    not a torch file, or lacks the bctvm-train fields."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: checkpoint file does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(f"{path}: not a readable torch checkpoint ({first})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise BadInputError(f"{path}: not a bctvm training checkpoint (no format '{FORMAT}')")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise BadInputError(f"{path}: checkpoint lacks field(s) {missing}")
    if ckpt["version"] != VERSION:
        raise BadInputError(f"{path}: checkpoint version {ckpt['version']}, expected {VERSION}")
    return ckpt


def load_weights(model: nn.Module, state_dict: dict, source: str) -> None:
    """Load `state_dict` into `model` strictly; BadInputError naming `source` on a mismatch."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise BadInputError(f"{source}: weights do not fit the model ({detail})") from err


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, ArchSpec, dict]:
    """Rebuild the model a checkpoint was trained as and load its weights (eval mode).
    Returns (model, arch, checkpoint dict)."""
    ckpt = load_checkpoint(path)
    if ckpt["arch"] is None:
        raise BadInputError(f"{path}: checkpoint has no arch; it was saved without an ArchSpec")
    arch = ArchSpec.from_dict(ckpt["arch"], source=str(path))
    model = arch.build()
    load_weights(model, ckpt["model"], str(path))
    model.eval()
    return model, arch, ckpt
