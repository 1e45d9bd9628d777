"""What every long-running agent shares: the poll loop with backoff, task discovery and `advance`.

Agents are *level-triggered*: each tick they read the contract's state and do whatever is due for them,
so they keep nothing that cannot be rebuilt from the chain and the store. A killed agent that restarts
finds its place from the chain (has it signed up, submitted, committed, revealed, claimed?) and never acts
twice, because the contract refuses a second sign-up, submission, commitment, reveal or claim anyway.
Logs (followed by a :class:`BlockCursor`) only wake the agent up and tell the operator what happened.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import ClassVar

from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic
from web3.exceptions import TimeExhausted

from refiner.agents.cursor import BlockCursor
from refiner.chain import ChainError, ContractRevert, Registry, Status, Task
from refiner.chain.build import load_artifact
from refiner.protocol import Due, Role, chain_now, due
from refiner.storage import NotFound
from refiner.units import ether

#: Errors after which the agent waits and tries again: the node or a peer is unreachable for a while.
TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeExhausted, NotFound)
MAX_BACKOFF = 30.0


@dataclass
class Agent(ABC):
    """A participant's loop: follow the registry and the tasks, and act on what is due."""

    account: LocalAccount
    registry: Registry
    #: Follow only this task (default: every task the registry lists).
    only_task: str | None = None
    poll_interval: float = 1.0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("refiner.agent"))
    #: Claim rewards once a task has ended, in one transaction for the whole task (rewards accrue over
    #: the rounds), instead of after every round: a claim's gas once rather than once a round.
    claim_once: bool = False
    tasks: dict[str, Task] = field(init=False, default_factory=dict)
    #: Tasks this agent does not serve, with the reason (logged once): see `refusal`.
    skipped: dict[str, str] = field(init=False, default_factory=dict)
    _admitted: set[str] = field(init=False, default_factory=set)
    _cursor: BlockCursor | None = field(init=False, default=None)
    _topics: dict[bytes, str] = field(init=False, default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.account.address)

    @abstractmethod
    def prepare(self) -> None:
        """Once at start (and after the node came back): register if needed."""

    #: The role this agent plays on every task it follows.
    plays: ClassVar[Role]

    @abstractmethod
    def act(self, task: Task) -> bool:
        """Do what is due on `task`; True when this agent has nothing more to do there, ever."""

    def due(self, task: Task, settled: Collection[int] = ()) -> list[Due]:
        """The steps due for this agent on `task` now (`refiner.protocol.due`)."""
        return due(task, self.address, self.plays, now=chain_now(task), settled=settled)

    def claims_now(self, status: Status) -> bool:
        """Whether this agent claims what is due now (with `claim_once`, only once the task has ended)."""
        return not self.claim_once or status is Status.TERMINATED

    def refusal(self, task: Task) -> str | None:
        """Why this agent does not serve `task` (None: it does); asked once per task."""
        return None

    def run(self, stop: threading.Event | None = None, exit_when_done: bool = False) -> None:
        """Loop until `stop` is set (or, with `exit_when_done`, until every followed task is done). A
        dropped connection or a missing file is logged once per attempt and retried with backoff."""
        stop = stop or threading.Event()
        failures = 0
        prepared = False
        while not stop.is_set():
            try:
                if not prepared:
                    self.prepare()
                    prepared = True
                if self.tick() and exit_when_done:
                    self.log.info("all followed tasks are done; exiting")
                    return
                if failures:
                    self.log.info("back in business after %d failed attempt(s)", failures)
                failures = 0
                stop.wait(self.poll_interval)
            except TRANSIENT as exc:
                failures += 1
                wait = min(MAX_BACKOFF, 0.5 * 2**failures)
                self.log.warning("%s: %s; retrying in %.1f s", type(exc).__name__, _short(exc), wait)
                stop.wait(wait)

    def tick(self) -> bool:
        """Discover tasks, then act on each; True when every followed task is done."""
        self._discover()
        done = True
        for address, task in list(self.tasks.items()):
            try:
                if address not in self._admitted:
                    reason = self.refusal(task)
                    if reason is not None:
                        self.skipped[address] = reason
                        del self.tasks[address]
                        self.log.warning("task %s: skipped: %s", address[:10], reason)
                        continue
                    self._admitted.add(address)
                finished = self.act(task)
            except ContractRevert as exc:
                # somebody else moved the task on between our read and our transaction: harmless
                self.log.debug("task %s: %s; will look again", address[:10], _short(exc))
                finished = False
            except ChainError as exc:  # a transaction dropped or not mined in time: worth a line
                self.log.info("task %s: %s; will look again", address[:10], _short(exc))
                finished = False
            except TRANSIENT:
                raise
            except Exception as exc:  # one bad task (a peer's corrupt file, ...) must not stop the agent
                self.log.warning(
                    "task %s: %s: %s; will look again", address[:10], type(exc).__name__, _short(exc)
                )
                self.log.debug("details", exc_info=True)
                finished = False
            done = done and finished
        return done and bool(self.tasks or self.skipped)

    def advance(self, task: Task, status: Status) -> bool:
        """Move the timed phase `status` on, its deadline passed (anybody may; the first call wins)."""
        try:
            task.advance(self.account)
        except ContractRevert:
            return False
        self.log.info(
            "task %s: %s deadline passed; advanced to %s", task.address[:10], status.name, task.status().name
        )
        return True

    def _discover(self) -> None:
        chain = self.registry.chain
        if self._cursor is None:
            task_abi = load_artifact("RefinerTask").abi
            registry_abi = load_artifact("RefinerRegistry").abi
            for item in [*task_abi, *registry_abi]:
                if item.get("type") == "event":
                    topic = event_abi_to_log_topic(item)  # type: ignore[arg-type]
                    self._topics[bytes(topic)] = item["name"]
            start = chain.w3.eth.block_number
            if self.only_task:
                self._follow(self.only_task)
            else:
                for address in self.registry.active_tasks():
                    self._follow(address)
            self._cursor = BlockCursor(chain, [self.registry.address, *self.tasks], start + 1)
        for entry in self._cursor.poll():
            name = self._topics.get(bytes(entry["topics"][0]), "?")
            source = str(entry["address"])
            if source == self.registry.address:
                if name == "TaskRegistered" and not self.only_task:
                    address = self.registry.contract.events.TaskRegistered().process_log(entry)["args"][
                        "task"
                    ]
                    if address not in self.tasks and address not in self.skipped:
                        self._follow(address)
                        self._cursor.add(address)
            elif source in self.tasks:
                self.log.debug("task %s: %s", source[:10], name)

    def _follow(self, address: str) -> None:
        self.tasks[address] = Task(self.registry.chain, address)
        self.log.info("following task %s", address)


def paid(wei: int) -> str:
    """An amount in a log line: ETH for people, the exact wei beside it."""
    return f"{ether(wei)} ({wei} wei)" if wei else "0 ETH"


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
