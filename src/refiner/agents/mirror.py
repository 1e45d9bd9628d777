"""A storage mirror: fetches and keeps every file the tasks announce on chain.

With IPFS a file lives only on the nodes that hold it. Participants connect to a hub node; the mirror,
running there, fetches each handle as soon as an event announces it, so a requester that dies right
after `startRound`, or a worker that goes offline after submitting, leaves its files reachable. It
sends no transactions.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from refiner.agents.base import Agent
from refiner.chain import Manifest, Status, Task
from refiner.storage import Handle, InvalidHandle, NotFound, StorageError, Store, transient
from refiner.wire.details import MAX_DETAILS, ManifestDetails, ProtocolError, open_details

#: Largest file the mirror keeps (models and validation sets are far smaller).
MAX_FILE = 512 << 20


@dataclass
class MirrorAgent(Agent):
    store: Store | None = None
    kept: set[Handle] = field(default_factory=set)
    #: Announced files that can never be kept (malformed handle, too large, bad details), with why.
    refused: dict[str, str] = field(default_factory=dict)
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
                ok &= self._keep_details(manifest.details_handle, bytes(e["salt"]))
            if ok and finalized:
                complete.add(round_)
        return status is Status.TERMINATED and complete >= set(range(1, task.current_round() + 1))

    def _keep(self, raw: bytes, max_size: int = MAX_FILE) -> bool:
        """Fetch and keep one announced file: True once it is kept or can never be (then logged once)."""
        with contextlib.suppress(InvalidHandle):
            if Handle.from_bytes(bytes(raw)) in self.kept:
                return True
        return self._fetch(raw, max_size) is not None or bytes(raw).hex() in self.refused

    def _keep_details(self, raw: bytes, salt: bytes) -> bool:
        """Keep a manifest's details and the aggregate's key envelope they name (read with the revealed
        salt they are sealed under)."""
        details = self._fetch(raw, MAX_DETAILS)
        if details is None:
            return bytes(raw).hex() in self.refused
        try:
            keys = bytes(
                Handle.parse(ManifestDetails.from_bytes(open_details(details, salt)).aggregate_keys_handle)
            )
        except (ProtocolError, StorageError, TypeError) as exc:
            return self._refuse(bytes(raw), f"its manifest details name no key envelope: {exc}")
        return self._keep(keys)

    def _fetch(self, raw: bytes, max_size: int) -> bytes | None:
        """The file under ``raw``, or None: not reachable yet (try again), or refused for good."""
        assert self.store is not None
        raw = bytes(raw)
        if raw.hex() in self.refused:
            return None
        try:
            handle = Handle.from_bytes(raw)
            data = self.store.get(handle, max_size=max_size)
        except StorageError as exc:
            if not transient(exc):
                self._refuse(raw, str(exc))
            elif isinstance(exc, NotFound):
                self.log.info("%s not reachable yet", handle)
            else:  # e.g. corrupt or tampered where it is kept: the honest copy may come
                self.log.warning("cannot keep %s yet: %s", handle, exc)
            return None
        if handle not in self.kept:
            self.kept.add(handle)
            self.log.info("keeping %s (%d bytes)", handle, len(data))
        return data

    def _refuse(self, raw: bytes, why: str) -> bool:
        if raw.hex() not in self.refused:
            self.refused[raw.hex()] = why
            self.log.warning("skipping announced file 0x%s: %s", raw.hex(), why)
        return True
