"""Auto mode: the hosted participants run as agents in a background thread (the panels update live)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from refiner.agents import Agent, RequesterAgent, ValidatorAgent, WorkerAgent
from refiner.fl.inference import use_one_thread
from refiner.protocol import Role, Step, why_not
from refiner.web import services
from refiner.web.host import Host

log = logging.getLogger("refiner.web.auto")


class AutoPilot:
    """Ticks every hosted participant's agent in turn until stopped. The second worker trains on its
    shuffled-label data, as in the paper's demo."""

    def __init__(self, host: Host, interval: float = 0.3) -> None:
        self.host, self.interval = host, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seatless: set[str] = set()
        registry = host.registry
        workers = list(host.workers.values())
        self.agents: list[Agent] = []
        for i, worker in enumerate(workers):
            data = host.bad_data[worker.address] if i == 1 else worker.data
            role = replace(worker, data=data)
            self.agents.append(WorkerAgent(worker.account, registry, poll_interval=0, worker=role, log=log))
        self.validator_agents = [
            ValidatorAgent(v.account, registry, poll_interval=0, validator=v, log=log)
            for v in host.validators.values()
        ]
        self.agents += self.validator_agents
        self.agents += [
            RequesterAgent(
                r.account, registry, poll_interval=0, requester=r, validation=host.validation, log=log
            )
            for r in host.requester.values()
        ]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="refiner-auto", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _loop(self) -> None:
        use_one_thread()
        while not self._stop.is_set():
            for agent in self.agents:
                if self._stop.is_set():
                    return
                try:
                    agent.tick()
                except Exception as exc:  # one participant's trouble must not stop the others
                    log.warning("%s: %s: %s", agent.address[:10], type(exc).__name__, exc)
            try:
                self._close_recruitment_when_everyone_acted()
            except Exception as exc:  # nor may it stop auto mode: look again next time
                log.warning("closing recruitment: %s: %s", type(exc).__name__, exc)
            try:
                for address in self.host.registered_tasks():
                    task = self.host.known_task(address)
                    if task.current_round():
                        services.score_initial_model(self.host, task)
                    services.score_latest_consensus(self.host, task)
            except Exception as exc:
                log.warning("scoring a consensus model: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.interval)

    def _close_recruitment_when_everyone_acted(self) -> None:
        """On the demo's chain: mine the seed block, and close recruitment once every hosted worker signed
        up (or the task is full) and every hosted validator has drawn its sortition."""
        for address in self.host.registered_tasks():
            task = self.host.known_task(address)
            requester = self.host.requester.get(task.requester())
            if requester is None:  # not a hosted requester's task
                continue
            if why_not(task, requester.address, Role.REQUESTER, Step.CLOSE_RECRUITMENT) is not None:
                continue
            if self.host.chain.manual_clock and task.sortition_seed() is None:
                self.host.chain.mine(1)
                continue
            workers, cfg = task.workers(), task.config()
            full = len(workers) >= cfg.max_workers or all(w in workers for w in self.host.workers)
            committee = task.committee()
            drawn = all(
                a.address in committee or task.address in a.not_selected for a in self.validator_agents
            )
            if full and drawn and committee:
                requester.close_recruitment(task)
            elif drawn and not committee and address not in self._seatless:
                self._seatless.add(address)
                log.warning(
                    "task %s: no hosted validator won a committee seat, so no round can start; stop it "
                    "(manual mode) and create one with a larger committee",
                    address[:10],
                )
