"""Start a local anvil node (Foundry's dev chain, installed by npm) for tests and the CLI.

``start_anvil()`` launches the pinned ``anvil`` from ``node_modules``, bound to 127.0.0.1 only, waits until
its JSON-RPC answers and returns an :class:`Anvil` handle (a context manager) whose ``url`` is what
:meth:`refiner.chain.Chain.connect` takes. With ``state_path`` the chain is loaded from that file when it
exists and written back to it when the node stops, so a chain survives restarts.

    with start_anvil() as anvil:
        chain = Chain.connect(anvil.url)
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from refiner.chain.build import NODE_MODULES
from refiner.chain.errors import ChainError

__all__ = ["DEFAULT_BALANCE", "HOST", "Anvil", "AnvilError", "find_anvil", "start_anvil"]

#: The only interface anvil listens on: a dev chain with unlocked accounts must not be reachable remotely.
HOST = "127.0.0.1"
#: Ether (whole units) on each of anvil's unlocked dev accounts: enough to fund many demo participants.
DEFAULT_BALANCE = 1_000_000

_LISTENING = re.compile(r"Listening on ([0-9.]+):(\d+)")
_POLL = 0.02  # seconds between readiness checks
_STOP_TIMEOUT = 10.0  # seconds anvil gets to write its state and exit before it is killed
_TAIL = 4000  # characters of anvil's output quoted in errors


class AnvilError(ChainError):
    """anvil is missing, exited early or did not answer in time."""


def find_anvil() -> Path | None:
    """The anvil installed under ``node_modules``, or None when it is not installed.

    The native binary of the platform package (``@foundry-rs/anvil-<os>-<arch>``) is preferred to the
    ``node_modules/.bin/anvil`` Node wrapper: the wrapper exits as soon as it has passed a stop signal on,
    before anvil has finished writing its state, and starting it costs a Node start-up.
    """
    native = _native_binary()
    if native is not None:
        return native
    wrapper = NODE_MODULES / ".bin" / ("anvil.cmd" if sys.platform == "win32" else "anvil")
    return wrapper if wrapper.exists() else None


def _native_binary() -> Path | None:
    os_name = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    if os_name is None or arch is None:
        return None
    name = "anvil.exe" if sys.platform == "win32" else "anvil"
    path = NODE_MODULES / "@foundry-rs" / f"anvil-{os_name}-{arch}" / "bin" / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


class Anvil:
    """A running anvil process. Use it as a context manager, or call :meth:`stop` when done."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, state_path: Path | None, log_dir: Path
    ) -> None:
        self.process = process
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.state_path = state_path
        self._log_dir = log_dir
        # Stops the node even if the handle is dropped or the interpreter exits without stop().
        self._finalizer = weakref.finalize(self, _shutdown, process, log_dir)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """What anvil has printed so far (stdout then stderr); empty once the node is stopped."""
        return _read(self._log_dir / "stdout.log") + _read(self._log_dir / "stderr.log")

    def stop(self) -> None:
        """Stop anvil (letting it write its state file, if any) and wait for it to exit. Idempotent."""
        self._finalizer()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Anvil(url={self.url!r}, pid={self.process.pid}, running={self.running})"


def start_anvil(
    port: int | None = None,
    state_path: Path | None = None,
    block_time: float | None = None,
    *,
    balance: int = DEFAULT_BALANCE,
    extra_args: Sequence[str] = (),
    timeout: float = 10.0,
    binary: Path | None = None,
) -> Anvil:
    """Start anvil on 127.0.0.1 and return once its JSON-RPC answers.

    :param port: TCP port; None lets the system pick a free one (read back from anvil's output).
    :param state_path: anvil's ``--state``: load the chain from this file if it exists, write it back
        when the node stops (see :meth:`Anvil.stop`).
    :param block_time: seconds between blocks (interval mining); None mines each transaction at once.
    :param balance: Ether given to each unlocked dev account (the faucet of :meth:`Chain.fund`).
    :param extra_args: further anvil command-line arguments.
    :param timeout: seconds to wait for the node to answer before giving up with :class:`AnvilError`.
    :param binary: the anvil executable; by default :func:`find_anvil`.
    """
    exe = binary or find_anvil()
    if exe is None:
        raise AnvilError(
            f"anvil is not installed under {NODE_MODULES}; run `make setup` (npm package @foundry-rs/anvil)"
        )
    args = [str(exe), "--host", HOST, "--port", str(port if port is not None else 0)]
    args += ["--balance", str(balance)]
    if block_time is not None:
        if block_time <= 0:
            raise ValueError(f"block_time must be positive, got {block_time}")
        args += ["--block-time", str(block_time)]
    if state_path is not None:
        state_path = Path(state_path).resolve()
        state_path.parent.mkdir(parents=True, exist_ok=True)
        args += ["--state", str(state_path)]
    if "--silent" in extra_args:
        raise ValueError("--silent hides the line anvil announces its port with; leave it out")
    args += list(extra_args)

    log_dir = Path(tempfile.mkdtemp(prefix="refiner-anvil-"))
    with (log_dir / "stdout.log").open("wb") as out, (log_dir / "stderr.log").open("wb") as err:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            # its own process group: stopping it reaches anvil even through the Node wrapper
            start_new_session=True,
        )
    try:
        bound = _wait_until_ready(process, log_dir, timeout)
    except BaseException:
        _shutdown(process, log_dir)
        raise
    return Anvil(process, bound, state_path, log_dir)


def _wait_until_ready(process: subprocess.Popen[bytes], log_dir: Path, timeout: float) -> int:
    """Wait until this anvil has bound its port and answers JSON-RPC on it; return the port.

    The port is read from anvil's own "Listening on" line, never just probed: another node already on a
    requested port would answer too while this one is failing to bind.
    """
    deadline = time.monotonic() + timeout
    port: int | None = None
    while True:
        code = process.poll()
        if code is not None:
            raise AnvilError(f"anvil exited with code {code} before answering:\n{_tail(log_dir)}")
        if port is None:
            found = _LISTENING.search(_read(log_dir / "stdout.log"))
            if found:
                port = int(found.group(2))
        if port is not None and _answers(f"http://{HOST}:{port}"):
            return port
        if time.monotonic() > deadline:
            where = f"on port {port}" if port is not None else "(it announced no port)"
            raise AnvilError(f"anvil did not answer JSON-RPC {where} within {timeout:g} s:\n{_tail(log_dir)}")
        time.sleep(_POLL)


def _answers(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "web3_clientVersion", "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return "result" in json.loads(response.read())
    except (OSError, ValueError):  # refused, reset, timed out (URLError is an OSError), not JSON yet
        return False


def _shutdown(process: subprocess.Popen[bytes], log_dir: Path) -> None:
    """Ask anvil to stop (SIGTERM: it writes --state then exits), kill it if it does not, clean up."""
    try:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.wait(_STOP_TIMEOUT)
        # Through the Node wrapper, anvil is a grandchild still busy after the wrapper has exited.
        _await_group_exit(process.pid, _STOP_TIMEOUT)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if sys.platform == "win32":
        process.kill()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _await_group_exit(pgid: int, timeout: float) -> None:
    if sys.platform == "win32":
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(_POLL)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(log_dir: Path) -> str:
    stderr = _read(log_dir / "stderr.log").strip()
    stdout = _read(log_dir / "stdout.log").strip()
    parts = [f"stderr: {stderr[-_TAIL:]}" if stderr else "stderr: (empty)"]
    if stdout:
        parts.append(f"stdout: {stdout[-_TAIL:]}")
    return "\n".join(parts)
