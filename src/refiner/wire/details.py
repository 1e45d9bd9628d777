"""A validator's manifest details: what it stores, sealed until its reveal, and how readers check them.

The details (per-worker verdicts, validation loss and accuracy, the aggregate's key envelope) are all a
vote key is made of, so a committee member that could read another's before committing could copy its
vote without evaluating. They are stored encrypted (AES-256-GCM) under a key derived from the author's
commitment salt: secret until the reveal, published in the `ManifestRevealed` event afterwards. The
plaintext is padded to a multiple of `PAD` bytes, so that the file's size tells little either.

Everything read back is untrusted (the vote key does not cover the details handle: an agreeing member
can reveal malformed details): :meth:`ManifestDetails.from_bytes` checks every field's type and range,
and :func:`revealed_details` that the details belong to the reveal and rebuild its manifest exactly.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_utils import keccak

from refiner import safejson
from refiner.chain import Manifest, ResultsTree, WorkerResult
from refiner.reasons import SCREEN_FLAGS
from refiner.storage import Handle, StorageError, Store
from refiner.units import ONE

MAX_DETAILS = 64 << 20
#: Most results one details file may list (far above any task's workers; bounds a reader's work).
MAX_RESULTS = 1 << 17
PAD = 1024
NONCE_BYTES = 12
ASSOCIATED_DATA = b"refiner-details v1"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_RESULT_KEYS = {"worker", "accepted", "samples", "contribution", "earned", "loss"}
#: written only by a measure that screens updates (trusted-data): its score in ppm and its verdict
_SCREEN_KEYS = {"trust", "screen"}


class ProtocolError(RuntimeError):
    """A participant cannot take a protocol step (missing data, wrong phase seen off chain, ...)."""


def details_key(salt: bytes) -> bytes:
    return keccak(b"refiner-details" + salt)


def seal_details(data: bytes, salt: bytes) -> bytes:
    """`data` padded with spaces (valid JSON whitespace) and encrypted under the salt's key."""
    padded = data + b" " * (-len(data) % PAD)
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(details_key(salt)).encrypt(nonce, padded, ASSOCIATED_DATA)


def open_details(sealed: bytes, salt: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + 16:
        raise ProtocolError("stored manifest details are truncated")
    try:
        return AESGCM(details_key(salt)).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ASSOCIATED_DATA)
    except InvalidTag:
        raise ProtocolError("stored manifest details do not open with the revealed salt") from None


def _int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _handle(value: Any) -> bool:
    try:
        Handle.parse(value)
    except (StorageError, TypeError):
        return False
    return True


def _result_problem(r: Any) -> str | None:
    if not isinstance(r, dict) or set(r) not in (_RESULT_KEYS, _RESULT_KEYS | _SCREEN_KEYS):
        return f"is not a record of {', '.join(sorted(_RESULT_KEYS))} (and optionally trust, screen)"
    if not isinstance(r["worker"], str) or not _ADDRESS.fullmatch(r["worker"]):
        return "names no worker address"
    if type(r["accepted"]) is not bool:
        return "has a non-boolean verdict"
    if not _int(r["samples"], 0, (1 << 64) - 1):
        return "has samples that are not a uint64"
    if not _int(r["contribution"], -(1 << 255), (1 << 255) - 1):
        return "has a contribution that is not an int256"
    if not _int(r["earned"], 0, (1 << 256) - 1):
        return "has earnings that are not a uint256"
    if r["loss"] is not None and not _int(r["loss"], -(1 << 63), (1 << 63) - 1):
        return "has a loss that is not an int64"
    if "trust" in r and r["trust"] is not None and not _int(r["trust"], -ONE, ONE):
        return "has a trust that is not in -1,000,000..1,000,000 ppm"
    if "screen" in r and r["screen"] is not None and r["screen"] not in SCREEN_FLAGS:
        return f"has a screen verdict that is not one of {', '.join(SCREEN_FLAGS)}"
    return None


@dataclass(frozen=True)
class ManifestDetails:
    """The full manifest a validator stores (the chain holds its Merkle root): per-worker verdicts, the
    validation loss and accuracy, and the key envelope of its encrypted aggregate for the requester."""

    task: str
    round: int
    validator: str
    results: list[dict[str, Any]]  # worker, accepted, samples, contribution, earned (wei), loss (ppm)
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
                    WorkerResult(r["worker"], r["accepted"], r["samples"], r["contribution"], r["earned"])
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

    def problem(self) -> str | None:
        """What is malformed in these details (types and ranges), or None."""
        for name in ("task", "validator"):
            if not isinstance(getattr(self, name), str) or not _ADDRESS.fullmatch(getattr(self, name)):
                return f"{name} is not an address"
        if not _int(self.round, 1, (1 << 32) - 1):
            return "round is not a uint32 above 0"
        if not _int(self.accuracy, 0, ONE) or not _int(self.loss, -(1 << 63), (1 << 63) - 1):
            return "accuracy is not in 0..1,000,000 ppm, or loss not an int64"
        if not isinstance(self.model_digest, str) or not _DIGEST.fullmatch(self.model_digest):
            return "model_digest is not 64 lowercase hex digits"
        if not _handle(self.aggregate_handle) or not _handle(self.aggregate_keys_handle):
            return "an aggregate handle does not parse"
        if not isinstance(self.results, list) or len(self.results) > MAX_RESULTS:
            return f"results are not a list of at most {MAX_RESULTS}"
        for i, r in enumerate(self.results):
            why = _result_problem(r)
            if why:
                return f"result {i} {why}"
        if len({r["worker"].lower() for r in self.results}) != len(self.results):
            return "a worker has two results"
        return None

    def to_bytes(self) -> bytes:
        stored = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return json.dumps(stored, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ManifestDetails:
        """Parsed and schema-checked details (ProtocolError saying what is wrong)."""
        try:
            parsed = safejson.loads(data, "manifest details")
            details = cls(**parsed) if isinstance(parsed, dict) else None
        except (ValueError, TypeError) as exc:
            raise ProtocolError(f"stored manifest details are malformed: {exc}") from None
        why = "not a JSON object" if details is None else details.problem()
        if why or details is None:
            raise ProtocolError(f"stored manifest details are malformed: {why}")
        return details


def store_details(store: Store, details: bytes, salt: bytes) -> Handle:
    """Seal `details` (the bytes of a ManifestDetails) under the commitment salt and store them."""
    return store.put(seal_details(details, salt))


def load_details(store: Store, source: Manifest | Handle, salt: bytes) -> ManifestDetails:
    """The stored details of a manifest (or under a details handle), opened with its author's salt."""
    handle = source if isinstance(source, Handle) else Handle.from_bytes(source.details_handle)
    return ManifestDetails.from_bytes(open_details(store.get(handle, max_size=MAX_DETAILS), salt))


def revealed_details(
    store: Store, task: str, round_: int, validator: str, manifest: Manifest, salt: bytes
) -> ManifestDetails:
    """The details of `validator`'s reveal in `round_` of `task`: loaded, schema-checked, and checked to
    be its own for this round and to rebuild the revealed manifest exactly (tree root, totals,
    accuracy, digest, aggregate handle). StorageError if unreachable, ProtocolError otherwise."""
    details = load_details(store, manifest, salt)
    if (details.task.lower(), details.round, details.validator.lower()) != (
        task.lower(),
        round_,
        validator.lower(),
    ):
        raise ProtocolError(
            f"stored manifest details are for task {details.task} round {details.round} by "
            f"{details.validator}, not {validator}'s of round {round_}"
        )
    try:
        rebuilt = details.manifest(Handle.from_bytes(manifest.details_handle))
    except (ValueError, StorageError) as exc:
        raise ProtocolError(f"stored manifest details are malformed: {exc}") from None
    if rebuilt != manifest:
        raise ProtocolError(f"stored manifest details do not rebuild {validator}'s revealed manifest")
    return details
