"""Secure data sharing: envelope encryption to registered keys, over a real directory store."""

from __future__ import annotations

import pytest

from refiner.chain import demo_account, public_key_bytes
from refiner.sharing import (
    Context,
    NotARecipient,
    SharingError,
    make_envelope,
    open_envelope,
    retrieve,
    share,
    unwrap_key,
    wrap_key,
)
from refiner.storage import DirectoryStore, ObjectTooLarge

TASK = "0x" + "ab" * 20
requester, alice, bob, eve = (demo_account(n) for n in ("requester", "alice", "bob", "eve"))
CTX = Context(TASK, 1, requester.address, "model")
LIMIT = 1 << 20


def recipients() -> dict[str, bytes]:
    return {a.address: public_key_bytes(a) for a in (alice, bob)}


def test_every_recipient_opens_the_payload(store: DirectoryStore) -> None:
    payload = bytes(range(256)) * 1000
    handle, keys = share(store, payload, CTX, recipients())
    assert retrieve(store, handle, keys, CTX, alice, max_bytes=LIMIT) == payload
    assert retrieve(store, handle, keys, CTX, bob, max_bytes=LIMIT) == payload
    assert payload not in store.get(handle)  # only ciphertext is stored


def test_a_payload_over_max_bytes_is_refused_before_it_is_read(store: DirectoryStore) -> None:
    handle, keys = share(store, bytes(1001), CTX, recipients())
    assert retrieve(store, handle, keys, CTX, alice, max_bytes=1001) == bytes(1001)
    with pytest.raises(ObjectTooLarge, match="1029 bytes, over the limit of 1028 bytes"):
        retrieve(store, handle, keys, CTX, alice, max_bytes=1000)


def test_a_non_recipient_cannot_open_it(store: DirectoryStore) -> None:
    handle, keys = share(store, b"weights", CTX, recipients())
    with pytest.raises(NotARecipient, match=eve.address):
        retrieve(store, handle, keys, CTX, eve, max_bytes=LIMIT)


def test_each_share_uses_a_fresh_key(store: DirectoryStore) -> None:
    a = share(store, b"same bytes", CTX, recipients())
    b = share(store, b"same bytes", CTX, recipients())
    assert a[0] != b[0] and a[1] != b[1]


@pytest.mark.parametrize(
    "other",
    [
        Context(TASK, 2, requester.address, "model"),
        Context(TASK, 1, alice.address, "model"),
        Context(TASK, 1, requester.address, "validation"),
        Context("0x" + "cd" * 20, 1, requester.address, "model"),
    ],
)
def test_the_payload_is_bound_to_task_round_sender_and_kind(store: DirectoryStore, other: Context) -> None:
    handle, keys = share(store, b"weights", CTX, recipients())
    with pytest.raises(SharingError, match="envelope is for"):
        retrieve(store, handle, keys, other, alice, max_bytes=LIMIT)
    # even with the right key, the ciphertext does not authenticate under another context
    key = open_envelope(store.get(keys), CTX, alice)
    from refiner.sharing import decrypt

    with pytest.raises(SharingError, match="does not authenticate"):
        decrypt(key, store.get(handle), other)


def test_tampered_ciphertext_is_refused(store: DirectoryStore) -> None:
    handle, keys = share(store, b"weights" * 100, CTX, recipients())
    sealed = bytearray(store.get(handle))
    sealed[-1] ^= 0x01
    tampered = store.put(bytes(sealed))
    with pytest.raises(SharingError, match="does not authenticate"):
        retrieve(store, tampered, keys, CTX, alice, max_bytes=LIMIT)
    with pytest.raises(SharingError, match="truncated"):
        retrieve(store, store.put(bytes(sealed[:10])), keys, CTX, alice, max_bytes=LIMIT)


def test_a_wrong_key_cannot_unwrap() -> None:
    wrapped = wrap_key(b"k" * 32, public_key_bytes(alice))
    assert unwrap_key(wrapped, alice) == b"k" * 32
    with pytest.raises(SharingError, match="cannot unwrap"):
        unwrap_key(wrapped, eve)


def test_bad_public_keys_and_envelopes_are_refused(store: DirectoryStore) -> None:
    with pytest.raises(SharingError, match="64 bytes"):
        wrap_key(b"k" * 32, b"\x04" + public_key_bytes(alice))
    with pytest.raises(SharingError, match="not a Refiner envelope"):
        open_envelope(b"{not json", CTX, alice)
    envelope = make_envelope(b"k" * 32, CTX, recipients())
    assert open_envelope(envelope, CTX, bob) == b"k" * 32
