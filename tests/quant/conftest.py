"""Quant tests: run torch on one thread.

The nets here are small; on the shared 2-core machine one intra-op thread is 2-3x faster in
wall time than two (measured: test_zoo.py 74 s -> 29 s under load)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(_torch_threads):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
