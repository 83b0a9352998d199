"""`bctvm quantize` as a library call: checkpoint + ImageFolder data -> QuantizedNet + figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from bctvm.errors import BadInputError

from .agreement import agreement
from .calibrate import calibrate
from .qnet import QuantizedNet

__all__ = ["calibration_subset", "quantize_checkpoint"]


def calibration_subset(dataset, count: int):
    """`count` items spread evenly over `dataset` (ImageFolder trees are sorted by class, so
    the first N images would cover only the first classes)."""
    if count < 1:
        raise BadInputError(f"--calib must be at least 1 image, got {count}")
    n = len(dataset)
    if count >= n:
        return dataset
    idx = np.unique(np.linspace(0, n - 1, count).round().astype(int))
    return Subset(dataset, idx.tolist())


def quantize_checkpoint(
    ckpt: str | Path,
    data_dir: str | Path,
    calib: int = 256,
    split: str = "val",
    out: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[QuantizedNet, dict]:
    """Calibrate the checkpoint's model on `calib` images of DATA_DIR/train, compare the int8
    reference with the float model on DATA_DIR/SPLIT (see agreement()), and write the
    QuantizedNet to OUT.json + OUT.npz when `out` is given. Returns (qnet, agreement dict)."""
    from bctvm.train.checkpoint import model_from_checkpoint
    from bctvm.train.data import image_folder

    model, arch, _ = model_from_checkpoint(ckpt)
    root = Path(data_dir)
    calib_set = calibration_subset(image_folder(root / "train", arch.input_size, arch.channels),
                                   calib)
    with torch.no_grad():
        qnet = calibrate(model, calib_set, batch_size=batch_size, progress=progress)
    qnet.info.update({"checkpoint": str(ckpt), "arch": arch.to_dict()})
    test_set = image_folder(root / split, arch.input_size, arch.channels)
    result = agreement(model, qnet, test_set, batch_size=batch_size, progress=progress)
    if out is not None:
        qnet.save(out)
    return qnet, result
