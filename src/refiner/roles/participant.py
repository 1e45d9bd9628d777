"""What every role has: an account, a chain, a store, the registry (the records they exchange are in
`refiner.wire`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount

from refiner.chain import Registry, Task
from refiner.chain.connection import Chain
from refiner.fl.models import ModelFn
from refiner.storage import Store


@dataclass
class Participant:
    account: LocalAccount
    chain: Chain
    store: Store
    registry: Registry
    #: This participant's own custom models, name -> factory (its configuration, never a task's words).
    models: Mapping[str, ModelFn] = field(default_factory=dict, kw_only=True)

    @property
    def address(self) -> str:
        return str(self.account.address)

    def task(self, address: str) -> Task:
        return Task(self.chain, address)
