"""Auto mode: the hosted participants run as agents in a background thread (the panels update live, the
activity feed says what they did and, on a participant's own server, what each waits for)."""

from __future__ import annotations

import threading
from dataclasses import replace

from refiner.agents import Agent, RequesterAgent, ValidatorAgent, WorkerAgent
from refiner.fl.inference import use_one_thread
from refiner.protocol import Role, Step, waiting_for, why_not
from refiner.web import services
from refiner.web.host import Host


class AutoPilot:
    """Ticks every hosted participant's agent in turn until stopped: the same agents as `refiner worker
    run`, `validator run` and `requester run`, with the host's options. In the demo the second worker
    trains on its shuffled-label data, as in the paper's demo."""

    def __init__(self, host: Host, interval: float = 0.3) -> None:
        self.host, self.interval = host, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seatless: set[str] = set()
        self._prepared: set[str] = set()
        #: What each agent was last said to wait for, per task (a line only when it changes).
        self._waiting: dict[tuple[str, str], str] = {}
        self.log = log = host.activity.logger("refiner.web.auto")
        registry, o = host.registry, host.options
        self.agents: list[Agent] = []
        for i, worker in enumerate(host.workers.values()):
            data = host.bad_data[worker.address] if host.demo and i == 1 else worker.data
            self.agents.append(
                WorkerAgent(
                    worker.account,
                    registry,
                    only_task=o.only_task,
                    poll_interval=0,
                    log=log,
                    worker=replace(worker, data=data),
                    terms=o.terms,
                )
            )
        self.validator_agents = [
            ValidatorAgent(
                v.account,
                registry,
                only_task=o.only_task,
                poll_interval=0,
                log=log,
                validator=v,
                stake=o.stake,
                terms=o.terms,
            )
            for v in host.validators.values()
        ]
        self.agents += self.validator_agents
        self.agents += [
            RequesterAgent(
                r.account,
                registry,
                only_task=o.only_task,
                poll_interval=0,
                log=log,
                requester=r,
                validation=host.validation,
                min_workers=o.min_workers,
                min_seats=o.min_seats,
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
        was = self.running
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        if was:
            self.log.info("auto mode off: act by hand")

    def _loop(self) -> None:
        use_one_thread()
        log = self.log
        log.info("auto mode on: the agents act")
        while not self._stop.is_set():
            for agent in self.agents:
                if self._stop.is_set():
                    return
                try:
                    if agent.address not in self._prepared:
                        agent.prepare()  # registers if needed, once
                        self._prepared.add(agent.address)
                    agent.tick()
                    if not self.host.demo:
                        self._say_what_it_waits_for(agent)
                except Exception as exc:  # one participant's trouble must not stop the others
                    log.warning("%s: %s: %s", agent.address[:10], type(exc).__name__, exc)
            try:
                if self.host.demo:
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

    def _say_what_it_waits_for(self, agent: Agent) -> None:
        """One line per task whenever what `agent` waits for there changes (its phase, not the seconds)."""
        for address, task in agent.tasks.items():
            if agent.due(task):
                continue
            text = waiting_for(task)
            phase = text.split(" (")[0]
            if self._waiting.get((agent.address, address)) != phase:
                self._waiting[(agent.address, address)] = phase
                self.log.info("task %s: %s", address[:10], text)

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
                self.log.warning(
                    "task %s: no hosted validator won a committee seat, so no round can start; stop it "
                    "(manual mode) and create one with a larger committee",
                    address[:10],
                )
