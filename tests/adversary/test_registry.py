"""Every behaviour has its class, honest roles carry no attack, and a member can change behaviour."""

from pathlib import Path

import pytest

from refiner.adversary import VALIDATORS, WORKERS, make_validator, make_worker, with_behaviour
from refiner.chain import Chain, Registry, demo_account
from refiner.fl.data import synthetic_dataset
from refiner.roles import Validator, ValidatorBehaviour, Worker, WorkerBehaviour
from refiner.storage import DirectoryStore


def test_every_behaviour_has_a_class_that_says_what_it_is() -> None:
    assert set(WORKERS) == set(WorkerBehaviour) and set(VALIDATORS) == set(ValidatorBehaviour)
    assert all(cls.behaviour is b for b, cls in WORKERS.items())
    assert all(cls.behaviour is b for b, cls in VALIDATORS.items())
    assert WORKERS[WorkerBehaviour.HONEST] is Worker and VALIDATORS[ValidatorBehaviour.HONEST] is Validator


def test_the_honest_roles_take_no_behaviour_and_adversaries_are_built_by_name(tmp_path: Path) -> None:
    chain, store = Chain.connect(), DirectoryStore(tmp_path / "store")
    registry = Registry(chain, "0x" + "00" * 20)
    account = demo_account("adversary-registry")
    with pytest.raises(TypeError):
        Validator(account, chain, store, registry, behaviour=ValidatorBehaviour.COPYCAT)  # type: ignore[call-arg]
    copycat = make_validator(ValidatorBehaviour.COPYCAT, account, chain, store, registry)
    assert not copycat.evaluates and not copycat.reveals
    honest_again = with_behaviour(copycat, ValidatorBehaviour.HONEST)
    assert type(honest_again) is Validator and honest_again.account is account
    data = synthetic_dataset(10, seed=0)
    inflator = make_worker(WorkerBehaviour.INFLATED_SAMPLES, account, chain, store, registry, data=data)
    assert (
        inflator.claimed_samples() == 10 * len(data)
        and Worker(account, chain, store, registry, data=data).claimed_samples() == 10
    )
