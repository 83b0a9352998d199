"""Training loop, metrics and checkpoints on a small hand-built block CNN (fast)."""

import pytest
import torch
from torch import nn

from bctvm.errors import BadInputError
from bctvm.models.block_conv import BlockConv2d
from bctvm.train.checkpoint import load_checkpoint, save_checkpoint
from bctvm.train.data import digits_dataset, make_loader
from bctvm.train.loop import evaluate, train
from bctvm.train.metrics import topk_correct


def tiny_block_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        BlockConv2d(1, 8, 3, 4, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
        BlockConv2d(8, 16, 3, 4, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


@pytest.fixture(scope="module")
def loaders():
    tr = digits_dataset("train", size=8, channels=1)
    te = digits_dataset("test", size=8, channels=1)
    return make_loader(tr, 64, shuffle=True), make_loader(te, 256)


def test_topk_correct_counts():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 2, 0])
    assert topk_correct(logits, target, (1, 2, 5)) == [1, 2, 3]


def test_train_learns_digits_and_checkpoints(tmp_path, loaders):
    tl, vl = loaders
    model = tiny_block_cnn()
    before = evaluate(model, vl)
    hist = train(model, tl, vl, epochs=4, lr=0.1, wd=1e-4, momentum=0.9, milestones=[3],
                 ckpt_dir=tmp_path, progress=False, classes=[str(i) for i in range(10)])
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[2]["lr"] == pytest.approx(0.1) and hist[3]["lr"] == pytest.approx(0.01)
    after = evaluate(model, vl)
    # measured (seed 0): 10.0% before; 28.3, 59.2, 78.6, 91.4% after epochs 1-4
    assert after["top1"] > 75.0 and after["top1"] > before["top1"] + 50
    assert after["top5"] >= after["top1"]
    assert after["top1"] == pytest.approx(hist[-1]["val_top1"])
    last = load_checkpoint(tmp_path / "last.pt")
    best = load_checkpoint(tmp_path / "best.pt")
    assert last["epoch"] == 4 and last["classes"][3] == "3"
    assert best["best_top1"] == pytest.approx(max(h["val_top1"] for h in hist))
    assert best["epoch"] == max(hist, key=lambda h: h["val_top1"])["epoch"]


def test_resume_continues_like_an_uninterrupted_run(tmp_path, loaders):
    tl, vl = loaders
    full = tiny_block_cnn()
    make = lambda: make_loader(digits_dataset("train", size=8, channels=1), 64, shuffle=True)
    # the loader's generator advances per epoch, so each run gets a fresh loader
    ref = train(full, make(), vl, epochs=2, milestones=[1], progress=False)
    part = tiny_block_cnn()
    first = make()
    train(part, first, vl, epochs=1, milestones=[1], ckpt_dir=tmp_path / "a", progress=False)
    resumed = tiny_block_cnn()
    # continue with the loader in the state it was after epoch 1 (same shuffle sequence)
    hist = train(resumed, first, vl, epochs=2, milestones=[1], ckpt_dir=tmp_path / "b",
                 resume=tmp_path / "a" / "last.pt", progress=False)
    assert [h["epoch"] for h in hist] == [1, 2]
    assert hist[1]["lr"] == pytest.approx(0.01)  # the scheduler state came back
    assert hist[1]["val_top1"] == pytest.approx(ref[1]["val_top1"])
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_resume_with_reset_optimizer_starts_over(tmp_path, loaders):
    tl, vl = loaders
    m = tiny_block_cnn()
    train(m, tl, None, epochs=1, ckpt_dir=tmp_path, progress=False)
    hist = train(tiny_block_cnn(), tl, None, epochs=1, lr=0.05,
                 resume=tmp_path / "last.pt", reset_optimizer=True, progress=False)
    assert len(hist) == 1 and hist[0]["lr"] == pytest.approx(0.05)
    assert hist[0]["val_top1"] is None


def test_bad_hyper_parameters_and_checkpoints(tmp_path, loaders):
    tl, _ = loaders
    with pytest.raises(BadInputError, match="--epochs"):
        train(tiny_block_cnn(), tl, epochs=0, progress=False)
    with pytest.raises(BadInputError, match="--momentum"):
        train(tiny_block_cnn(), tl, epochs=1, momentum=1.5, progress=False)
    with pytest.raises(BadInputError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(BadInputError, match="junk.pt: not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(BadInputError, match="not a bctvm training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    save_checkpoint(tmp_path / "other.pt", {"epoch": 1, "model": nn.Linear(2, 2).state_dict(),
                                            "arch": None})
    with pytest.raises(BadInputError, match="weights do not fit"):
        train(tiny_block_cnn(), tl, epochs=1, resume=tmp_path / "other.pt", progress=False)
