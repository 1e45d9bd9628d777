"""Read queries every participant and every reader (audit, web) asks of a task: its description, its
model, a round's published inputs and its consensus details. They read the chain and the store only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refiner.chain import Manifest, Task
from refiner.chain.earnings import carried
from refiner.fl.models import ModelFn, ModelSpec, resolve_model, spec_of
from refiner.storage import Handle, StorageError, Store
from refiner.wire.details import ManifestDetails, ProtocolError, revealed_details
from refiner.wire.spec import TaskDescription


def description_of(task: Task) -> TaskDescription:
    return TaskDescription.from_json(task.config().description)


def model_of(
    description: TaskDescription, local: Mapping[str, ModelFn] | None = None
) -> tuple[Any, ModelSpec]:
    """The task's model factory (a built-in, or one of `local`, the participant's own models) and the
    spec every received weight file is validated against."""
    factory = resolve_model(description.model, local)
    return factory, spec_of(factory(), max_bytes=description.max_model_bytes)


def round_inputs(task: Task, round_: int) -> dict[str, Handle]:
    """The handles the requester published when it started `round_`."""
    events = task.round_events("RoundStarted", round_)
    if not events:
        raise ProtocolError(f"round {round_} of task {task.address} has not started")
    e = events[-1]
    return {
        name: Handle.from_bytes(e[name])
        for name in ("modelHandle", "modelKeysHandle", "validationHandle", "validationKeysHandle")
    }


def consensus_details(store: Store, task: Task, round_: int) -> tuple[Manifest, ManifestDetails]:
    """The consensus manifest of a round and its stored details, from the first agreeing validator whose
    details open with its revealed salt, are well formed and rebuild its manifest (the vote key does not
    cover the details: an agreeing member's may be missing or malformed, and are then skipped)."""
    info = task.round_info(round_)
    key = info.consensus_key
    for validator, (manifest, salt) in task.reveals(round_, settled=info.finalized).items():
        if manifest.vote_key() != key:
            continue
        try:
            return manifest, revealed_details(store, task.address, round_, validator, manifest, salt)
        except (StorageError, ProtocolError):
            continue
    raise ProtocolError(f"no consensus manifest with readable details for round {round_}")


def earned_before(
    store: Store, task: Task, round_: int, memo: dict[tuple[str, int], dict[str, int]] | None = None
) -> dict[str, int]:
    """What each worker (lower-case address) earned in the task's consensus rounds before `round_`, in
    wei: the `earned` of its leaf in the last of them it has one in, from the consensus details.
    `memo` keeps the answer per consensus round (settled rounds never change), so a validator reads each
    round's details once per task. ProtocolError when a round's consensus details cannot be read."""
    memo = {} if memo is None else memo
    last = next((k for k in range(round_ - 1, 0, -1) if task.round_info(k).consensus), 0)
    if last == 0:
        return {}
    if (task.address, last) not in memo:
        _, details = consensus_details(store, task, last)
        memo[(task.address, last)] = carried(earned_before(store, task, last, memo), details.tree().results)
    return dict(memo[(task.address, last)])
