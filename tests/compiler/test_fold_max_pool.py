"""A VGG-like net's standalone 2x2/2 max-pools fold into the convs before them (FoldMaxPool):
the pools leave the host, the pooled convs run on VTA, and the run stays bit-exact."""

from __future__ import annotations

import torch
from torch import nn

from bctvm.models import BlockConv2d

from .conftest import compile_and_run


class _VggLike(nn.Module):
    """3-channel stem, conv -> 2x2 pool, conv -> 2x2 pool (the boundary), avg-pool + linear."""

    def __init__(self):
        super().__init__()
        self.c0 = BlockConv2d(3, 16, 3, 8, padding=1)
        self.c1 = BlockConv2d(16, 16, 3, 8, padding=1)
        self.p1 = nn.MaxPool2d(2, 2)
        self.c2 = BlockConv2d(16, 32, 3, 8, padding=1)
        self.p2 = nn.MaxPool2d(2, 2)
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        x = torch.relu(self.c0(x))
        x = self.p1(torch.relu(self.c1(x)))
        x = self.p2(torch.relu(self.c2(x)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_vgg_like_pools_fold_onto_vta_bit_exact(tmp_path):
    torch.manual_seed(0)
    manifest, rep, _ = compile_and_run(tmp_path, _VggLike().eval(), board="zcu102")
    v = rep["validation"]
    assert v["bit_exact"] and v["max_abs_err"] == 0 and v["ok"], v
    assert manifest["host_layers"] == ["c0"]  # only the 3-channel stem; no pool on the host
    on_vta = [n for g in manifest["groups"] for n in g["layers"]]
    assert on_vta == ["c1", "c2"]
    # the last pooled conv's output is the network's output: 32 channels at 8x8, int8
    assert rep["dram_bytes"]["output"] == 32 * 8 * 8
    assert rep["lower_bound_bytes"] <= rep["dram_bytes"]["total"]
