"""Secure data sharing (paper 2.3.1): encrypt once, wrap the key for each recipient, store both.

A payload is encrypted with a fresh AES-256-GCM key; the associated data binds it to the task, round,
sender and kind, so a ciphertext cannot be replayed as another round's or another sender's. The key is
wrapped for each recipient with ECIES on secp256k1 to the public key the recipient registered on chain
(the key pair of its Ethereum account). The key envelope (recipient → wrapped key) is stored too, so an
on-chain call carries only two handles: the ciphertext's and the envelope's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import ecies
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from refiner import safejson

ENVELOPE_VERSION = 1
NONCE_BYTES = 12
#: Largest key envelope accepted from storage (1,000 recipients fit easily).
MAX_ENVELOPE_BYTES = 1 << 20


class SharingError(ValueError):
    """A shared payload could not be opened: wrong recipient, wrong context, or tampered bytes."""


class NotARecipient(SharingError):
    pass


class BlobStore(Protocol):
    """What sharing needs from a content-addressed store (see refiner.storage)."""

    def put(self, data: bytes) -> Any: ...

    def get(self, handle: Any, *, max_size: int | None = None) -> bytes: ...


@dataclass(frozen=True)
class Context:
    """What a payload is bound to. `kind` is e.g. "model", "validation", "update", "aggregate"."""

    task: str
    round: int
    sender: str
    kind: str

    def associated_data(self) -> bytes:
        return json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "task": to_checksum_address(self.task),
                "round": self.round,
                "sender": to_checksum_address(self.sender),
                "kind": self.kind,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()


def encrypt(plaintext: bytes, context: Context) -> tuple[bytes, bytes]:
    """Encrypt with a fresh key; returns (key, nonce ‖ ciphertext)."""
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    return key, nonce + AESGCM(key).encrypt(nonce, plaintext, context.associated_data())


def decrypt(key: bytes, sealed: bytes, context: Context) -> bytes:
    if len(sealed) < NONCE_BYTES + 16:
        raise SharingError("ciphertext is truncated")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context.associated_data())
    except InvalidTag:
        raise SharingError(
            f"ciphertext does not authenticate for {context.kind} of round {context.round} from "
            f"{context.sender}: tampered, or another task/round/sender/kind"
        ) from None


def wrap_key(key: bytes, public_key: bytes) -> bytes:
    """ECIES-encrypt `key` to a 64-byte (x ‖ y) secp256k1 public key, as registered on chain."""
    if len(public_key) != 64:
        raise SharingError(f"public key must be 64 bytes (x ‖ y), got {len(public_key)}")
    return bytes(ecies.encrypt(b"\x04" + public_key, key))


def unwrap_key(wrapped: bytes, account: LocalAccount) -> bytes:
    try:
        return bytes(ecies.decrypt(bytes(account.key), wrapped))
    except (ValueError, InvalidTag) as exc:
        raise SharingError(f"cannot unwrap the key with {account.address}'s private key: {exc}") from None


def make_envelope(key: bytes, context: Context, recipients: Mapping[str, bytes]) -> bytes:
    """The stored key envelope: canonical JSON mapping each recipient address to its wrapped key."""
    wrapped = {to_checksum_address(a): wrap_key(key, pk).hex() for a, pk in recipients.items()}
    body = {
        "v": ENVELOPE_VERSION,
        "context": json.loads(context.associated_data()),
        "keys": dict(sorted(wrapped.items())),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def open_envelope(envelope: bytes, context: Context, account: LocalAccount) -> bytes:
    """The payload key from an envelope, for `account`."""
    try:
        body = safejson.loads(envelope, "key envelope")
    except safejson.TooDeep as exc:
        raise SharingError(str(exc)) from None
    except ValueError:
        raise SharingError("key envelope is not a Refiner envelope") from None
    try:
        keys = body["keys"]
        bound = body["context"]
    except (ValueError, KeyError, TypeError):
        raise SharingError("key envelope is not a Refiner envelope") from None
    if not isinstance(keys, dict):
        raise SharingError("key envelope is malformed: its keys are not a mapping")
    if bound != json.loads(context.associated_data()):
        raise SharingError(f"key envelope is for {bound}, not {context}")
    wrapped = keys.get(to_checksum_address(account.address))
    if wrapped is None:
        raise NotARecipient(f"{account.address} is not a recipient of this {context.kind}")
    if not isinstance(wrapped, str):
        raise SharingError("key envelope is malformed: a wrapped key is not hex text")
    try:
        raw = bytes.fromhex(wrapped)
    except ValueError:
        raise SharingError("key envelope is malformed: a wrapped key is not hex text") from None
    return unwrap_key(raw, account)


def share(
    store: BlobStore, plaintext: bytes, context: Context, recipients: Mapping[str, bytes]
) -> tuple[Any, Any]:
    """Encrypt, store the ciphertext and the key envelope; returns (payload handle, envelope handle)."""
    key, sealed = encrypt(plaintext, context)
    return store.put(sealed), store.put(make_envelope(key, context, recipients))


def retrieve(
    store: BlobStore,
    payload_handle: Any,
    envelope_handle: Any,
    context: Context,
    account: LocalAccount,
    *,
    max_bytes: int,
) -> bytes:
    """Fetch and open a shared payload of at most `max_bytes` plaintext bytes as `account` (a bigger one
    is refused by the store before it is read); every failure is a clear :class:`SharingError` (or the
    store's own error for a missing, oversized or tampered object)."""
    key = open_envelope(store.get(envelope_handle, max_size=MAX_ENVELOPE_BYTES), context, account)
    return decrypt(key, store.get(payload_handle, max_size=max_bytes + NONCE_BYTES + 16), context)
