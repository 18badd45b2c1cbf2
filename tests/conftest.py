"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """For modules that run many checks on tiny tensors: with two intra-op threads on a busy
    machine, OpenMP's waiting costs up to a hundred times the work (measured: 20 s instead of 0.15 s
    per corpus variant and seed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
