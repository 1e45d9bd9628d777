"""The storage mirror on the embedded chain: one bad announced file (malformed handle, too large,
unavailable) is logged in one line and skipped, and the honest files announced after it are kept."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from refiner.agents.mirror import MAX_FILE, MirrorAgent
from refiner.chain import Status, demo_account
from refiner.fl.data import load_mnist, split_mnist
from refiner.storage import DirectoryStore, Handle
from tests.helpers import logistic_simulation


def test_bad_announced_files_are_skipped_and_later_honest_files_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train, _ = load_mnist()
    validation, shards = split_mnist(train, [30, 30, 30, 30], validation_size=30, seed=4)
    store = DirectoryStore(tmp_path / "store")
    sim = logistic_simulation(store, shards, "mirror-bad")
    task = sim.task
    sim.requester.start_round(task, sim.global_state, validation)
    keys = bytes(store.put(b"a key envelope"))
    oversized = store.put(b"a model that will grow")
    os.truncate(store.path_of(oversized), MAX_FILE + 1)  # sparse: over the mirror's limit, not on disk
    missing = Handle.of(b"never stored anywhere")
    bad = {"malformed": b"\x00", "oversized": bytes(oversized), "missing": bytes(missing)}
    for w, model in zip(sim.workers, bad.values(), strict=False):
        task.submit_training_results(w.account, model, keys, 30)
    honest = sim.workers[3]
    honest.submit_training_results(task, honest.train(task))
    assert task.status() is Status.EVALUATING
    submitted = task.round_events("TrainingResultsSubmitted", 1)[-1]
    honest_files = {Handle.from_bytes(submitted["modelHandle"]), Handle.from_bytes(submitted["keysHandle"])}
    started = task.round_events("RoundStarted", 1)[0]
    inputs = {Handle.from_bytes(started[name]) for name in ("modelHandle", "validationHandle")}

    caplog.set_level(logging.INFO, logger="refiner.mirror")
    mirror = MirrorAgent(
        demo_account("mirror-bad"), sim.registry, store=store, log=logging.getLogger("refiner.mirror")
    )
    assert mirror.tick() is False  # the round is not settled yet
    assert honest_files | inputs <= mirror.kept
    assert oversized not in mirror.kept and missing not in mirror.kept
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("skipping announced file 0x00: malformed binary handle")
    assert warnings[1].startswith(f"skipping announced file 0x{bytes(oversized).hex()}: object {oversized}")
    assert "over the limit of 536870912 bytes" in warnings[1]
    assert all("\n" not in w for w in warnings)
    assert any(f"{missing} not reachable yet" in r.getMessage() for r in caplog.records)

    caplog.clear()
    mirror.tick()  # refused files are not fetched or reported again; the missing one is tried again
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    store.put(b"never stored anywhere")  # it turns up after all
    mirror.tick()
    assert missing in mirror.kept
