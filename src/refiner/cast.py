"""A cast of participants on one chain and store, built once for the simulation, the demo, `serve --demo`
and the tests: funded demo accounts, a registry, a requester, registered workers and validators."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from refiner.adversary import make_validator, make_worker
from refiner.chain import Chain, Registry, demo_account
from refiner.fl.data import Dataset
from refiner.fl.models import ModelFn
from refiner.roles.administrator import Administrator
from refiner.roles.requester import Requester
from refiner.roles.validator import Validator, ValidatorBehaviour
from refiner.roles.worker import Worker, WorkerBehaviour
from refiner.storage import Store
from refiner.units import ETH


@dataclass(frozen=True)
class Cast:
    admin: LocalAccount
    registry: Registry
    requester: Requester
    workers: list[Worker]
    validators: list[Validator]


def build_cast(
    chain: Chain,
    store: Store,
    shards: Sequence[Dataset],
    stakes: Sequence[int],
    *,
    label: str,
    worker_behaviours: Sequence[WorkerBehaviour] | None = None,
    validator_behaviours: Sequence[ValidatorBehaviour] | None = None,
    stake_unit: int = ETH // 10,
    funds: int = 10_000 * ETH,
    models: Mapping[str, ModelFn] | None = None,
    seed: int = 0,
) -> Cast:
    """Fund ``{label}-admin``, ``-requester``, ``-worker-i`` (one per shard) and ``-validator-i`` (one per
    stake) with `funds` each on a dev chain, deploy a registry (minimum stake: the smallest of
    `stakes`), register every worker, then every validator with its stake. Worker i trains with seed
    ``seed · 1000 + i``; behaviours default to honest."""
    models = dict(models or {})
    worker_behaviours = worker_behaviours or [WorkerBehaviour.HONEST] * len(shards)
    validator_behaviours = validator_behaviours or [ValidatorBehaviour.HONEST] * len(stakes)
    admin = demo_account(f"{label}-admin")
    requester_account = demo_account(f"{label}-requester")
    worker_accounts = [demo_account(f"{label}-worker-{i}") for i in range(len(shards))]
    validator_accounts = [demo_account(f"{label}-validator-{i}") for i in range(len(stakes))]
    for account in [admin, requester_account, *worker_accounts, *validator_accounts]:
        chain.fund(account.address, funds)
    registry = Administrator.deploy_registry(chain, admin, min_stake=min(stakes), stake_unit=stake_unit)
    requester = Requester(requester_account, chain, store, registry, models=models)
    workers = [
        make_worker(b, a, chain, store, registry, data=d, seed=seed * 1000 + i, models=models)
        for i, (a, d, b) in enumerate(zip(worker_accounts, shards, worker_behaviours, strict=True))
    ]
    validators = [
        make_validator(b, a, chain, store, registry, models=models)
        for a, b in zip(validator_accounts, validator_behaviours, strict=True)
    ]
    for w in workers:
        w.register()
    for v, stake in zip(validators, stakes, strict=True):
        v.register(stake)
    return Cast(admin, registry, requester, workers, validators)
