"""The IPFS store on real in-process kubo nodes: CIDs equal Python's, verification, loopback-only peering."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from refiner.storage import (
    DirectoryStore,
    Handle,
    IntegrityError,
    IpfsStore,
    NotFound,
    ObjectTooLarge,
    StorageError,
    open_store,
)
from refiner.storage.kubo_config import loopback_only, problems
from refiner.storage.unixfs import CHUNK_SIZE, MAX_LINKS

from .conftest import IpfsFactory
from .test_handle import KUBO_VECTORS, payload

pytestmark = pytest.mark.ipfs


@pytest.fixture(scope="module")
def node_a(ipfs_store_factory: IpfsFactory) -> IpfsStore:
    return ipfs_store_factory("a")


@pytest.fixture(scope="module")
def node_b(ipfs_store_factory: IpfsFactory, node_a: IpfsStore) -> IpfsStore:
    """A second node, peered with node_a over loopback through the peers API."""
    store = ipfs_store_factory("b")
    store.connect(node_a.listen_addresses()[0])
    return store


@pytest.fixture(scope="module")
def lonely(ipfs_store_factory: IpfsFactory) -> IpfsStore:
    """A node with no peers at all."""
    return ipfs_store_factory("lonely")


def kubo_cid(store: IpfsStore, data: bytes, tmp_path: Path) -> str:
    """The CID kubo computes (only-hash `ipfs add`, nothing stored)."""
    path = tmp_path / "data"
    path.write_bytes(data)
    return str(store.node.files.predict_cid(str(path)))


SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 7_000_000]
BIG_SIZES = [MAX_LINKS * CHUNK_SIZE, MAX_LINKS * CHUNK_SIZE + 1, (MAX_LINKS + 1) * CHUNK_SIZE + 1]


@pytest.mark.parametrize("size", SIZES)
def test_python_cid_equals_kubo_cid(node_a: IpfsStore, size: int, tmp_path: Path) -> None:
    data = payload(size)
    assert kubo_cid(node_a, data, tmp_path) == str(Handle.of(data)) == KUBO_VECTORS[size]


@pytest.mark.slow
@pytest.mark.parametrize("size", BIG_SIZES, ids=["174-chunks", "175-chunks", "176-chunks"])
def test_python_cid_equals_kubo_cid_beyond_one_level(node_a: IpfsStore, size: int, tmp_path: Path) -> None:
    """174 chunks fill one inner node; one byte more needs a second level of the balanced tree."""
    data = payload(size)
    assert kubo_cid(node_a, data, tmp_path) == str(Handle.of(data)) == KUBO_VECTORS[size]


def test_config_is_loopback_only(node_a: IpfsStore) -> None:
    config = json.loads((node_a.repo / "config").read_text())
    assert problems(config) == []
    assert config["Bootstrap"] == []
    assert config["Routing"]["Type"] == "none"
    assert config["Discovery"]["MDNS"]["Enabled"] is False
    addresses = config["Addresses"]
    listeners = [*addresses["Swarm"], addresses["API"], addresses["Gateway"]]
    assert listeners and all(addr.startswith("/ip4/127.0.0.1/") for addr in listeners)
    assert config["Swarm"]["DisableNatPortMap"] is True
    assert all(addr.startswith("/ip4/127.0.0.1/tcp/") for addr in node_a.listen_addresses())


def test_config_listen_port() -> None:
    config = loopback_only({"Addresses": {"Swarm": ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001"]}}, 4101)
    assert config["Addresses"]["Swarm"] == ["/ip4/127.0.0.1/tcp/4101"]
    assert config["Addresses"]["API"] == config["Addresses"]["Gateway"] == "/ip4/127.0.0.1/tcp/0"
    assert problems(config) == []
    assert loopback_only(config)["Addresses"]["Swarm"] == ["/ip4/127.0.0.1/tcp/0"]
    for bad in (-1, 65536, True, "4101"):
        with pytest.raises(ValueError, match="listen port"):
            loopback_only(config, bad)  # type: ignore[arg-type]


def _inet_sockets_of_this_process() -> list[tuple[str, str, str]]:
    """(protocol, local address, remote address) of every TCP/UDP socket this process holds."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
        if match:
            inodes.add(match.group(1))
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/self/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((proto, fields[1], fields[2]))
    return found


def _is_loopback(hex_addr: str, proto: str) -> bool:
    host = hex_addr.split(":")[0]
    if proto.endswith("6"):  # ::1, or ::ffff:127.x.x.x
        return host == "00000000000000000000000001000000" or (
            host.startswith("0000000000000000FFFF0000") and host.endswith("7F")
        )
    return host.endswith("7F")  # 127.x.x.x, little-endian


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")
def test_nodes_only_use_loopback_sockets(node_a: IpfsStore, node_b: IpfsStore, lonely: IpfsStore) -> None:
    """Every socket the process holds (the nodes' listeners and their connection) is on loopback."""
    assert node_a.peer_id in node_b.peers()
    sockets = _inet_sockets_of_this_process()
    assert sockets, "expected at least the nodes' listeners"
    for proto, local, remote in sockets:
        assert _is_loopback(local, proto), f"{proto} socket bound to {local}"
        assert remote.split(":")[0].strip("0") == "" or _is_loopback(remote, proto), f"{proto} to {remote}"


def test_connect_refuses_non_loopback(lonely: IpfsStore) -> None:
    with pytest.raises(StorageError, match="refusing to dial"):
        lonely.connect("/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ")
    with pytest.raises(StorageError, match="refusing to dial"):
        lonely.connect("/ip4/127.0.0.1/tcp/4001")  # no peer id


def test_put_get_round_trip(node_a: IpfsStore) -> None:
    for data in (b"", b"round trip", payload(CHUNK_SIZE + 1)):
        handle = node_a.put(data)
        assert handle == Handle.of(data)
        assert node_a.has(handle)
        assert node_a.get(handle) == data
    assert node_a.put(b"round trip") == Handle.of(b"round trip")


def test_same_handle_names_same_bytes_in_both_backends(node_a: IpfsStore, tmp_path: Path) -> None:
    directory = DirectoryStore(tmp_path)
    data = payload(1_000_003)
    handle = node_a.put(data)
    assert directory.put(data) == handle
    assert directory.get(handle) == node_a.get(handle) == data
    moved = payload(2_000_001)
    assert node_a.put(directory.get(directory.put(moved))) == Handle.of(moved)


def _block_file(store: IpfsStore, handle: Handle) -> Path:
    """kubo 0.22's flatfs: key = base32(multihash), shard = next-to-last two characters."""
    key = base64.b32encode(bytes(handle)).decode().rstrip("=")
    return store.repo / "blocks" / key[-3:-1] / f"{key}.data"


def test_tampered_block_is_refused(node_a: IpfsStore) -> None:
    """kubo hands back whatever its repo holds; the store's own check catches the edit."""
    data = payload(4000)
    handle = node_a.put(data)
    block = _block_file(node_a, handle)
    original = block.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01  # inside the chunk, so the block still decodes
    block.write_bytes(tampered)
    try:
        with pytest.raises(IntegrityError, match=f"integrity check failed for {handle}"):
            node_a.get(handle)
    finally:
        block.write_bytes(original)
    assert node_a.get(handle) == data


def test_unknown_handle_without_peers_fails_fast(lonely: IpfsStore) -> None:
    handle = Handle.of(b"nobody has this")
    assert not lonely.has(handle)
    start = time.monotonic()
    with pytest.raises(NotFound, match="no peers"):
        lonely.get(handle)
    assert time.monotonic() - start < 2


def test_unknown_handle_with_peers_times_out(ipfs_store_factory: IpfsFactory, node_a: IpfsStore) -> None:
    impatient = ipfs_store_factory("impatient", fetch_timeout=1.0)
    impatient.connect(node_a.listen_addresses()[0])
    start = time.monotonic()
    with pytest.raises(NotFound, match="no connected peer provided it within 1 s"):
        impatient.get(Handle.of(b"nobody has this either"))
    assert 0.9 < time.monotonic() - start < 5


def test_size_limit(node_a: IpfsStore) -> None:
    handle = node_a.put(b"z" * 1000)
    assert node_a.get(handle, max_size=1000) == b"z" * 1000
    with pytest.raises(ObjectTooLarge, match="1000 bytes, over the limit of 999"):
        node_a.get(handle, max_size=999)


def test_malformed_handles(node_a: IpfsStore) -> None:
    with pytest.raises(TypeError, match=r"Handle\.parse"):
        node_a.get(str(Handle.of(b"x")))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        node_a.has(b"\x12\x20")  # type: ignore[arg-type]


def test_bytes_put_on_one_node_are_fetched_by_another(node_a: IpfsStore, node_b: IpfsStore) -> None:
    data = payload(3 * CHUNK_SIZE + 7)
    handle = node_a.put(data)
    assert not node_b.has(handle)
    onchain = bytes(handle)  # what a participant would read from the contract
    assert node_b.get(Handle.from_bytes(onchain), max_size=len(data)) == data
    assert node_b.has(handle)  # fetched objects are pinned, so node_b now serves them too


def test_a_fetched_object_is_served_on_after_its_author_leaves(ipfs_store_factory: IpfsFactory) -> None:
    """What the committee's fetch cut-off relies on: a worker's file that reached one validator's node
    reaches every node connected to it, even once the worker's own node is gone."""
    author, first, second = (ipfs_store_factory(name, fetch_timeout=10.0) for name in ("w", "v1", "v2"))
    first.connect(author.listen_addresses()[0])
    second.connect(first.listen_addresses()[0])  # never to the author
    data = payload(2 * CHUNK_SIZE + 3)
    handle = author.put(data)
    assert first.get(handle) == data
    author.close()
    assert second.get(handle) == data


def test_reopen_keeps_identity_and_data(ipfs_store_factory: IpfsFactory) -> None:
    store = ipfs_store_factory("reopen")
    repo, peer_id = store.repo, store.peer_id
    handle = store.put(b"persistent")
    with pytest.raises(StorageError, match="already open in this process"):
        IpfsStore(repo)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        store.get(handle)
    with open_store(f"ipfs://{repo.as_posix()}?timeout=5") as again:
        assert isinstance(again, IpfsStore) and again.peer_id == peer_id
        assert again.get(handle) == b"persistent"


def test_repo_used_by_another_process_is_a_clear_error(node_a: IpfsStore) -> None:
    script = textwrap.dedent(
        """
        import sys
        from refiner.storage import StorageError, open_store
        try:
            open_store("ipfs://" + sys.argv[1])
        except StorageError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, node_a.repo.as_posix()],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=node_a.repo,
    )
    assert "in use by another process" in result.stdout, result.stdout + result.stderr


def test_7mb_put_get_timings(node_a: IpfsStore, node_b: IpfsStore, tmp_path: Path) -> None:
    """Measures 7 MB put/get in both backends (printed; the bounds only catch pathologies)."""
    timings = {}
    for name, store, reader in (
        ("dir", DirectoryStore(tmp_path), None),
        ("ipfs", node_a, node_b),
    ):
        data = os.urandom(7_000_000)
        start = time.perf_counter()
        handle = store.put(data)
        put = time.perf_counter() - start
        start = time.perf_counter()
        assert store.get(handle) == data
        timings[name] = f"put {put * 1000:.0f} ms, get {(time.perf_counter() - start) * 1000:.0f} ms"
        if reader is not None:
            start = time.perf_counter()
            assert reader.get(handle) == data
            timings["ipfs peer fetch"] = f"get {(time.perf_counter() - start) * 1000:.0f} ms"
        assert put < 10
    print(f"\n7 MB timings: {timings}")
