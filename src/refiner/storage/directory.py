"""A store in a local (or shared, e.g. NFS) directory: one file per object, named by its handle.

Layout: ``<root>/<2 hex digits>/<CIDv1 base32>``. The CIDv1 spelling of the handle is used for
file names because it is lower-case (safe on case-insensitive file systems, unlike ``Qm...``) and
still a valid CID for the same bytes; the two-digit shard keeps directories small.

Several processes may share one directory: ``put`` writes a temporary file in the target's own
directory, flushes it to disk and renames it into place with :func:`os.replace`, which is atomic, so
a reader sees either no file or a complete one. Concurrent ``put`` calls of the same bytes write
identical files, so the last rename winning is harmless. Nothing is trusted on the way out: ``get``
re-hashes the file, so a file edited on disk is refused with :class:`IntegrityError`.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import tempfile
from pathlib import Path
from urllib.parse import quote

from .base import BytesLike, Store, check_data, check_handle, check_max_size, enforce_max_size, verified
from .errors import NotFound, StorageError
from .handle import Handle

_TMP_PREFIX = ".tmp-"
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _open_no_links(path: Path) -> int:
    """Open ``path`` for reading without following a link at its name or its shard directory."""
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.open(path.name, _OPEN_FLAGS, dir_fd=parent)
    finally:
        os.close(parent)


def _link_in(path: Path) -> Path | None:
    return next((p for p in (path, path.parent) if p.is_symlink()), None)


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a file")


@functools.lru_cache(maxsize=1 << 16)
def _file_name(handle: Handle) -> str:
    # multiformats takes ~3 ms to re-spell a CID: 26 s of a 100-worker round (bench/scale.py) before this
    return str(handle.cid.set(version=1, base="base32"))


class DirectoryStore(Store):
    """A :class:`Store` keeping each object as a file under ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root).expanduser().absolute()
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create store directory {self._root}: {exc}") from exc
        if not self._root.is_dir():
            raise StorageError(f"store path {self._root} is not a directory")

    @property
    def root(self) -> Path:
        return self._root

    @property
    def url(self) -> str:
        return f"dir://{quote(self._root.as_posix())}"

    def path_of(self, handle: Handle) -> Path:
        """Where the object named by ``handle`` lives (whether or not it exists)."""
        check_handle(handle)
        return self._root / handle.digest.hex()[:2] / _file_name(handle)

    def put(self, data: BytesLike) -> Handle:
        data = check_data(data)
        handle = Handle.of(data)
        target = self.path_of(handle)
        try:
            target.parent.mkdir(exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
        except OSError as exc:
            raise StorageError(f"cannot write to store directory {self._root}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; other users sharing the directory must read it
            os.replace(tmp_name, target)
        except BaseException as exc:
            Path(tmp_name).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {handle} to {target}: {exc}") from exc
            raise
        return handle

    def get(self, handle: Handle, *, max_size: int | None = None) -> bytes:
        path = self.path_of(handle)
        check_max_size(max_size)
        # Anyone who can write the shared directory can put a FIFO (open would block), a device or a
        # link there: open without following the last link or blocking, then read only a regular file.
        try:
            fd = _open_no_links(path)
        except FileNotFoundError:
            raise NotFound(f"no object {handle} in directory store {self._root} (no {path})") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and (link := _link_in(path)) is not None:
                raise StorageError(
                    f"refusing {handle}: {link} is a symbolic link, not a regular file"
                ) from None
            raise StorageError(f"cannot read {handle} from {path}: {exc}") from exc
        # fstat the open file: a concurrent put may replace the name, but not this inode.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise StorageError(f"refusing {handle}: {path} is {_kind(info.st_mode)}, not a regular file")
        with os.fdopen(fd, "rb") as file:
            enforce_max_size(handle, info.st_size, max_size, str(path))
            limit = info.st_size if max_size is None else min(info.st_size, max_size)
            data = file.read(limit + 1)  # one byte more shows a file that grew after fstat
        if max_size is not None:
            enforce_max_size(handle, len(data), max_size, str(path))  # it grew after fstat
        return verified(handle, data, str(path))

    def has(self, handle: Handle) -> bool:
        path = self.path_of(handle)
        try:
            return stat.S_ISREG(os.lstat(path).st_mode) and not path.parent.is_symlink()
        except OSError:
            return False

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self._root)!r})"
