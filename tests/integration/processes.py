"""Run `refiner` commands as separate OS processes and watch their logs (for the integration tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class Proc:
    """A `python -m refiner ...` process whose output goes to `log`."""

    def __init__(self, name: str, args: Sequence[str], workdir: Path, env: dict[str, str]) -> None:
        self.name, self.args, self.env = name, list(args), env
        self.log = workdir / "logs" / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts}: refiner {' '.join(self.args)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "refiner", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up."""
        if self.running():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM and wait (a clean stop: anvil saves its state)."""
        if self.running():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_for(self, text: str, timeout: float, since: int = 0) -> None:
        wait_until(lambda: text in self.text()[since:], timeout, f"{self.name} to log {text!r}", self)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, *procs: Proc) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.text()[-3000:]}" for p in procs)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{tails}")
        for p in procs:
            if p.process is not None and p.process.poll() not in (None, 0):
                raise AssertionError(f"{p.name} exited with {p.process.returncode}:\n{p.text()[-4000:]}")
        time.sleep(0.1)


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = 120) -> str:
    """Run one `refiner` command to completion; its stdout (asserting success)."""
    done = subprocess.run(
        [sys.executable, "-m", "refiner", *args], capture_output=True, env=env, timeout=timeout, check=False
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"refiner {' '.join(args)} failed ({done.returncode}):\n{out}\n{err}"
    return out
