"""Turn the many ways of passing sample images into (x, labels-or-None) batches.

Accepted: a float tensor / numpy array N x C x H x W; a torch Dataset of (image, label)
items; or any iterable of batches (a DataLoader), each a tensor or an (x, y) pair.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bctvm.errors import BadInputError

__all__ = ["iter_batches", "as_float_batch"]


def as_float_batch(x, what: str = "input") -> torch.Tensor:
    """A float32 NCHW tensor from a tensor or array (BadInputError on other ranks / dtypes)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise BadInputError(f"{what}: expected a tensor or numpy array, got {type(x).__name__}")
    if x.dim() != 4:
        raise BadInputError(f"{what}: expected an N x C x H x W batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise BadInputError(f"{what}: expected float images, got dtype {x.dtype}")
    return x.detach().to(torch.float32)


def iter_batches(
    inputs, batch_size: int = 32, labels=None, what: str = "inputs"
) -> Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """Yield (float32 x, int64 labels or None) batches of at most `batch_size` images."""
    if batch_size < 1:
        raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        x = as_float_batch(inputs, what)
        y = None if labels is None else torch.as_tensor(np.asarray(labels)).long()
        if y is not None and len(y) != len(x):
            raise BadInputError(f"{what}: {len(x)} images but {len(y)} labels")
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], None if y is None else y[i:i + batch_size]
        return
    if isinstance(inputs, Dataset) and hasattr(inputs, "__len__"):
        inputs = DataLoader(inputs, batch_size=batch_size, shuffle=False)
    if not isinstance(inputs, Iterable):
        raise BadInputError(f"{what}: expected a tensor, a Dataset or an iterable of batches, "
                            f"got {type(inputs).__name__}")
    for batch in inputs:
        if isinstance(batch, (tuple, list)):
            x = as_float_batch(batch[0], what)
            y = torch.as_tensor(batch[1]).long() if len(batch) > 1 else None
        else:
            x, y = as_float_batch(batch, what), None
        yield x, y
