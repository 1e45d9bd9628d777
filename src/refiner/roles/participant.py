"""What every role has: an account, a chain, a store, the registry; and the records they share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from refiner.chain import Manifest, Registry, Task
from refiner.chain.connection import Chain
from refiner.fl.models import ModelFn, ModelSpec, resolve_model, spec_of
from refiner.roles.details import (
    MAX_DETAILS,
    ManifestDetails,
    ProtocolError,
    load_details,
    revealed_details,
    store_details,
)
from refiner.roles.spec import TaskDescription
from refiner.storage import Handle, StorageError, Store

__all__ = [
    "MAX_DETAILS",
    "ManifestDetails",
    "Participant",
    "ProtocolError",
    "consensus_details",
    "description_of",
    "load_details",
    "model_of",
    "revealed_details",
    "round_inputs",
    "salt_for",
    "store_details",
]


@dataclass
class Participant:
    account: LocalAccount
    chain: Chain
    store: Store
    registry: Registry
    #: This participant's own custom models, name -> factory (its configuration, never a task's words).
    models: Mapping[str, ModelFn] = field(default_factory=dict, kw_only=True)

    @property
    def address(self) -> str:
        return str(self.account.address)

    def task(self, address: str) -> Task:
        return Task(self.chain, address)


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


def salt_for(account: LocalAccount, task: str, round_: int) -> bytes:
    """A commitment salt only `account` can compute and can recompute after a restart."""
    return keccak(b"refiner-salt" + bytes(account.key) + bytes.fromhex(task[2:]) + round_.to_bytes(4, "big"))


def memo_pad(account: LocalAccount, task: str, round_: int) -> bytes:
    """The one-time pad a validator XORs its details handle with in its commitment's memo: only it can
    read the memo back, and only for this task and round."""
    return keccak(b"refiner-memo" + bytes(account.key) + bytes.fromhex(task[2:]) + round_.to_bytes(4, "big"))


def seal_memo(account: LocalAccount, task: str, round_: int, details: Handle) -> bytes:
    digest = bytes(details)[2:]  # the sha2-256 digest of the 34-byte multihash 0x12 0x20 <digest>
    return bytes(a ^ b for a, b in zip(digest, memo_pad(account, task, round_), strict=True))


def open_memo(account: LocalAccount, task: str, round_: int, memo: bytes) -> Handle:
    digest = bytes(a ^ b for a, b in zip(memo, memo_pad(account, task, round_), strict=True))
    return Handle.from_bytes(b"\x12\x20" + digest)


def consensus_details(participant: Participant, task: Task, round_: int) -> tuple[Manifest, ManifestDetails]:
    """The consensus manifest of a round and its stored details, from the first agreeing validator whose
    details open with its revealed salt, are well formed and rebuild its manifest (the vote key does not
    cover the details: an agreeing member's may be missing or malformed, and are then skipped)."""
    info = task.round_info(round_)
    key = info.consensus_key
    for validator, (manifest, salt) in task.reveals(round_, settled=info.finalized).items():
        if manifest.vote_key() != key:
            continue
        try:
            return manifest, revealed_details(
                participant.store, task.address, round_, validator, manifest, salt
            )
        except (StorageError, ProtocolError):
            continue
    raise ProtocolError(f"no consensus manifest with readable details for round {round_}")
