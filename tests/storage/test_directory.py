"""The directory store: round trips, verification, errors, size limit and concurrent writers."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from refiner.storage import (
    DirectoryStore,
    Handle,
    IntegrityError,
    NotFound,
    ObjectTooLarge,
    StorageError,
    open_store,
)


def test_put_get_round_trip(store: DirectoryStore) -> None:
    for data in (b"", b"x", os.urandom(300_000)):
        handle = store.put(data)
        assert handle == Handle.of(data)
        assert store.has(handle)
        assert store.get(handle) == data


def test_put_is_idempotent_and_takes_bytes_like(store: DirectoryStore) -> None:
    first = store.put(b"same bytes")
    assert store.put(bytearray(b"same bytes")) == first
    assert store.put(memoryview(b"same bytes")) == first
    assert [p.name for p in store.root.rglob("*") if p.is_file()] == [store.path_of(first).name]


def test_file_layout_is_sharded_by_digest_and_named_by_cidv1(store: DirectoryStore) -> None:
    handle = store.put(b"hello")
    path = store.path_of(handle)
    assert path.parent.parent == store.root and path.parent.name == handle.digest.hex()[:2]
    assert path.name.startswith("bafybei") and Handle.parse(path.name) == handle


def test_unknown_handle_is_not_found(store: DirectoryStore) -> None:
    handle = Handle.of(b"never stored")
    assert not store.has(handle)
    with pytest.raises(NotFound, match=str(handle)):
        store.get(handle)


def test_tampered_file_is_refused(store: DirectoryStore) -> None:
    data = os.urandom(1000)
    handle = store.put(data)
    path = store.path_of(handle)
    tampered = bytearray(path.read_bytes())
    tampered[500] ^= 0x01
    path.write_bytes(tampered)
    with pytest.raises(IntegrityError, match=f"integrity check failed for {handle}"):
        store.get(handle)
    path.write_bytes(data[:-1])  # truncated
    with pytest.raises(IntegrityError):
        store.get(handle)
    assert store.put(data) == handle  # a put repairs it
    assert store.get(handle) == data


def test_size_limit(store: DirectoryStore) -> None:
    handle = store.put(b"x" * 1000)
    assert store.get(handle, max_size=1000) == b"x" * 1000
    with pytest.raises(ObjectTooLarge, match="1000 bytes, over the limit of 999"):
        store.get(handle, max_size=999)
    assert store.get(store.put(b""), max_size=0) == b""
    with pytest.raises(ValueError, match="max_size"):
        store.get(handle, max_size=-1)


def test_size_limit_is_checked_before_reading(store: DirectoryStore) -> None:
    handle = store.put(b"y" * 5000)
    path = store.path_of(handle)
    os.truncate(path, 64 * 2**30)  # a sparse 64 GiB file: reading it first would exhaust memory
    with pytest.raises(ObjectTooLarge, match=f"is {64 * 2**30} bytes"):
        store.get(handle, max_size=5000)


def _get_within(store: DirectoryStore, handle: Handle, seconds: float = 5.0, **kwargs: int) -> BaseException:
    """``store.get`` in a thread: the exception it raised, or a test failure if it hangs."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            store.get(handle, **kwargs)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(AssertionError("get returned data from a file that is not the object"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        path = store.path_of(handle)
        if stat.S_ISFIFO(os.lstat(path).st_mode):  # release the blocked open (a writer appears)
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"get({handle}) still blocked after {seconds} s")
    return outcome[0]


def _plant(store: DirectoryStore, data: bytes) -> tuple[Handle, Path]:
    """A handle whose file name exists for nothing yet (its shard directory does)."""
    handle = Handle.of(data)
    path = store.path_of(handle)
    path.parent.mkdir(parents=True, exist_ok=True)
    return handle, path


@pytest.mark.timeout(30)
def test_fifo_at_a_handle_is_refused_without_blocking(store: DirectoryStore) -> None:
    handle, path = _plant(store, b"a FIFO takes this name")
    os.mkfifo(path)
    exc = _get_within(store, handle, max_size=100)
    assert isinstance(exc, StorageError)
    assert str(exc) == f"refusing {handle}: {path} is a FIFO, not a regular file"
    assert not store.has(handle)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("target", ["/etc/passwd", "big", "dir"])
def test_links_at_a_handle_are_not_followed(store: DirectoryStore, tmp_path: Path, target: str) -> None:
    big = tmp_path / "big"
    with big.open("wb") as file:
        file.truncate(1 << 30)  # sparse 1 GiB: following the link and reading it would exhaust memory
    dir_target = tmp_path / "elsewhere"
    handle, path = _plant(store, b"a link takes this name")
    if target == "dir":  # the shard directory itself is a link to a directory the attacker fills
        dir_target.mkdir()
        shutil.copyfile("/etc/passwd", dir_target / path.name)
        path.parent.rmdir()
        path.parent.symlink_to(dir_target)
    else:
        path.symlink_to("/etc/passwd" if target == "/etc/passwd" else big)
    exc = _get_within(store, handle)
    assert isinstance(exc, StorageError) and not isinstance(exc, NotFound)
    assert "is a symbolic link, not a regular file" in str(exc) and "\n" not in str(exc)
    assert not store.has(handle)


@pytest.mark.timeout(30)
def test_directory_at_a_handle_is_refused(store: DirectoryStore) -> None:
    handle, path = _plant(store, b"a directory takes this name")
    path.mkdir()
    exc = _get_within(store, handle)
    assert str(exc) == f"refusing {handle}: {path} is a directory, not a regular file"


def test_arguments_are_checked(store: DirectoryStore) -> None:
    with pytest.raises(TypeError, match=r"Handle\.parse"):
        store.get(str(Handle.of(b"x")))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="put"):
        store.put("text")  # type: ignore[arg-type]


def test_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError):
        DirectoryStore(tmp_path / "file")


def test_two_stores_on_one_directory_with_concurrent_threads(tmp_path: Path) -> None:
    a, b = DirectoryStore(tmp_path), DirectoryStore(tmp_path)
    payloads = [bytes([i]) * (100_000 + i) for i in range(8)]
    errors: list[BaseException] = []

    def writer(store: DirectoryStore) -> None:
        try:
            for _ in range(5):
                for data in payloads:
                    assert store.get(store.put(data)) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (a, b, a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for data in payloads:
        assert a.get(Handle.of(data)) == data == b.get(Handle.of(data))
    assert not [p for p in tmp_path.rglob(".tmp-*")], "temporary files left behind"


def test_readers_never_see_a_partial_object(tmp_path: Path) -> None:
    """A reader polling while another store rewrites the same object only ever sees it whole."""
    writer_store, reader_store = DirectoryStore(tmp_path), DirectoryStore(tmp_path)
    data = os.urandom(2_000_000)
    handle = Handle.of(data)
    done = threading.Event()
    reads: list[int] = []

    def rewrite() -> None:
        for _ in range(20):
            writer_store.put(data)
        done.set()

    thread = threading.Thread(target=rewrite)
    thread.start()
    while not done.is_set():
        if reader_store.has(handle):
            assert reader_store.get(handle) == data  # IntegrityError here would mean a torn read
            reads.append(1)
    thread.join()
    assert reader_store.get(handle) == data


WORKER = textwrap.dedent(
    """
    import sys
    from refiner.storage import Handle, open_store
    store = open_store(sys.argv[1])
    shared = [bytes([i]) * 200_000 for i in range(10)]
    own = [sys.argv[2].encode() * 50_000 + bytes([i]) for i in range(10)]
    for _ in range(3):
        for data in shared + own:
            assert store.get(store.put(data)) == data
    print("ok")
    """
)


def test_two_processes_share_one_directory(tmp_path: Path) -> None:
    url = f"dir://{tmp_path.as_posix()}"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, name], stdout=subprocess.PIPE, text=True)
        for name in ("alice", "bob")
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0] and outputs == ["ok\n", "ok\n"]
    store = open_store(url)
    for i in range(10):
        assert store.get(Handle.of(bytes([i]) * 200_000)) == bytes([i]) * 200_000
        for name in ("alice", "bob"):
            data = name.encode() * 50_000 + bytes([i])
            assert store.get(Handle.of(data)) == data
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 30
