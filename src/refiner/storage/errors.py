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


class BackendUnavailable(StorageError):
    """The backend named by a store URL cannot be used here (e.g. an optional dependency is missing)."""
