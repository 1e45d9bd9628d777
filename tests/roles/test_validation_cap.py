"""The validation set is fetched with a size cap: an oversized one is refused before it is read (real
embedded EVM, directory store, real encryption)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from refiner.fl.data import load_mnist, split_mnist
from refiner.sharing import NONCE_BYTES
from refiner.storage import DirectoryStore, Handle, ObjectTooLarge
from refiner.wire.datasets import MAX_DATASET_BYTES
from tests.helpers import logistic_simulation


def read_bytes() -> int:
    """Bytes this process has passed to read(2) so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_oversized_validation_set_is_refused_before_it_is_read(tmp_path: Path) -> None:
    train, _ = load_mnist()
    validation, shards = split_mnist(train, [30], validation_size=30, seed=5)
    store = DirectoryStore(tmp_path / "store")
    sim = logistic_simulation(store, shards, "validation-cap")
    task = sim.task
    sim.requester.start_round(task, sim.global_state, validation)
    started = task.round_events("RoundStarted", 1)[0]
    sealed = store.path_of(Handle.from_bytes(started["validationHandle"]))
    size = MAX_DATASET_BYTES + 1000
    os.truncate(sealed, size)  # sparse: the requester (or the store) serves a set over the limit
    before = read_bytes()
    with pytest.raises(ObjectTooLarge) as info:
        sim.committee[0].evaluate(task)
    assert str(info.value).endswith(
        f"is {size} bytes, over the limit of {MAX_DATASET_BYTES + NONCE_BYTES + 16} bytes"
    )
    assert read_bytes() - before < 16 << 20, "the validation set was read before its size was checked"
