"""Datasets and loaders for training: the public entry points of bctvm.train's data side.

- digits_dataset(split, size, channels, seed): scikit-learn digits, deterministic 80/20 split
- image_folder(root, size, channels): an ImageFolder tree read with Pillow
- export_image_folder(dataset_or_name, out_dir, ...): write an ImageFolder tree of PNGs
- make_loader(dataset, batch_size, shuffle, workers, seed): a reproducible DataLoader
Every dataset yields (float32 C x H x W tensor in [-1, 1], int label).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from bctvm.errors import BadInputError
from bctvm.train.digits import DigitsDataset, digits_dataset
from bctvm.train.image_folder import ImageFolderDataset, export_image_folder, image_folder

__all__ = [
    "DigitsDataset",
    "ImageFolderDataset",
    "digits_dataset",
    "export_image_folder",
    "image_folder",
    "make_loader",
]


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, workers: int = 0,
                seed: int = 0) -> DataLoader:
    """DataLoader over `dataset`; with shuffle, the order depends only on `seed`."""
    if batch_size < 1:
        raise BadInputError(f"--batch-size must be at least 1, got {batch_size}")
    if workers < 0:
        raise BadInputError(f"--workers must be 0 or more, got {workers}")
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      generator=gen, persistent_workers=False)
