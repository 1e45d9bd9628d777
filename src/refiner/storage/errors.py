"""Exceptions raised by the storage package. Catch :class:`StorageError` to handle them all."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by :mod:`refiner.storage`."""


class InvalidHandle(StorageError, ValueError):
    """A string or byte string is not a well-formed Refiner handle."""


class NotFound(StorageError, LookupError):
    """The store does not hold (and could not fetch) the object named by a handle."""


class IntegrityError(StorageError):
    """The bytes a backend returned do not hash to the requested handle (tampering or corruption)."""


class ObjectTooLarge(StorageError):
    """The object is bigger than the ``max_size`` the caller accepts."""


def transient(exc: StorageError) -> bool:
    """Whether a failed read may succeed later: not found (yet), a local fault, a corrupt local copy (an
    honest copy may still come). A malformed handle or an object over the caller's limit is the same for
    every reader and every try: refuse it for good."""
    return not isinstance(exc, InvalidHandle | ObjectTooLarge)


class BackendUnavailable(StorageError):
    """The backend named by a store URL cannot be used here (e.g. an optional dependency is missing)."""
