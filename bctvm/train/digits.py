"""scikit-learn's bundled handwritten digits (1797 images of 8x8, 10 classes; no download)
as a torch Dataset, upscaled to size x size and normalised like every dataset here.

Split: stratified 80/20 (train/test) with a fixed seed, so it is the same on every run.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bctvm.errors import BadInputError
from bctvm.train.transforms import check_channels, pil_to_tensor, resize_square

SPLITS = ("train", "test")
TEST_FRACTION = 0.2
DIGITS_MAX = 16  # the digits set stores pixels as integers 0..16


class DigitsDataset(Dataset):
    """Digits images held as uint8 size x size greyscale; items are
    (float32 tensor C x size x size in [-1, 1], int label 0..9)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, channels: int):
        check_channels(channels)
        self.images = images  # N x size x size uint8
        self.targets = [int(t) for t in labels]
        self.channels = channels
        self.classes = [str(c) for c in range(10)]

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Image.Image:
        """The greyscale uint8 PIL image of item `index` (what an export writes)."""
        return Image.fromarray(self.images[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return pil_to_tensor(self.image(index), self.channels), self.targets[index]


def _split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=TEST_FRACTION, stratify=labels, random_state=seed
    )
    return np.sort(train_idx), np.sort(test_idx)


def _upscale(raw: np.ndarray, size: int) -> np.ndarray:
    """N x 8 x 8 digits (0..16) -> N x size x size uint8 (0..255), bilinear."""
    u8 = np.rint(raw * (255.0 / DIGITS_MAX)).astype(np.uint8)
    return np.stack([np.asarray(resize_square(Image.fromarray(im), size)) for im in u8])


def digits_dataset(
    split: str = "train", size: int = 32, channels: int = 3, seed: int = 0
) -> DigitsDataset:
    """The digits `split` ("train": 1437 images, "test": 360; "val" is accepted for "test"),
    each upscaled to size x size pixels with `channels` channels (1 or 3, replicated grey)."""
    from sklearn.datasets import load_digits

    if split == "val":
        split = "test"
    if split not in SPLITS:
        raise BadInputError(f"digits split must be 'train' or 'test', got {split!r}")
    if size < 1:
        raise BadInputError(f"digits size must be a positive pixel count, got {size}")
    bunch = load_digits()
    labels = np.asarray(bunch.target)
    train_idx, test_idx = _split_indices(labels, seed)
    idx = train_idx if split == "train" else test_idx
    return DigitsDataset(_upscale(bunch.images[idx], size), labels[idx], channels)
