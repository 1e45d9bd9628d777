"""The cast the simulation, the demo and `serve --demo` share, built on the real EVM."""

from pathlib import Path

from refiner.cast import build_cast
from refiner.chain import Chain, demo_account
from refiner.fl.data import synthetic_dataset
from refiner.roles import ValidatorBehaviour, WorkerBehaviour
from refiner.storage import DirectoryStore
from refiner.units import ETH


def test_a_cast_is_funded_registered_and_staked_as_asked(tmp_path: Path) -> None:
    chain = Chain.connect()
    shards = [synthetic_dataset(20, seed=i) for i in range(2)]
    stakes = [ETH, 2 * ETH, 3 * ETH // 2]
    cast = build_cast(
        chain,
        DirectoryStore(tmp_path / "store"),
        shards,
        stakes,
        label="cast",
        worker_behaviours=[WorkerBehaviour.HONEST, WorkerBehaviour.FREE_RIDER],
        validator_behaviours=[ValidatorBehaviour.HONEST] * 2 + [ValidatorBehaviour.COPYCAT],
        funds=50 * ETH,
        seed=3,
    )
    registry = cast.registry
    assert cast.admin.address == demo_account("cast-admin").address == registry.owner()
    assert [w.address for w in cast.workers] == [demo_account(f"cast-worker-{i}").address for i in range(2)]
    assert all(registry.is_worker(w.address) for w in cast.workers)
    assert [w.behaviour for w in cast.workers] == [WorkerBehaviour.HONEST, WorkerBehaviour.FREE_RIDER]
    assert [w.seed for w in cast.workers] == [3000, 3001]
    assert registry.min_stake() == ETH
    assert [registry.validator_info(v.address).stake for v in cast.validators] == stakes
    assert not cast.validators[2].evaluates and cast.validators[0].evaluates
    assert 49 * ETH < chain.w3.eth.get_balance(cast.requester.address) <= 50 * ETH
