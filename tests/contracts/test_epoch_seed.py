"""The requester cannot re-draw the committee (issue 13, part 7).

Reported: the seed was keccak256(blockhash(seedBlock), task address) and winners are public, so a
requester could stop and redeploy until colluders (30 % of stake) held a majority (14–19 tries). Now
every task that opens recruitment in registry epoch e draws with the seed of epoch e + 1,
keccak256(blockhash(first block of e + 1), registry, e + 1), and the stakes at the end of the block
before e + 1: redeploying within an epoch gives the identical committee, and a new draw costs an epoch."""

from __future__ import annotations

from dataclasses import replace

from eth_account.signers.local import LocalAccount

from refiner.chain import Registry, Task
from refiner.chain.accounts import vrf_key_for
from refiner.chain.committee import draw, wait_for_seed
from refiner.chain.registry import epoch_seed
from tests.helpers import FAST, STAKE, World, config, refused, seat

EPOCH = 64  # blocks: room for several redeploys (three transactions, three blocks each) in one epoch


def _registry(world: World) -> tuple[Registry, list[LocalAccount], list[LocalAccount]]:
    """A registry with 64-block epochs and ten validators of 1..10 units (55); the colluders, the three
    of 5, 6 and 7 units, hold 18 of 55 (33 %)."""
    registry = Registry.deploy(
        world.chain, world.admin, min_stake=10**15, unbonding_delay=500, stake_unit=STAKE, epoch_length=EPOCH
    )
    validators = [*world.validators, *world.fresh]
    for i, v in enumerate(validators):
        registry.register_validator(v, (i + 1) * STAKE)
    return registry, validators, validators[4:7]


def _open(world: World, registry: Registry) -> Task:
    """What a grinding requester repeats: deploy a task (τ = 8), list it, open recruitment."""
    task = Task.deploy(
        world.chain,
        world.requester,
        registry.address,
        config(committee_size=8, durations=replace(FAST, recruitment=3600)),
    )
    registry.register_task(world.requester, task.address)
    task.open_recruitment(world.requester)
    return task


def _committee(
    world: World, registry: Registry, task: Task, validators: list[LocalAccount]
) -> dict[str, int]:
    for v in validators:
        ticket = draw(task, registry, v.address, vrf_key_for(v))
        if ticket.seats:
            task.claim_seat(v, ticket.proof, ticket.seats)
    task.close_recruitment(world.requester)
    return task.committee()


def _colluders_hold_a_majority(committee: dict[str, int], colluders: list[LocalAccount]) -> bool:
    theirs = sum(committee.get(c.address, 0) for c in colluders)
    return 2 * theirs > sum(committee.values())


def test_redeploying_within_an_epoch_draws_the_identical_committee(world: World) -> None:
    """A requester that redeploys K = 5 times in one epoch always gets the same committee (members and
    weights): grinding gains nothing. Tasks of the next epochs get independent draws."""
    registry, validators, colluders = _registry(world)
    head = world.chain.w3.eth.block_number
    world.chain.mine(EPOCH - head % EPOCH)  # start at an epoch's first block
    tries = [_open(world, registry) for _ in range(5)]
    assert len({t.seed_epoch() for t in tries}) == 1
    committees = [_committee(world, registry, t, validators) for t in tries]
    seeds = {t.sortition_seed() for t in tries}
    assert len(seeds) == 1
    assert all(c == committees[0] for c in committees), committees
    majority = {_colluders_hold_a_majority(c, colluders) for c in committees}
    assert len(majority) == 1  # whatever the colluders got, every retry gives them exactly that

    later = []  # after seeing the committee the requester stops and redeploys: the next epoch's draw
    for _ in range(3):
        task = _open(world, registry)
        assert task.seed_epoch() > tries[0].seed_epoch()
        later.append(
            (task.seed_epoch(), _committee(world, registry, task, validators), task.sortition_seed())
        )
    assert len({epoch for epoch, _, _ in later}) == 3  # one new draw per epoch waited, not per redeploy
    assert len({seed for _, _, seed in later} | seeds) == 4
    assert any(c != committees[0] for _, c, _ in later)  # independent draws (P(all equal) ≈ 1e-4)


def test_the_epoch_seed_is_fixed_once_by_anybody_and_only_after_its_block(world: World) -> None:
    reg = world.registry
    length = reg.epoch_length()
    epoch = world.chain.w3.eth.block_number // length + 1
    with refused("EpochSeedNotReady", epoch=epoch, seedBlock=epoch * length):
        reg.fix_epoch_seed(world.outsider, epoch)
    world.chain.mine(epoch * length + 1 - world.chain.w3.eth.block_number)
    fixed = reg.fix_epoch_seed(world.outsider, epoch)
    block_hash = bytes(world.chain.w3.eth.get_block(epoch * length)["hash"])
    expected = epoch_seed(block_hash, reg.address, epoch)
    assert fixed.event("EpochSeedFixed").args == {"epoch": epoch, "seed": expected}
    assert reg.epoch_seed(epoch) == expected
    world.chain.mine(300)
    assert reg.fix_epoch_seed(world.workers[0], epoch).names() == []  # fixed for good, even aged
    assert reg.epoch_seed(epoch) == expected
    # an epoch whose block hash aged out unfixed has no seed, now or later
    old = epoch + 1
    assert world.chain.w3.eth.block_number - old * length > 256
    assert reg.fix_epoch_seed(world.outsider, old).names() == []
    assert reg.epoch_seed(old) == 0


def test_a_task_gets_its_epochs_seed_fixed_by_another_task_even_after_the_hash_aged(world: World) -> None:
    """Two tasks of one epoch: the first claim of either fixes the epoch seed in the registry; the other,
    whose own seed was never fixed, takes that seed 300 blocks later instead of moving to a new epoch."""
    a = new = None
    for _ in range(3):  # both must open in the same epoch (three blocks apart)
        a = _open_listed(world)
        new = _open_listed(world)
        if a.seed_epoch() == new.seed_epoch():
            break
    assert a is not None and new is not None and a.seed_epoch() == new.seed_epoch()
    seat(world, a, world.validators[0])
    world.chain.mine(300)
    assert new.sortition_seed() == a.sortition_seed()
    result = new.fix_seed(world.outsider)
    assert result.names() == ["SeedFixed"] and result.event("SeedFixed")["seed"] == a.sortition_seed()
    seat(world, new, world.validators[1])
    assert new.committee() == {world.validators[1].address: 1}


def _open_listed(world: World) -> Task:
    task = Task.deploy(
        world.chain,
        world.requester,
        world.registry.address,
        config(durations=replace(FAST, recruitment=3600)),
    )
    world.registry.register_task(world.requester, task.address)
    task.open_recruitment(world.requester)
    return task


def test_a_seed_not_fixed_in_time_moves_the_task_to_a_later_epoch(world: World) -> None:
    task = _open_listed(world)
    wait_for_seed(task)
    world.chain.mine(300)
    old = task.seed_epoch()
    moved = task.fix_seed(world.outsider)
    assert (
        moved.names() == ["SeedScheduled"] and task.seed_epoch() > old + 300 // world.registry.epoch_length()
    )
    seat(world, task, world.validators[0])
    assert world.registry.epoch_seed(task.seed_epoch()) == task.sortition_seed()
