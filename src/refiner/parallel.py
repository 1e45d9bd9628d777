"""Where a simulation's heavy, pure steps run: workers' local training and validators' round evaluations.

An :class:`Executor` maps a pure function over jobs and returns the results in job order. The chain, the
store and every transaction stay in the calling process: only tensors and datasets travel. ``Sequential``
runs the jobs in the caller, one after the other (the default). ``ProcessExecutor`` runs them on worker
processes of this machine, tensors passed through shared memory. ``RayExecutor`` runs them as Ray tasks on
a Ray cluster (``ray://host:port`` or ``host:port``); what several jobs share (the round's global model,
the validation set, each worker's update) is put in Ray's object store once and passed by reference.
Every worker sets torch to the caller's thread count, so that its floating-point results are the ones the
sequential path computes, bit for bit.

Both move Python objects between the simulation's own processes with pickle. They are the simulation's own
objects, never bytes from a peer: peers' files are opened (and validated) in the calling process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import torch

R = TypeVar("R")
#: How worker processes share tensors (torch.multiprocessing's strategy).
SHARING = "file_system"


class Executor(ABC):
    """Runs pure jobs, possibly in parallel."""

    #: How many jobs may run at once (1: one after the other).
    parallelism: int = 1

    def share(self, value: Any) -> Any:
        """A handle to pass `value` to many jobs without copying it per job (the value itself here)."""
        return value

    @abstractmethod
    def map(self, fn: Callable[..., R], jobs: Sequence[tuple[Any, ...]]) -> list[R]:
        """``fn(*job)`` for every job, in job order; handles from :meth:`share` may stand for arguments,
        also inside a list or tuple argument."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release what the executor holds (a process pool, a Ray connection)."""

    def describe(self) -> str:
        return "sequential"


class Sequential(Executor):
    """Every job in the calling process, in order."""

    def map(self, fn: Callable[..., R], jobs: Sequence[tuple[Any, ...]]) -> list[R]:
        return [fn(*job) for job in jobs]


class ProcessExecutor(Executor):
    """Jobs in `processes` worker processes of this machine (spawned, so nothing of the caller's state is
    inherited). No server is started: jobs and results travel through pipes, and their tensors through
    shared memory (torch's multiprocessing), so a model shared by many jobs is not copied per job."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"a process pool needs at least one process, not {processes}")
        import torch.multiprocessing as mp

        # shared tensors are named files in /dev/shm, not open descriptors: a round hands thousands of
        # update tensors to each worker, more than a process may hold descriptors
        mp.set_sharing_strategy(SHARING)  # type: ignore[no-untyped-call]
        self.parallelism = processes
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=mp.get_context("spawn"),
            initializer=_start_worker,
            initargs=(torch.get_num_threads(),),
        )
        # start every worker and import the learning code there now, not in the first round
        list(self._pool.map(_warm_up, [0.2] * processes))

    def map(self, fn: Callable[..., R], jobs: Sequence[tuple[Any, ...]]) -> list[R]:
        return list(self._pool.map(_call, [(fn, job) for job in jobs]))

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def describe(self) -> str:
        return f"{self.parallelism} processes on this machine"


def _start_worker(threads: int) -> None:
    import torch.multiprocessing as mp

    mp.set_sharing_strategy(SHARING)  # type: ignore[no-untyped-call]
    torch.set_num_threads(threads)


def _call(fn_and_job: tuple[Callable[..., R], tuple[Any, ...]]) -> R:
    fn, job = fn_and_job
    return fn(*job)


class RayExecutor(Executor):
    """Jobs as Ray tasks on the cluster at `address` (``ray://host:port`` through Ray Client, ``host:port`` or
    ``auto`` joining it directly), which its operator runs. A cluster's gRPC servers listen on every
    interface whatever node address they are given (Ray 2.60): this machine's own cores are the
    `ProcessExecutor`'s, which starts no server."""

    def __init__(self, address: str) -> None:
        import ray  # Ray takes ~1 s to import: only a simulation that asks for it pays that

        self._ray: Any = ray  # untyped: Ray's annotations are partial
        self._owned = not ray.is_initialized()
        if self._owned:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        self.address = address
        self.parallelism = max(1, int(self._ray.cluster_resources().get("CPU", 1)))
        self._remote: Any = ray.remote(num_cpus=1)(_run_job)
        # start one Ray worker per CPU and import the learning code there now, not in the first round
        self._ray.get([self._remote.remote(_warm_up, 1, [0.2]) for _ in range(self.parallelism)])

    def share(self, value: Any) -> Any:
        return self._ray.put(value)

    def map(self, fn: Callable[..., R], jobs: Sequence[tuple[Any, ...]]) -> list[R]:
        threads = torch.get_num_threads()
        futures = [self._remote.remote(fn, threads, list(job)) for job in jobs]
        return list(self._ray.get(futures))

    def nodes(self) -> list[str]:
        """The ids of the cluster's live nodes."""
        return [n["NodeID"] for n in self._ray.nodes() if n.get("Alive")]

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()

    def describe(self) -> str:
        return f"the Ray cluster at {self.address} ({self.parallelism} CPUs)"


def _run_job(fn: Callable[..., R], threads: int, args: list[Any]) -> R:
    """Runs in a Ray worker: the caller's torch thread count, shared arguments fetched from the store."""
    import ray

    torch.set_num_threads(threads)
    return fn(*(_resolve(ray, a) for a in args))


def _warm_up(seconds: float) -> None:
    import time

    import refiner.fl.round_evaluation  # noqa: F401 - what every job runs

    time.sleep(seconds)  # held long enough that each warm-up job gets a worker of its own


def _resolve(ray: Any, value: Any) -> Any:
    if isinstance(value, ray.ObjectRef):
        return ray.get(value)
    if isinstance(value, list):
        return [_resolve(ray, v) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(ray, v) for v in value)
    return value


def check_parallel(parallel: str) -> None:
    """Refuses (ValueError, one line) what `--parallel` cannot name."""
    text = parallel.strip()
    if text.isdigit() or text == "auto" or text.startswith("ray://") or ":" in text:
        return
    raise ValueError(f"--parallel takes a number of cores or a Ray address (ray://host:port), not {text!r}")


def executor_for(parallel: str | int | None) -> Executor:
    """The executor `--parallel` names: nothing, 0 or 1 → sequential; a number N → N worker processes of
    this machine; ``ray://host:port``, ``host:port`` or ``auto`` → that Ray cluster."""
    if parallel is None:
        return Sequential()
    text = str(parallel).strip()
    check_parallel(text)
    if text.isdigit():
        return Sequential() if int(text) <= 1 else ProcessExecutor(int(text))
    return RayExecutor(address=text)
