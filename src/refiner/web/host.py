"""The participants a `refiner serve` process hosts: their keys, the chain and store they share, the
data each may use, and background jobs (training, evaluation) with progress.

With ``--demo`` everything is built in-process as in the paper's demo: an embedded chain, a directory
store, a registry, one requester, five workers (each with a good dataset and a shuffled-label copy of
it) and a pool of validators with different stakes. The embedded EVM is not thread-safe, so every
JSON-RPC request goes through one lock (training and evaluation run outside it, in parallel).

Without it (`Host.for_account`) the server is one participant's own: one account, in one role, on
whatever chain and store it uses, with its own data.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eth_account.signers.local import LocalAccount

from refiner.agents import Terms
from refiner.cast import build_cast
from refiner.chain import Chain, Event, Registry, Task, TaskConfig
from refiner.chain.contract import ContractWrapper
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist
from refiner.fl.inference import use_one_thread
from refiner.fl.models import ModelFn, State
from refiner.roles import Requester, Validator, Worker
from refiner.roles.validator import Evaluated
from refiner.storage import DirectoryStore, Store
from refiner.units import ETH, ether
from refiner.web.activity import Activity
from refiner.wire.details import ManifestDetails

Role = Literal["requester", "worker", "validator"]


class Forbidden(PermissionError):
    """The account may not take this step (wrong role, not this task's requester, not a member, no key)."""


class NotFound(LookupError):
    """No such task, job, round or account."""


class Conflict(RuntimeError):
    """The step is not possible now (wrong phase, already done, busy, not enough Ether)."""


class Invalid(ValueError):
    """The request is malformed in a way its JSON schema cannot say (an amount of Ether, a setting)."""


class KnownTask(Task):
    """A task whose requester and configuration, fixed at deployment, are read from the chain once."""

    def __init__(self, chain: Chain, address: str) -> None:
        super().__init__(chain, address)
        self._requester: str | None = None
        self._config: TaskConfig | None = None

    def requester(self) -> str:
        if self._requester is None:
            self._requester = super().requester()
        return self._requester

    def config(self) -> TaskConfig:
        if self._config is None:
            self._config = super().config()
        return self._config


@dataclass
class HostedAccount:
    label: str
    role: Role
    account: LocalAccount

    @property
    def address(self) -> str:
        return str(self.account.address)


@dataclass
class Job:
    """A long action (training, evaluation) running in a thread; the UI polls its progress."""

    id: str
    kind: str
    account: str
    task: str
    state: Literal["running", "done", "failed"] = "running"
    progress: float = 0.0
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentOptions:
    """How auto mode's agents behave (`refiner worker run` and the like take the same options)."""

    #: Follow only this task (default: every task the registry lists).
    only_task: str | None = None
    terms: Terms = field(default_factory=Terms)
    #: The requester closes recruitment early once this many workers and seats are in (0: the deadline).
    min_workers: int = 0
    min_seats: int = 0
    #: A validator bonds this stake when it registers (wei).
    stake: int = ETH


@dataclass
class Host:
    chain: Chain
    store: Store
    registry: Registry
    accounts: dict[str, HostedAccount]
    requester: dict[str, Requester]
    workers: dict[str, Worker]
    bad_data: dict[str, Dataset]
    validators: dict[str, Validator]
    #: The requester's validation data (shared with the committee each round); None without a requester.
    validation: Dataset | None
    test: Dataset
    demo: bool = True
    options: AgentOptions = field(default_factory=AgentOptions)
    #: What auto mode's agents did and wait for (the page's activity feed).
    activity: Activity = field(default_factory=Activity)
    jobs: dict[str, Job] = field(default_factory=dict)
    #: (validator, task) pairs whose sortition seated nobody: the page's hint skips them.
    not_selected: set[tuple[str, str]] = field(default_factory=set)
    #: A validator's evaluated work per (validator, task, round), until revealed.
    work: dict[tuple[str, str, int], Evaluated] = field(default_factory=dict)
    #: Consensus models and their test accuracy per (task, round).
    models: dict[tuple[str, int], tuple[State, float]] = field(default_factory=dict)
    #: Consensus details of settled rounds per (task, round), and gas used per mined transaction.
    details: dict[tuple[str, int], ManifestDetails] = field(default_factory=dict)
    gas: dict[str, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: Tasks met so far; the index of the chain's logs (raw per address up to a block, and decoded).
    _tasks: dict[str, KnownTask] = field(default_factory=dict)
    _indexed_to: int = -1
    _logs: dict[str, list[Any]] = field(default_factory=dict)
    _events: dict[str, list[Event]] = field(default_factory=dict)
    _decoded_upto: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build_demo(
        cls, out: Path, workers: int = 5, validators: int = 10, shard: int = 3000, seed: int = 0
    ) -> Host:
        """The paper's demo cast on an embedded chain (5 workers, 10 validators with stakes 1–2.5 ETH)."""
        chain = Chain.connect()
        _serialise_requests(chain)
        store = DirectoryStore(out / "store")
        train, test = load_mnist()
        validation, shards = split_mnist(train, [shard] * workers, validation_size=2000, seed=seed)
        stakes = [ETH + (i % 4) * ETH // 2 for i in range(validators)]
        cast = build_cast(chain, store, shards, stakes, label="serve", funds=1_000 * ETH, seed=seed)
        accounts = {cast.requester.address: HostedAccount("requester", "requester", cast.requester.account)}
        for i, w in enumerate(cast.workers):
            accounts[w.address] = HostedAccount(f"worker {i + 1}", "worker", w.account)
        for i, v in enumerate(cast.validators):
            accounts[v.address] = HostedAccount(f"validator {i + 1}", "validator", v.account)
        return cls(
            chain=chain,
            store=store,
            registry=cast.registry,
            accounts=accounts,
            requester={cast.requester.address: cast.requester},
            workers={w.address: w for w in cast.workers},
            bad_data={w.address: shuffle_labels(w.data, seed=seed + i) for i, w in enumerate(cast.workers)},
            validators={v.address: v for v in cast.validators},
            validation=validation,
            test=test,
        )

    @classmethod
    def for_account(
        cls,
        registry: Registry,
        store: Store,
        account: LocalAccount,
        role: Role,
        *,
        data: Dataset | None = None,
        validation: Dataset | None = None,
        test: Dataset | None = None,
        options: AgentOptions | None = None,
        models: Mapping[str, ModelFn] | None = None,
        seed: int = 0,
    ) -> Host:
        """One participant's server on any chain: `account` playing `role` — a worker training on its
        private `data`, a validator, or a requester sharing `validation` with each round's committee.
        A worker or validator not registered yet is registered now (a validator bonds the options'
        stake), as `refiner worker run` / `validator run` do. `test` (default: MNIST's test split, which
        is installed) scores the consensus models the requester retrieves."""
        options = options or AgentOptions()
        models = dict(models or {})
        chain = registry.chain
        if chain.kind == "embedded":
            _serialise_requests(chain)
        host = cls(
            chain=chain,
            store=store,
            registry=registry,
            accounts={str(account.address): HostedAccount(role, role, account)},
            requester={},
            workers={},
            bad_data={},
            validators={},
            validation=validation,
            test=test if test is not None else load_mnist()[1],
            demo=False,
            options=options,
        )
        log = host.activity.logger("refiner.web.account")
        if role == "worker":
            if data is None:
                raise ValueError("a worker's server needs its private data")
            worker = Worker(account, chain, store, registry, data=data, seed=seed, models=models)
            if not registry.is_worker(worker.address):
                worker.register()
                log.info("registered as a worker")
            host.workers[worker.address] = worker
        elif role == "validator":
            validator = Validator(account, chain, store, registry, models=models)
            if not registry.is_validator(validator.address):
                validator.register(options.stake)
                log.info("registered as a validator with a stake of %s", ether(options.stake))
            host.validators[validator.address] = validator
        else:
            if validation is None:
                raise ValueError("a requester's server needs the validation data it shares each round")
            host.requester[str(account.address)] = Requester(account, chain, store, registry, models=models)
        return host

    def events_of(self, contract: ContractWrapper) -> list[Event]:
        """Every event `contract` emitted so far, in chain order, from the host's index of the chain's logs.

        The embedded chain answers a log query by reading every transaction receipt in the queried
        range, so a page reading a task's events with a query of its own grew slower with every block;
        the index reads each new block range once (the embedded chain has no reorganisations)."""
        with self.lock:
            head = self.chain.w3.eth.block_number
            if head > self._indexed_to:
                for log in self.chain.w3.eth.get_logs({"fromBlock": self._indexed_to + 1, "toBlock": head}):
                    self._logs.setdefault(str(log["address"]), []).append(log)
                self._indexed_to = head
            address = str(contract.address)
            raw, seen = self._logs.get(address, []), self._decoded_upto.get(address, 0)
            if seen < len(raw):
                receipt: Any = {"logs": raw[seen:]}
                self._events.setdefault(address, []).extend(contract.decode_events(receipt))
                self._decoded_upto[address] = len(raw)
            return list(self._events.get(address, []))

    def registered_tasks(self) -> list[str]:
        """Every task registered so far, oldest first."""
        return [str(e["task"]) for e in self.events_of(self.registry) if e.name == "TaskRegistered"]

    def known_task(self, address: str) -> KnownTask:
        """The task at `address` (checksummed), one object per task so that what it read once is kept;
        whether a task is there at all is the caller's to check."""
        with self.lock:
            if address not in self._tasks:
                self._tasks[address] = KnownTask(self.chain, address)
            return self._tasks[address]

    def hosted(self, address: str) -> HostedAccount:
        for known, hosted in self.accounts.items():
            if known.lower() == address.lower():
                return hosted
        raise NotFound(f"this server holds no key for {address}")

    def start_job(self, kind: str, account: str, task: str, work: Callable[[Job], dict[str, Any]]) -> Job:
        with self.lock:  # two requests for the same account must not both pass the check
            busy = [j for j in self.jobs.values() if j.account == account and j.state == "running"]
            if busy:
                label = self.accounts[account].label if account in self.accounts else account
                raise Conflict(
                    f"{label} is still busy with its {busy[0].kind} job {busy[0].id}; wait until it ends"
                )
            job = Job(uuid.uuid4().hex[:12], kind, account, task)
            self.jobs[job.id] = job

        def run() -> None:
            use_one_thread()
            try:
                job.result = work(job)
                job.progress, job.state = 1.0, "done"
            except Exception as exc:  # reported to the UI; the server carries on
                job.state, job.message = "failed", f"{type(exc).__name__}: {exc}"

        threading.Thread(target=run, name=f"job-{kind}-{job.id}", daemon=True).start()
        return job


def _serialise_requests(chain: Chain) -> None:
    """Let one request at a time into the (not thread-safe) embedded EVM."""
    provider: Any = chain.w3.provider
    if getattr(provider, "refiner_serialised", False):
        return
    provider.refiner_serialised = True
    lock = chain.lock  # the one Chain.transact holds from a snapshot to a possible revert
    inner = provider.make_request

    def make_request(method: Any, params: Any) -> Any:
        with lock:
            return inner(method, params)

    provider.make_request = make_request
