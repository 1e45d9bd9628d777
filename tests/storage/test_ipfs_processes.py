"""IPFS stores that find each other from their URLs: listen=, announce=, peer=, peers_file=, re-dialling.

The real use: every participant is its own OS process with its own kubo node. The first tests run
the other node in a child Python process; the rest run several nodes in this process, which is
quicker and enough for what they check.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import pytest

from refiner.storage import Handle, IpfsStore, NotFound, StorageError, open_store
from refiner.storage.kubo_config import problems

pytestmark = pytest.mark.ipfs

ANNOUNCED = re.compile(r"/ip4/127\.0\.0\.1/tcp/(\d+)/p2p/(\w+)")

OpenStore = Callable[[str], IpfsStore]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def open_ipfs(kubo: None) -> Iterator[OpenStore]:
    """``open_store`` for ``ipfs://`` URLs, closing every store it opened at the end of the test."""
    stores: list[IpfsStore] = []

    def opener(url: str) -> IpfsStore:
        store = open_store(url)
        assert isinstance(store, IpfsStore)
        stores.append(store)
        return store

    yield opener
    for store in stores:
        store.close()


CHILD = textwrap.dedent(
    """
    import sys
    from refiner.storage import open_store

    store = open_store(sys.argv[1])
    print("ready", store.peer_id, flush=True)
    for line in sys.stdin:  # each line: bytes to put
        print("handle", store.put(line.rstrip("\\n").encode()), flush=True)
    """
)


class Child:
    """A node in another Python process: ``open_store(url)``, then puts what it is sent."""

    def __init__(self, url: str, cwd: Path) -> None:
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        self.peer_id = self.expect("ready")
        self.startup = time.monotonic() - started

    def _pump(self, stdout: TextIO) -> None:
        for line in stdout:
            self.lines.put(line)
        self.lines.put("")  # EOF

    def expect(self, word: str, timeout: float = 15) -> str:
        """The rest of the next line that starts with ``word`` (other output is skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if not line:
                raise AssertionError(f"child exited ({self.process.poll()}) before printing {word!r}")
            if line.startswith(word + " "):
                return line.split(" ", 1)[1].strip()

    def put(self, data: str) -> Handle:
        assert self.process.stdin is not None
        self.process.stdin.write(data + "\n")
        self.process.stdin.flush()
        return Handle.parse(self.expect("handle"))

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        assert self.process.stdout is not None and self.process.stdin is not None
        self.process.stdin.close()
        self.process.stdout.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        if child.process.poll() is None:
            child.kill()


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_node_in_another_process_found_from_its_announce_file_and_again_after_a_restart(
    open_ipfs: OpenStore, children: list[Child], tmp_path: Path
) -> None:
    """Hub in a child process (listen= + announce=); agent here reads the announce file as peers_file."""
    timings: dict[str, float] = {}
    port, announce = free_port(), tmp_path / "hub.addrs"
    hub_url = f"ipfs://{tmp_path.as_posix()}/hub?listen={port}&announce={announce.as_posix()}"
    agent = open_ipfs(f"ipfs://{tmp_path.as_posix()}/agent?timeout=10&peers_file={announce.as_posix()}")
    assert agent.peers() == []  # the announce file does not exist yet: no peers, no error

    hub = Child(hub_url, tmp_path)
    children.append(hub)
    timings["child start"] = hub.startup
    announced = announce.read_text()
    assert [m.groups() for m in map(ANNOUNCED.fullmatch, announced.splitlines()) if m] == [
        (str(port), hub.peer_id)
    ], announced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hub.addrs")]  # no temp file left

    first = hub.put("made by the hub")
    start = time.monotonic()
    assert agent.get(first) == b"made by the hub"  # ensure_peers dialled the announced address
    timings["first get"] = time.monotonic() - start
    assert hub.peer_id in agent.peers()

    hub.kill()
    assert wait_until(lambda: hub.peer_id not in agent.peers()), "the agent did not notice the hub died"
    assert agent.ensure_peers() == announced.splitlines()  # down: reported, not raised
    hub = Child(hub_url, tmp_path)  # same repo and port, hence same peer id and multiaddr
    children.append(hub)
    assert announce.read_text() == announced
    assert hub.peer_id not in agent.peers()
    second = hub.put("made after the restart")
    start = time.monotonic()
    assert agent.get(second) == b"made after the restart"  # get re-dialled the restarted hub
    timings["get after restart"] = time.monotonic() - start
    assert hub.peer_id in agent.peers()

    # The hub dies and comes back *while* the agent waits for an object: re-dialled during the wait.
    third = Handle.of(b"made while the agent waited")
    result: list[bytes] = []
    waiter = threading.Thread(target=lambda: result.append(agent.get(third)))
    start = time.monotonic()
    waiter.start()
    time.sleep(0.3)
    hub.kill()
    hub = Child(hub_url, tmp_path)
    children.append(hub)
    assert hub.put("made while the agent waited") == third
    waiter.join(12)
    timings["get across a restart"] = time.monotonic() - start
    assert result == [b"made while the agent waited"]
    print(f"\nprocess timings (s): { {k: round(v, 2) for k, v in timings.items()} }")


def test_peer_option_connects_at_open_to_a_node_in_another_process(
    open_ipfs: OpenStore, children: list[Child], tmp_path: Path
) -> None:
    port = free_port()
    hub = Child(f"ipfs://{tmp_path.as_posix()}/hub?listen={port}", tmp_path)
    children.append(hub)
    peer = f"/ip4/127.0.0.1/tcp/{port}/p2p/{hub.peer_id}"
    encoded = peer.replace("/", "%2F")
    agent = open_ipfs(f"ipfs://{tmp_path.as_posix()}/agent?peer={encoded}&timeout=5")
    assert agent.peers() == [hub.peer_id]  # connected at open
    assert agent.get(hub.put("hello")) == b"hello"


def test_a_block_added_after_the_request_started_is_delivered(open_ipfs: OpenStore, tmp_path: Path) -> None:
    """A wants X, which nobody has; B (connected) adds X later: bitswap serves A's pending want."""
    b = open_ipfs(f"ipfs://{tmp_path.as_posix()}/b")
    a = open_ipfs(f"ipfs://{tmp_path.as_posix()}/a?timeout=10&peer={b.listen_addresses()[0]}")
    data = b"added after A asked for it"
    result: list[bytes] = []
    waiter = threading.Thread(target=lambda: result.append(a.get(Handle.of(data))))
    start = time.monotonic()
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive()
    b.put(data)
    waiter.join(10)
    elapsed = time.monotonic() - start
    assert result == [data]
    assert elapsed < 3, f"took {elapsed:.1f} s: the want was not served when the block arrived"


def test_down_peer_does_not_fail_open_and_is_dialled_when_it_comes_up(
    open_ipfs: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    hub_url = f"ipfs://{tmp_path.as_posix()}/hub?listen={port}"
    hub = open_ipfs(hub_url)
    hub_addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{hub.peer_id}"
    handle = hub.put(b"kept by the hub")
    hub.close()

    with caplog.at_level(logging.WARNING, logger="refiner.storage.ipfs"):
        agent = open_ipfs(f"ipfs://{tmp_path.as_posix()}/agent?timeout=5&peer={hub_addr}")
    assert [r.getMessage() for r in caplog.records] == [
        f"IPFS node {agent.repo}: peer {hub_addr} is not reachable; will re-dial it"
    ]
    start = time.monotonic()
    with pytest.raises(NotFound, match=f"no peers to ask \\(configured but unreachable: {hub_addr}\\)"):
        agent.get(handle)
    assert time.monotonic() - start < 2
    assert len(caplog.records) == 1  # still down: not reported again

    hub = open_ipfs(hub_url)  # back, same repo and port
    assert agent.ensure_peers() == []
    assert agent.peers() == [hub.peer_id]
    assert agent.ensure_peers() == []  # connected: nothing to do
    assert agent.get(handle) == b"kept by the hub"


def test_peers_file_is_reread_skips_comments_and_own_address(open_ipfs: OpenStore, tmp_path: Path) -> None:
    peers_file = tmp_path / "peers"
    a = open_ipfs(f"ipfs://{tmp_path.as_posix()}/a?peers_file={peers_file.as_posix()}&announce={peers_file}")
    assert a.configured_peers() == a.listen_addresses()  # it reads its own announce file...
    assert a.ensure_peers() == [] and a.peers() == []  # ...and does not dial itself
    b = open_ipfs(f"ipfs://{tmp_path.as_posix()}/b")
    peers_file.write_text(f"# filled in later\n\n  {b.listen_addresses()[0]}  # b\n")
    assert a.ensure_peers() == []
    assert a.peers() == [b.peer_id]


def test_listen_port_applies_at_every_open_and_url_round_trips(open_ipfs: OpenStore, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    ports = free_port(), free_port()
    peer = "/ip4/127.0.0.1/tcp/9/p2p/QmbJwSvom5No932hB5CDJxHqScV2GW8jSRn8jNCmzu2tL8"  # nobody there
    odd = tmp_path / "odd dir&+#"
    for port in ports:
        url = f"ipfs://{repo.as_posix()}?listen={port}&timeout=7&peer={peer}&peers_file={odd.as_posix()}/p"
        store = open_ipfs(url.replace("#", "%23").replace("&+", "%26+"))
        config = json.loads((repo / "config").read_text())
        assert config["Addresses"]["Swarm"] == [f"/ip4/127.0.0.1/tcp/{port}"]
        assert problems(config) == []
        assert store.listen_addresses() == [f"/ip4/127.0.0.1/tcp/{port}/p2p/{store.peer_id}"]
        url = store.url
        assert url == (
            f"ipfs://{repo.as_posix()}?timeout=7&listen={port}&peer={peer}"
            f"&peers_file={tmp_path.as_posix()}/odd%20dir%26%2B%23/p"
        )
        store.close()
        again = open_ipfs(url)
        assert again.url == url and again.configured_peers() == [peer]
        again.close()
    default = open_ipfs(f"ipfs://{repo.as_posix()}")
    assert json.loads((repo / "config").read_text())["Addresses"]["Swarm"] == ["/ip4/127.0.0.1/tcp/0"]
    assert default.url == f"ipfs://{repo.as_posix()}?timeout=30"


def test_listen_port_in_use_is_a_clear_error(open_ipfs: OpenStore, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StorageError, match=f"or is 127.0.0.1:{port} taken"):
            open_ipfs(f"ipfs://{tmp_path.as_posix()}/repo?listen={port}")
    assert open_ipfs(f"ipfs://{tmp_path.as_posix()}/repo?listen={port}").listen_port == port


def test_constructor_arguments(kubo: None, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"listen port must be an integer in 0\.\.65535"):
        IpfsStore(tmp_path, listen_port=70000)
    with pytest.raises(TypeError, match="not one string"):
        IpfsStore(tmp_path, peers="/ip4/127.0.0.1/tcp/1/p2p/Qm")
    with pytest.raises(StorageError, match="refusing peer '/ip6/2001:db8::1/tcp/1/p2p/Qm'"):
        IpfsStore(tmp_path, peers=["/ip6/2001:db8::1/tcp/1/p2p/Qm"])
    assert not (tmp_path / "config").exists()  # refused before creating the repo
