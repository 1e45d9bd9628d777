"""A storage mirror: fetches and keeps every file the tasks announce on chain.

With IPFS a file lives only on the nodes that hold it. Participants connect to a hub node; the mirror,
running there, fetches each handle as soon as an event announces it, so a requester that dies right
after `startRound`, or a worker that goes offline after submitting, leaves its files reachable. It
sends no transactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from refiner.agents.base import Agent
from refiner.chain import Manifest, Status, Task
from refiner.roles.details import MAX_DETAILS, ManifestDetails, ProtocolError, open_details
from refiner.storage import Handle, NotFound, Store

#: Largest file the mirror keeps (models and validation sets are far smaller).
MAX_FILE = 512 << 20


@dataclass
class MirrorAgent(Agent):
    store: Store | None = None
    kept: set[Handle] = field(default_factory=set)
    #: Rounds (per task) settled with every announced file kept: not looked at again.
    complete: dict[str, set[int]] = field(default_factory=dict)

    def prepare(self) -> None:
        pass

    def act(self, task: Task) -> bool:
        status = task.status()
        complete = self.complete.setdefault(task.address, set())
        for round_ in range(1, task.current_round() + 1):
            if round_ in complete:
                continue
            finalized = task.round_info(round_).finalized  # read first: later events are then seen below
            ok = True
            for e in task.round_events("RoundStarted", round_):
                for name in ("modelHandle", "modelKeysHandle", "validationHandle", "validationKeysHandle"):
                    ok &= self._keep(e[name])
            for e in task.round_events("TrainingResultsSubmitted", round_):
                ok &= self._keep(e["modelHandle"]) & self._keep(e["keysHandle"])
            for e in task.round_events("ManifestRevealed", round_):
                manifest = Manifest.from_tuple(e["manifest"])
                ok &= self._keep(manifest.aggregate_handle)
                details = self._fetch(Handle.from_bytes(manifest.details_handle), MAX_DETAILS)
                ok &= details is not None
                if details is not None:
                    try:
                        opened = ManifestDetails.from_bytes(open_details(details, bytes(e["salt"])))
                    except ProtocolError as exc:  # spoiled by its validator: nothing more it names to keep
                        self.log.info("%s's details of round %d: %s", e["validator"], round_, exc)
                        continue
                    ok &= self._keep(bytes(Handle.parse(opened.aggregate_keys_handle)))
            if ok and finalized:
                complete.add(round_)
        return status is Status.TERMINATED and complete >= set(range(1, task.current_round() + 1))

    def _keep(self, raw: bytes) -> bool:
        handle = Handle.from_bytes(bytes(raw))
        return handle in self.kept or self._fetch(handle, MAX_FILE) is not None

    def _fetch(self, handle: Handle, max_size: int) -> bytes | None:
        assert self.store is not None
        try:
            data = self.store.get(handle, max_size=max_size)
        except NotFound:
            self.log.info("%s not reachable yet", handle)
            return None
        if handle not in self.kept:
            self.kept.add(handle)
            self.log.info("keeping %s (%d bytes)", handle, len(data))
        return data
