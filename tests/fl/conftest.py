from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """FL unit tests run on one torch thread: on a busy 2-core machine, two OpenMP threads competing
    with other processes are up to 10x slower. (The determinism test runs 1 and 2 threads itself.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
