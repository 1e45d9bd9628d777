"""Decoding the blocks of a UnixFS file, as ``IpfsStore.get`` does for every block it fetches: honest
blocks decode to what was encoded, and any other bytes give :class:`MalformedBlock`, nothing else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refiner.storage.unixfs import (
    CHUNK_SIZE,
    MAX_LINKS,
    FileNode,
    MalformedBlock,
    decode_file_node,
    encode_block,
    file_data,
    tree_depth,
)

LINK = b"\x12\x20" + bytes(range(32))
LEAF = encode_block([], file_data(b"leaf bytes", 10, []))
INNER = encode_block([(LINK, 300), (LINK, 200)], file_data(None, 500, [300, 200]))


def test_honest_blocks_decode() -> None:
    assert decode_file_node(LEAF) == FileNode((), (), b"leaf bytes", 10)
    assert decode_file_node(INNER) == FileNode((LINK, LINK), (300, 200), b"", 500)
    assert decode_file_node(encode_block([], file_data(None, 0, []))) == FileNode((), (), b"", 0)


@pytest.mark.parametrize(
    ("block", "why"),
    [
        (encode_block([], b"\x08\x01"), "UnixFS directory"),  # Type = Directory
        (encode_block([], b"\x08\x02"), "no single filesize"),
        (encode_block([(b"\x01\x55" + LINK, 1)], file_data(None, 1, [1])), "not one CIDv0"),
        (LEAF + b"\x18\x01", "unexpected field 3"),
        (b"\x12", "truncated"),
    ],
)
def test_other_blocks_are_malformed(block: bytes, why: str) -> None:
    with pytest.raises(MalformedBlock, match=why):
        decode_file_node(block)


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from([LEAF, INNER]),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
)
def test_mutated_blocks_decode_or_are_malformed(block: bytes, edits: list[tuple[int, int]]) -> None:
    mutated = bytearray(block)
    for at, value in edits:
        mutated[at % len(mutated)] = value
    with contextlib.suppress(MalformedBlock):
        decode_file_node(bytes(mutated))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_are_malformed(block: bytes) -> None:
    with contextlib.suppress(MalformedBlock):
        decode_file_node(block)


def test_tree_depth_is_kubos() -> None:
    chunks = [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, MAX_LINKS * CHUNK_SIZE, MAX_LINKS * CHUNK_SIZE + 1]
    assert [tree_depth(n) for n in chunks] == [0, 0, 0, 1, 1, 2]
    assert tree_depth(MAX_LINKS**2 * CHUNK_SIZE + 1) == 3
