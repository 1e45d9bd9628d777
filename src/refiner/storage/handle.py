"""The :class:`Handle`: a content identifier (CID) naming an immutable byte string.

A handle is the CID kubo assigns to the bytes with ``ipfs add`` defaults (see :mod:`.unixfs`), so
the same handle names the same bytes in every backend and anyone can check bytes against it in
pure Python. Its canonical forms are the CIDv0 string (``Qm...``, 46 characters) and the CIDv0
binary form, ``bytes(handle)``: the 34-byte sha2-256 multihash ``0x12 0x20 <digest>``, which is
what goes on chain as ``bytes``. The equivalent CIDv1 (``bafybei...``, dag-pb, sha2-256) is
accepted on input and normalised, so one object always has exactly one on-chain form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from multiformats import CID

from .errors import InvalidHandle
from .unixfs import unixfs_multihash

_PREFIX: Final = b"\x12\x20"  # sha2-256 multihash code and digest length
_DIGEST_SIZE: Final = 32


class Handle:
    """An immutable, hashable name for a byte string: a CIDv0 (dag-pb, sha2-256) of its UnixFS file."""

    __slots__ = ("_multihash",)
    _multihash: bytes

    def __init__(self, cid: CID) -> None:
        """Wrap a :class:`multiformats.CID`; it must be dag-pb with a sha2-256 multihash."""
        if not isinstance(cid, CID):
            raise TypeError(f"Handle() takes a multiformats.CID, not {type(cid).__name__}")
        codec, hashfun = cid.codec.name, cid.hashfun.name
        if codec != "dag-pb" or hashfun != "sha2-256" or len(cid.raw_digest) != _DIGEST_SIZE:
            raise InvalidHandle(
                f"unsupported CID {cid} (codec {codec}, hash {hashfun}): a Refiner handle is a dag-pb "
                "sha2-256 CID, the CID kubo's `ipfs add` gives a file with default settings"
            )
        object.__setattr__(self, "_multihash", bytes(cid.digest))

    @classmethod
    def parse(cls, text: str) -> Handle:
        """Parse the string form: a CIDv0 ``Qm...`` or the equivalent CIDv1 ``bafybei...``."""
        if not isinstance(text, str):
            raise TypeError(f"Handle.parse() takes a str, not {type(text).__name__}; use Handle.from_bytes()")
        if not text or text != text.strip():
            raise InvalidHandle(f"malformed handle {text!r}: expected a CID such as 'Qm...' (46 characters)")
        try:
            cid = CID.decode(text)
        except (ValueError, KeyError) as exc:  # multiformats raises both, with terse messages
            raise InvalidHandle(f"malformed handle {text!r}: not a CID ({exc})") from None
        return cls(cid)

    @classmethod
    def from_bytes(cls, data: bytes) -> Handle:
        """Parse the binary form: 34 bytes ``0x12 0x20 <sha2-256 digest>`` (a binary CIDv0).

        A binary CIDv1 (``0x01 0x70 0x12 0x20 <digest>``) is accepted too.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"Handle.from_bytes() takes bytes, not {type(data).__name__}; use Handle.parse()")
        data = bytes(data)
        if len(data) == len(_PREFIX) + _DIGEST_SIZE and data.startswith(_PREFIX):
            return cls._from_multihash(data)
        if data[:1] == b"\x01":
            try:
                cid = CID.decode(data)
            except (ValueError, KeyError) as exc:
                raise InvalidHandle(f"malformed binary handle 0x{data.hex()}: {exc}") from None
            return cls(cid)
        raise InvalidHandle(
            f"malformed binary handle 0x{data.hex()} ({len(data)} bytes): expected 34 bytes "
            "0x1220 followed by a sha2-256 digest (a binary CIDv0)"
        )

    @classmethod
    def from_digest(cls, digest: bytes) -> Handle:
        """Build a handle from its bare 32-byte sha2-256 digest (e.g. a ``bytes32`` stored on chain)."""
        if not isinstance(digest, bytes) or len(digest) != _DIGEST_SIZE:
            size = len(digest) if isinstance(digest, bytes) else type(digest).__name__
            raise InvalidHandle(f"a handle digest is 32 bytes, got {size}")
        return cls._from_multihash(_PREFIX + digest)

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> Handle:
        """Compute the handle of ``data`` (the CID kubo would assign to it), without storing anything."""
        return cls._from_multihash(unixfs_multihash(data))

    @classmethod
    def _from_multihash(cls, multihash: bytes) -> Handle:
        handle = cls.__new__(cls)
        object.__setattr__(handle, "_multihash", multihash)
        return handle

    @property
    def cid(self) -> CID:
        """The handle as a CIDv0 :class:`multiformats.CID`."""
        return CID("base58btc", 0, "dag-pb", self._multihash)

    @property
    def digest(self) -> bytes:
        """The bare 32-byte sha2-256 digest of the root block (fits a Solidity ``bytes32``)."""
        return self._multihash[len(_PREFIX) :]

    def matches(self, data: bytes | bytearray | memoryview) -> bool:
        """Whether ``data`` is exactly the byte string this handle names."""
        return unixfs_multihash(data) == self._multihash

    def __bytes__(self) -> bytes:
        return self._multihash

    def __str__(self) -> str:
        return str(self.cid)

    def __repr__(self) -> str:
        return f"Handle({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Handle) and other._multihash == self._multihash

    def __hash__(self) -> int:
        return hash(self._multihash)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Handle is immutable")

    def __reduce__(self) -> tuple[Callable[[bytes], Handle], tuple[bytes]]:
        # Default slot pickling would go through __setattr__; rebuild from the binary form instead.
        return (Handle.from_bytes, (self._multihash,))
