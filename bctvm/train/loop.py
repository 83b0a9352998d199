"""The training loop (SGD with momentum and weight decay, MultiStepLR) and evaluation.

Accuracies are percentages (0-100); losses are mean cross-entropy per sample. CPU only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from bctvm.errors import BadInputError
from bctvm.train.checkpoint import ArchSpec, load_checkpoint, load_weights, save_checkpoint
from bctvm.train.metrics import RunningMeter

LAST = "last.pt"
BEST = "best.pt"


def evaluate(model: nn.Module, loader: DataLoader, progress: bool = False,
             desc: str = "eval") -> dict[str, float]:
    """Run `model` (in eval mode) over `loader`: {"top1": %, "top5": %, "loss": mean CE}.
    The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    meter = RunningMeter()
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False):
            logits = model(x)
            meter.update(loss_fn(logits, y).item(), logits, y)
    model.train(was_training)
    return meter.result()


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    progress: bool = False, desc: str = "train") -> dict[str, float]:
    """One pass of SGD steps over `loader`; returns the running {"top1", "top5", "loss"}."""
    model.train()
    meter = RunningMeter()
    loss_fn = nn.CrossEntropyLoss()
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for x, y in bar:
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        meter.update(loss.item(), logits.detach(), y)
        if progress:
            r = meter.result()
            bar.set_postfix(loss=f"{r['loss']:.3f}", top1=f"{r['top1']:.1f}")
    return meter.result()


def _check_hparams(epochs: int, lr: float, wd: float, momentum: float,
                   milestones: Iterable[int]) -> list[int]:
    if epochs < 1:
        raise BadInputError(f"--epochs must be at least 1, got {epochs}")
    if lr <= 0:
        raise BadInputError(f"--lr must be positive, got {lr}")
    if wd < 0:
        raise BadInputError(f"--wd must be 0 or more, got {wd}")
    if not 0 <= momentum < 1:
        raise BadInputError(f"--momentum must be in [0, 1), got {momentum}")
    ms = sorted(int(m) for m in milestones)
    if any(m < 1 for m in ms):
        raise BadInputError(f"--milestones must be positive epoch numbers, got {ms}")
    return ms


def _as_arch(arch: ArchSpec | dict | None) -> dict | None:
    if arch is None or isinstance(arch, dict):
        return None if arch is None else ArchSpec.from_dict(arch, "arch").to_dict()
    return arch.to_dict()


def train(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    epochs: int = 10,
    lr: float = 0.1,
    wd: float = 1e-4,
    momentum: float = 0.9,
    milestones: Iterable[int] = (),
    ckpt_dir: str | Path | None = None,
    resume: str | Path | None = None,
    reset_optimizer: bool = False,
    progress: bool = True,
    *,
    arch: ArchSpec | dict | None = None,
    classes: list[str] | None = None,
    gamma: float = 0.1,
) -> list[dict]:
    """Train `model` in place up to `epochs` total epochs; returns the per-epoch history.

    SGD(lr, momentum, weight_decay=wd), learning rate times `gamma` at each epoch number in
    `milestones`. After every epoch, with `ckpt_dir`, writes ckpt_dir/last.pt and, when the
    epoch's top-1 (validation if `val_loader`, else training) is the best so far, best.pt.
    `arch` (an ArchSpec) is stored so bctvm.train.checkpoint.model_from_checkpoint and
    `bctvm eval` can rebuild the model; `classes` (names by label) so eval can check a folder.

    resume: a checkpoint path. Loads its weights; without reset_optimizer also the optimizer,
    scheduler, epoch count, best top-1 and history, so training continues from the saved
    epoch (its hyper-parameters win over lr/wd/momentum/milestones given here). With
    reset_optimizer only the weights are kept: fresh optimizer and schedule, epoch count 0.

    History entries: {"epoch" (1-based), "lr", "train_top1", "train_loss", "val_top1",
    "val_top5", "val_loss" (None without val_loader), "seconds"}.
    """
    ms = _check_hparams(epochs, lr, wd, momentum, milestones)
    arch_dict = _as_arch(arch)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=ms, gamma=gamma)
    start_epoch, best_top1, history = 0, -1.0, []
    hparams = {"lr": lr, "wd": wd, "momentum": momentum, "milestones": ms, "gamma": gamma}
    if resume is not None:
        ckpt = load_checkpoint(resume)
        load_weights(model, ckpt["model"], str(resume))
        if arch_dict is None:
            arch_dict = ckpt["arch"]
        if classes is None:
            classes = ckpt.get("classes")
        if not reset_optimizer:
            try:
                optimizer.load_state_dict(ckpt["optimizer"])
                scheduler.load_state_dict(ckpt["scheduler"])
            except (KeyError, ValueError) as err:
                raise BadInputError(
                    f"{resume}: optimizer state does not fit the model ({err}); "
                    "use --reset-optimizer to keep only the weights") from err
            start_epoch = int(ckpt["epoch"])
            best_top1 = float(ckpt.get("best_top1", -1.0))
            history = list(ckpt.get("history", []))
            hparams = dict(ckpt.get("hparams", hparams))
    ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else None

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        cur_lr = optimizer.param_groups[0]["lr"]
        desc = f"epoch {epoch + 1}/{epochs}"
        tr = train_one_epoch(model, train_loader, optimizer, progress, desc)
        scheduler.step()
        va = evaluate(model, val_loader, progress, "val") if val_loader is not None else None
        entry = {
            "epoch": epoch + 1, "lr": cur_lr,
            "train_top1": tr["top1"], "train_loss": tr["loss"],
            "val_top1": va["top1"] if va else None, "val_top5": va["top5"] if va else None,
            "val_loss": va["loss"] if va else None,
            "seconds": time.perf_counter() - t0,
        }
        history.append(entry)
        score = entry["val_top1"] if va else entry["train_top1"]
        is_best = score > best_top1
        best_top1 = max(best_top1, score)
        if progress:
            tqdm.write(_epoch_line(entry))
        if ckpt_dir is not None:
            state = {
                "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "best_top1": best_top1, "history": history, "hparams": hparams,
                "arch": arch_dict, "classes": list(classes) if classes is not None else None,
            }
            save_checkpoint(ckpt_dir / LAST, state)
            if is_best:
                save_checkpoint(ckpt_dir / BEST, state)
    return history


def _epoch_line(e: dict) -> str:
    line = (f"epoch {e['epoch']}: lr {e['lr']:.4g}  train loss {e['train_loss']:.4f} "
            f"top-1 {e['train_top1']:.2f}%")
    if e["val_top1"] is not None:
        line += (f"  |  val loss {e['val_loss']:.4f} top-1 {e['val_top1']:.2f}% "
                 f"top-5 {e['val_top5']:.2f}%")
    return line + f"  ({e['seconds']:.1f} s)"
