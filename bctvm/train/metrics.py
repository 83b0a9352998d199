"""Accuracy and running averages for the training loop."""

from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    """Number of rows whose target is among the k highest logits, for each k in ks
    (k is capped at the number of classes). logits: N x classes, target: N."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # N x kmax
    hits = top.eq(target.view(-1, 1))
    return [int(hits[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


class RunningMeter:
    """Sums of loss and top-k hits over the batches of one pass; percentages on request."""

    def __init__(self) -> None:
        self.count = 0
        self.loss_sum = 0.0
        self.top1 = 0
        self.top5 = 0

    def update(self, loss: float, logits: torch.Tensor, target: torch.Tensor) -> None:
        n = int(target.shape[0])
        c1, c5 = topk_correct(logits, target, (1, 5))
        self.count += n
        self.loss_sum += float(loss) * n
        self.top1 += c1
        self.top5 += c5

    def result(self) -> dict[str, float]:
        """{"top1": %, "top5": %, "loss": mean cross-entropy per sample}."""
        n = max(self.count, 1)
        return {"top1": 100.0 * self.top1 / n, "top5": 100.0 * self.top5 / n,
                "loss": self.loss_sum / n}
