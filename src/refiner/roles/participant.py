"""What every role has: an account, a chain, a store, the registry; and the records they share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from refiner import safejson
from refiner.chain import Manifest, Registry, ResultsTree, Task, WorkerResult
from refiner.chain.connection import Chain
from refiner.fl.models import ModelFn, ModelSpec, resolve_model, spec_of
from refiner.roles.spec import TaskDescription
from refiner.storage import Handle, StorageError, Store

MAX_DETAILS = 64 << 20


class ProtocolError(RuntimeError):
    """A participant cannot take a protocol step (missing data, wrong phase seen off chain, ...)."""


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


@dataclass(frozen=True)
class ManifestDetails:
    """The full manifest a validator stores (the chain holds its Merkle root): per-worker verdicts, the
    validation loss and accuracy, and the key envelope of its encrypted aggregate for the requester."""

    task: str
    round: int
    validator: str
    results: list[dict[str, Any]]  # worker, accepted, samples, contribution, loss (ppm integers)
    accuracy: int
    loss: int
    model_digest: str
    aggregate_handle: str
    aggregate_keys_handle: str
    _tree: ResultsTree | None = field(default=None, init=False, repr=False, compare=False)

    def tree(self) -> ResultsTree:
        """The results tree (built once: a worker's claim checks its root, then proves its own leaf)."""
        built = self._tree
        if built is None:
            built = ResultsTree(
                [
                    WorkerResult(r["worker"], r["accepted"], r["samples"], r["contribution"])
                    for r in self.results
                ]
            )
            object.__setattr__(self, "_tree", built)
        return built

    def manifest(self, details_handle: Handle) -> Manifest:
        """The manifest these details (stored under `details_handle`) stand for."""
        return self.tree().manifest(
            self.accuracy,
            bytes.fromhex(self.model_digest),
            bytes(Handle.parse(self.aggregate_handle)),
            bytes(details_handle),
        )

    def to_bytes(self) -> bytes:
        stored = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return json.dumps(stored, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ManifestDetails:
        try:
            return cls(**safejson.loads(data, "manifest details"))
        except (ValueError, TypeError) as exc:
            raise ProtocolError(f"stored manifest details are malformed: {exc}") from None


def load_details(store: Store, source: Manifest | Handle) -> ManifestDetails:
    """The stored details of a manifest (or under a details handle)."""
    handle = source if isinstance(source, Handle) else Handle.from_bytes(source.details_handle)
    return ManifestDetails.from_bytes(store.get(handle, max_size=MAX_DETAILS))


def consensus_details(participant: Participant, task: Task, round_: int) -> tuple[Manifest, ManifestDetails]:
    """The consensus manifest of a round and its stored details, from the first agreeing validator whose
    stored results rebuild the on-chain Merkle root."""
    info = task.round_info(round_)
    key = info.consensus_key
    for manifest in task.revealed_manifests(round_, settled=info.finalized).values():
        if manifest.vote_key() != key:
            continue
        try:
            details = load_details(participant.store, manifest)
        except (StorageError, ProtocolError):
            continue
        if details.tree().root == manifest.results_root:
            return manifest, details
    raise ProtocolError(f"no consensus manifest with readable details for round {round_}")
