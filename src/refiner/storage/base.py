"""The :class:`Store` interface every backend implements (one backend per module, like httpx transports)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from .errors import IntegrityError, ObjectTooLarge
from .handle import Handle

BytesLike = bytes | bytearray | memoryview


class Store(ABC):
    """A content-addressed store of immutable byte strings, named by :class:`Handle`.

    ``get`` never trusts the backend: it re-hashes the bytes and raises :class:`IntegrityError`
    unless they are exactly the bytes the handle names. Stores are context managers; ``close``
    releases what the backend holds (a no-op for a directory) and is idempotent.
    """

    @property
    @abstractmethod
    def url(self) -> str:
        """A URL that :func:`refiner.storage.open_store` accepts to open this store again."""

    @abstractmethod
    def put(self, data: BytesLike) -> Handle:
        """Store ``data`` and return its handle (idempotent: the same bytes give the same handle)."""

    @abstractmethod
    def get(self, handle: Handle, *, max_size: int | None = None) -> bytes:
        """Return the bytes named by ``handle``, verified against it.

        Raises :class:`NotFound` if the store does not have them, :class:`ObjectTooLarge` if they
        exceed ``max_size`` bytes (checked before they are read into memory where the backend
        allows), and :class:`IntegrityError` if what the backend returned is not what ``handle`` names.
        """

    @abstractmethod
    def has(self, handle: Handle) -> bool:
        """Whether the store holds ``handle`` locally (cheap; does not verify or fetch)."""

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release the backend's resources. Safe to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check_handle(handle: object) -> Handle:
    """Reject a non-:class:`Handle` argument early, with a hint (a ``str`` is a common slip)."""
    if not isinstance(handle, Handle):
        hint = " (use Handle.parse() or Handle.from_bytes())" if isinstance(handle, str | bytes) else ""
        raise TypeError(f"expected a Handle, got {type(handle).__name__}{hint}")
    return handle


def check_data(data: object) -> bytes:
    """Accept any bytes-like object for ``put`` and return it as ``bytes``."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"put() takes bytes, not {type(data).__name__}")


def check_max_size(max_size: int | None) -> None:
    if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
        raise ValueError(f"max_size must be a non-negative int or None, got {max_size!r}")


def enforce_max_size(handle: Handle, size: int, max_size: int | None, where: str) -> None:
    if max_size is not None and size > max_size:
        raise ObjectTooLarge(
            f"object {handle} in {where} is {size} bytes, over the limit of {max_size} bytes"
        )


def verified(handle: Handle, data: bytes, where: str) -> bytes:
    """Return ``data`` if it is what ``handle`` names, else raise :class:`IntegrityError`."""
    if not handle.matches(data):
        raise IntegrityError(
            f"integrity check failed for {handle} in {where}: the {len(data)} bytes returned "
            f"hash to {Handle.of(data)}, so they were tampered with or corrupted"
        )
    return data
