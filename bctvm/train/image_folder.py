"""ImageFolder trees (root/<class>/<image>) read and written with Pillow.

Classes are the sorted names of root's subfolders; label i is the i-th class. Images are
resized to size x size (bilinear) and normalised like every dataset here (see transforms).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm import tqdm

from bctvm.errors import BadInputError
from bctvm.train.transforms import check_channels, pil_to_tensor, resize_square, tensor_to_pil

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"}


class ImageFolderDataset(Dataset):
    """Items are (float32 tensor C x size x size in [-1, 1], int label); files are decoded
    lazily on each access."""

    def __init__(self, root: Path, classes: list[str], samples: list[tuple[Path, int]],
                 size: int, channels: int):
        self.root = root
        self.classes = classes
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.size = size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                img.load()
                img = resize_square(img.convert(check_channels(self.channels)), self.size)
        except (OSError, UnidentifiedImageError) as err:
            raise BadInputError(f"{path}: not a readable image ({err})") from err
        return pil_to_tensor(img, self.channels), label


def image_folder(root: str | Path, size: int, channels: int = 3) -> ImageFolderDataset:
    """Index the ImageFolder tree at `root`; BadInputError (naming the folder) if it is
    missing, not a directory, has no class subfolders, or a class folder holds no image."""
    root = Path(root)
    check_channels(channels)
    if size < 1:
        raise BadInputError(f"image size must be a positive pixel count, got {size}")
    if not root.exists():
        raise BadInputError(f"{root}: image folder does not exist")
    if not root.is_dir():
        raise BadInputError(f"{root}: not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise BadInputError(f"{root}: no class subfolders (expected {root}/<class>/<image>)")
    samples: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p for p in class_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise BadInputError(f"{class_dir}: class folder holds no image files")
        samples.extend((f, label) for f in files)
    return ImageFolderDataset(root, [d.name for d in class_dirs], samples, size, channels)


def _class_names(dataset: Dataset, labels: list[int]) -> list[str]:
    names = getattr(dataset, "classes", None)
    if names is None:
        names = [str(c) for c in range(max(labels) + 1)]
    return [str(n) for n in names]


def write_image_folder(dataset: Dataset, out_dir: str | Path, progress: bool = True) -> int:
    """Write every item of `dataset` as out_dir/<class>/<index>.png; returns the count.

    A dataset with an `image(i)` method (DigitsDataset) is written from its uint8 pixels;
    any other one from its normalised tensors, mapped back to uint8."""
    out_dir = Path(out_dir)
    n = len(dataset)
    if n == 0:
        raise BadInputError(f"{out_dir}: refusing to export an empty dataset")
    labels = [int(t) for t in getattr(dataset, "targets", [dataset[i][1] for i in range(n)])]
    names = _class_names(dataset, labels)
    for name in names:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    width = len(str(n - 1))
    has_image = callable(getattr(dataset, "image", None))
    for i in tqdm(range(n), desc=f"export {out_dir.name}", disable=not progress, leave=False):
        img = dataset.image(i) if has_image else tensor_to_pil(dataset[i][0])
        img.save(out_dir / names[labels[i]] / f"{i:0{width}d}.png")
    return n


def first_per_class(dataset: Dataset, per_class: int) -> Dataset:
    """A view of `dataset` keeping the first `per_class` items of each class (in order);
    keeps the classes list and the uint8 `image(i)` access when the dataset has them."""
    if per_class < 1:
        raise BadInputError(f"--per-class must be at least 1, got {per_class}")
    labels = [int(t) for t in dataset.targets]
    seen: dict[int, int] = {}
    keep = []
    for i, t in enumerate(labels):
        if seen.get(t, 0) < per_class:
            seen[t] = seen.get(t, 0) + 1
            keep.append(i)
    return _Subset(dataset, keep)


class _Subset(Dataset):
    def __init__(self, base: Dataset, indices: list[int]):
        self.base, self.indices = base, indices
        self.targets = [base.targets[i] for i in indices]
        self.classes = getattr(base, "classes", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]

    def image(self, i: int) -> Image.Image:
        return self.base.image(self.indices[i])


def export_image_folder(dataset_or_name, out_dir: str | Path, size: int = 32, seed: int = 0,
                        per_class: int | None = None, progress: bool = True) -> dict[str, int]:
    """Export a dataset as an ImageFolder tree; returns {split: image count}.

    - a name ("digits"): both splits, out_dir/train/<class>/*.png and out_dir/val/<class>/*.png,
      images of size x size pixels (split `seed` as in digits_dataset); `per_class` keeps only
      the first N images of each class in each split (small smoke-test sets);
    - a Dataset: its items, out_dir/<class>/*.png (size, seed, per_class ignored), key "all".
    """
    if isinstance(dataset_or_name, str):
        if dataset_or_name != "digits":
            raise BadInputError(f"unknown dataset {dataset_or_name!r}; known: digits")
        from bctvm.train.digits import digits_dataset

        out_dir = Path(out_dir)
        counts = {}
        for split, folder in (("train", "train"), ("test", "val")):
            ds = digits_dataset(split, size=size, channels=1, seed=seed)
            if per_class is not None:
                ds = first_per_class(ds, per_class)
            counts[folder] = write_image_folder(ds, out_dir / folder, progress=progress)
        return counts
    return {"all": write_image_folder(dataset_or_name, out_dir, progress=progress)}
