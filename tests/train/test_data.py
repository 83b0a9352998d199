"""Datasets: digits split and normalisation, ImageFolder round trip and its errors."""

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from bctvm.errors import BadInputError
from bctvm.train.data import digits_dataset, export_image_folder, image_folder, make_loader


def test_digits_split_is_stratified_disjoint_and_deterministic():
    tr = digits_dataset("train", size=16, channels=1)
    te = digits_dataset("test", size=16, channels=1)
    assert len(tr) + len(te) == 1797
    assert len(te) == 360
    test_counts, train_counts = Counter(te.targets), Counter(tr.targets)
    assert set(test_counts) == set(range(10))
    for c in range(10):  # 80/20 within each class
        total = test_counts[c] + train_counts[c]
        assert abs(test_counts[c] - 0.2 * total) <= 1
    again = digits_dataset("test", size=16, channels=1)
    assert np.array_equal(te.images, again.images) and te.targets == again.targets
    # no test image appears in the training split
    train_rows = {row.tobytes() for row in tr.images}
    overlap = sum(row.tobytes() in train_rows for row in te.images)
    assert overlap <= 5  # the raw set holds a few exact duplicate digits


def test_digits_items_are_normalised_channel_replicated_tensors():
    ds = digits_dataset("train", size=32, channels=3)
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert isinstance(y, int) and 0 <= y <= 9
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.min() == -1.0  # digit backgrounds are 0 -> -1
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_digits_other_seed_gives_another_split():
    a = digits_dataset("test", size=8, channels=1, seed=0)
    b = digits_dataset("test", size=8, channels=1, seed=1)
    assert not np.array_equal(a.images, b.images)


@pytest.mark.parametrize("kwargs", [{"split": "dev"}, {"channels": 2}, {"size": 0}])
def test_digits_bad_arguments(kwargs):
    with pytest.raises(BadInputError):
        digits_dataset(**kwargs)


def test_export_then_image_folder_gives_the_same_tensors(tmp_path):
    counts = export_image_folder("digits", tmp_path, size=24, progress=False)
    assert counts == {"train": 1437, "val": 360}
    folder = image_folder(tmp_path / "val", size=24, channels=3)
    assert folder.classes == [str(c) for c in range(10)]
    assert len(folder) == 360
    ref = digits_dataset("test", size=24, channels=3)
    for i in range(0, len(folder), 37):
        x, y = folder[i]
        k = int(folder.samples[i][0].stem)  # files are named by split index
        rx, ry = ref[k]
        assert y == ry
        assert torch.equal(x, rx)


def test_export_a_dataset_object_and_resize_on_load(tmp_path):
    ds = digits_dataset("test", size=8, channels=1)
    counts = export_image_folder(ds, tmp_path / "small", progress=False)
    assert counts == {"all": 360}
    up = image_folder(tmp_path / "small", size=20, channels=1)
    x, _ = up[0]
    assert x.shape == (1, 20, 20)


def test_export_from_tensors_round_trips(tmp_path):
    class Tiny(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            img = torch.randint(0, 256, (3, 6, 6), generator=g).float()
            return (img / 255 - 0.5) / 0.5, i % 2

    export_image_folder(Tiny(), tmp_path, progress=False)
    back = image_folder(tmp_path, size=6, channels=3)
    assert back.classes == ["0", "1"]
    assert len(back) == 4
    x, y = back[0]  # sorted: class 0 holds items 0 and 2
    assert y == 0
    assert torch.allclose(x, Tiny()[0][0], atol=1e-6)


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        image_folder(tmp_path / "missing", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no class subfolders"):
        image_folder(tmp_path / "empty", 32)
    (tmp_path / "noimg" / "cat").mkdir(parents=True)
    (tmp_path / "noimg" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(BadInputError, match="cat: class folder holds no image"):
        image_folder(tmp_path / "noimg", 32)
    bad = tmp_path / "bad" / "a"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"not a png")
    ds = image_folder(tmp_path / "bad", 8)
    with pytest.raises(BadInputError, match="x.png: not a readable image"):
        ds[0]


def test_image_folder_reads_rgb_jpeg(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    Image.new("RGB", (10, 12), (255, 0, 0)).save(d / "r.jpg")
    x, y = image_folder(tmp_path, size=8, channels=3)[0]
    assert x.shape == (3, 8, 8) and y == 0
    assert x[0].mean() > 0.9 and x[1].mean() < -0.9


def test_loader_shuffle_depends_only_on_seed():
    ds = digits_dataset("test", size=8, channels=1)
    order = lambda s: torch.cat([y for _, y in make_loader(ds, 50, shuffle=True, seed=s)])
    assert torch.equal(order(3), order(3))
    assert not torch.equal(order(3), order(4))
    with pytest.raises(BadInputError):
        make_loader(ds, 0)
