"""Every rule and refusal of RefinerRegistry, on the real EVM: roles and keys, stake, committee seats,
task listing and the active-task list."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from refiner.chain import ContractRevert, Registry, Task, TxResult, public_key_bytes
from refiner.chain.accounts import vrf_key_for
from refiner.chain.committee import draw, wait_for_seed
from refiner.chain.contract import Event
from refiner.chain.registry import DEFAULT_SEAT_LOCK, task_codehash
from refiner.chain.types import MAX_DURATION, Durations, ValidatorInfo
from refiner.sortition import VrfKey, prove
from refiner.units import ETH
from tests.helpers import STAKE, World, config, new_task, play_round, refused
from tests.helpers import seat as claim_seat

MIN_STAKE = 10**15
DELAY = 500


# ---------------------------------------------------------------------- helpers


def registry_events(world: World, result: TxResult) -> list[Event]:
    """The registry's events in a transaction sent to another contract (a task)."""
    return world.registry.decode_events(result.receipt)


def only(events: list[Event], name: str) -> Event:
    found = [e for e in events if e.name == name]
    assert len(found) == 1, [e.name for e in events]
    return found[0]


def balance(world: World, address: str) -> int:
    return int(world.chain.w3.eth.get_balance(world.chain.w3.to_checksum_address(address)))


def fee(result: TxResult) -> int:
    return int(result.receipt["gasUsed"]) * int(result.receipt["effectiveGasPrice"])


def block_time(world: World, result: TxResult) -> int:
    return int(world.chain.w3.eth.get_block(result.receipt["blockNumber"])["timestamp"])


def call_direct(world: World, sender: LocalAccount, function: str, *args: Any, value: int = 0) -> TxResult:
    receipt = world.chain.transact(sender, world.registry.contract.functions[function](*args), value=value)
    return TxResult(
        receipt["transactionHash"].hex(), receipt["gasUsed"], world.registry.decode_events(receipt), receipt
    )


def register_with_vrf_key(world: World, account: LocalAccount, vrf_key: tuple[int, int]) -> TxResult:
    """registerValidator claiming any VRF public key, with a possession proof made under another key
    (the typed layer proves with the key it is given)."""
    proof = prove(VrfKey.from_seed_bytes(b"somebody"), world.registry.possession_seed(account.address))
    return call_direct(
        world,
        account,
        "registerValidator",
        public_key_bytes(account),
        replace(proof, pk=vrf_key).as_tuple(),
        value=STAKE,
    )


def approved(registry: Registry, codehash: bytes) -> bool:
    return bool(registry.contract.functions.approvedTaskCode(codehash).call())


def seat(world: World, task: Task, validators: list[LocalAccount]) -> list[TxResult]:
    """Open recruitment on a listed task and seat `validators` on its committee."""
    task.open_recruitment(world.requester)
    return [claim_seat(world, task, v) for v in validators]


def travel_to(world: World, timestamp: int) -> None:
    """Move the clock so the latest block is at `timestamp` (the next block comes after it)."""
    world.chain.increase_time(timestamp - world.chain.now())


# ---------------------------------------------------------------------- deployment


def test_deployment_sets_parameters_and_approves_task_code(world: World) -> None:
    reg = world.registry
    assert reg.owner() == world.admin.address
    assert reg.min_stake() == MIN_STAKE
    assert reg.unbonding_delay() == DELAY
    assert reg.stake_unit() == STAKE
    assert reg.max_seat_lock() == DEFAULT_SEAT_LOCK
    assert approved(reg, task_codehash())
    sortition = reg.sortition().address
    assert len(world.chain.w3.eth.get_code(sortition)) > 1000  # a RefinerSortition was deployed with it
    other = Registry.deploy(world.chain, world.admin, min_stake=7, unbonding_delay=9)
    approvals = other.get_events("TaskCodeApproval")
    assert [(e["codehash"], e["approved"]) for e in approvals] == [(task_codehash(), True)]
    assert (other.min_stake(), other.unbonding_delay()) == (7, 9)
    assert other.stake_unit() == 7  # one unit of weight per minimum stake by default
    assert other.sortition().address != sortition  # each registry gets its own unless told
    shared = Registry.deploy(world.chain, world.admin, stake_unit=3, sortition=sortition)
    assert (shared.stake_unit(), shared.sortition().address) == (3, sortition)
    assert Registry.deploy(world.chain, world.admin, max_seat_lock=60).max_seat_lock() == 60


def test_stake_unit_of_zero_is_refused(world: World) -> None:
    with refused("InvalidStakeUnit"):
        Registry.deploy(world.chain, world.admin, min_stake=MIN_STAKE, stake_unit=0)


def test_task_runtime_code_is_what_the_registry_approves(world: World) -> None:
    """RefinerTask has no immutables, so every deployed task has the one approved codehash."""
    task = new_task(world, register=False)
    assert keccak(bytes(world.chain.w3.eth.get_code(task.address))) == task_codehash()


# ---------------------------------------------------------------------- registration


def test_register_worker_stores_its_own_public_key(world: World) -> None:
    account = world.fresh[0]
    key = public_key_bytes(account)
    result = world.registry.register_worker(account)
    assert result.names() == ["WorkerRegistered"]
    assert result.event("WorkerRegistered").args == {"worker": account.address, "publicKey": key}
    assert world.registry.is_worker(account.address)
    assert not world.registry.is_validator(account.address)
    assert world.registry.worker_key(account.address) == key
    assert world.registry.validator_key(account.address) == b""
    assert world.registry.vrf_key(account.address) == (0, 0)
    assert world.registry.validator_info(account.address) == ValidatorInfo(0, 0, 0, 0, False)


def test_register_validator_stores_key_and_bonds_stake(world: World) -> None:
    account = world.fresh[0]
    key = public_key_bytes(account)
    stake = 3 * MIN_STAKE
    before, reg_before = balance(world, account.address), balance(world, world.registry.address)
    result = world.registry.register_validator(account, stake)
    assert result.names() == ["ValidatorRegistered"]
    vrf = vrf_key_for(account).public_key
    assert result.event("ValidatorRegistered").args == {
        "validator": account.address,
        "publicKey": key,
        "vrfKey": list(vrf),
        "stake": stake,
    }
    assert world.registry.is_validator(account.address)
    assert not world.registry.is_worker(account.address)
    assert world.registry.validator_key(account.address) == key
    assert world.registry.vrf_key(account.address) == vrf
    assert world.registry.worker_key(account.address) == b""
    assert world.registry.validator_info(account.address) == ValidatorInfo(stake, 0, 0, 0, True)
    assert balance(world, account.address) == before - stake - fee(result)
    assert balance(world, world.registry.address) == reg_before + stake


def test_register_validator_with_exactly_min_stake(world: World) -> None:
    world.registry.register_validator(world.fresh[0], MIN_STAKE)
    assert world.registry.validator_info(world.fresh[0].address).stake == MIN_STAKE


@pytest.mark.parametrize("stake", [0, 1, MIN_STAKE - 1])
def test_validator_stake_below_minimum_is_refused(world: World, stake: int) -> None:
    account = world.fresh[0]
    with refused("StakeTooLow", stake=stake, minimum=MIN_STAKE):
        world.registry.register_validator(account, stake)
    assert not world.registry.is_validator(account.address)


def _register(world: World, role: str, account: LocalAccount, key: bytes | None = None) -> TxResult:
    if role == "worker":
        return world.registry.register_worker(account, key)
    return world.registry.register_validator(account, STAKE, public_key=key)


@pytest.mark.parametrize("role", ["worker", "validator"])
@pytest.mark.parametrize("length", [0, 33, 63, 65, 128])
def test_public_key_of_wrong_length_is_refused(world: World, role: str, length: int) -> None:
    account = world.fresh[0]
    good = public_key_bytes(account)
    # 65 bytes: the uncompressed SEC1 form with its 0x04 prefix, a likely mistake
    key = b"\x04" + good if length == 65 else (good * 2)[:length]
    with refused("InvalidPublicKey", length=length):
        _register(world, role, account, key)
    assert not world.registry.is_worker(account.address)
    assert not world.registry.is_validator(account.address)


@pytest.mark.parametrize("role", ["worker", "validator"])
def test_public_key_of_another_account_is_refused(world: World, role: str) -> None:
    account, other = world.fresh[0], world.fresh[1]
    with refused("PublicKeyNotOfSender", keyAddress=other.address, sender=account.address):
        _register(world, role, account, public_key_bytes(other))
    # a key that is not on the curve hashes to some unrelated address: refused the same way
    with refused("PublicKeyNotOfSender", sender=account.address):
        _register(world, role, account, b"\x01" * 64)


@pytest.mark.parametrize(
    ("first", "second"),
    [("worker", "worker"), ("validator", "validator"), ("worker", "validator"), ("validator", "worker")],
)
def test_an_account_holds_one_role_once(world: World, first: str, second: str) -> None:
    account = world.fresh[0]
    _register(world, first, account)
    with refused("AlreadyRegistered", account=account.address):
        _register(world, second, account)
    assert world.registry.is_worker(account.address) == (first == "worker")
    assert world.registry.is_validator(account.address) == (first == "validator")


def test_world_participants_cannot_switch_roles(world: World) -> None:
    with refused("AlreadyRegistered", account=world.workers[0].address):
        world.registry.register_validator(world.workers[0], STAKE)
    with refused("AlreadyRegistered", account=world.validators[0].address):
        world.registry.register_worker(world.validators[0])


# ---------------------------------------------------------------------- VRF keys


def test_a_validator_registers_a_vrf_key_of_its_choice(world: World) -> None:
    account, key = world.fresh[0], VrfKey.from_seed_bytes(b"kept in its own keystore")
    result = world.registry.register_validator(account, STAKE, vrf_key=key)
    assert result.event("ValidatorRegistered")["vrfKey"] == list(key.public_key)
    assert world.registry.vrf_key(account.address) == key.public_key
    # each world validator has the key derived from its account key, all distinct
    keys = [world.registry.vrf_key(v.address) for v in world.validators]
    assert keys == [vrf_key_for(v).public_key for v in world.validators]
    assert len(set(keys)) == len(keys)


def test_zero_vrf_key_is_refused(world: World) -> None:
    account = world.fresh[0]
    with refused("InvalidVrfKey"):
        register_with_vrf_key(world, account, (0, 0))
    assert not world.registry.is_validator(account.address)


def test_a_vrf_key_needs_a_proof_of_possession(world: World) -> None:
    """Nobody can register a VRF key it cannot prove with (squatting another validator's key, or a key
    that could never win a seat), nor replay another account's registration proof."""
    account, victim_key = world.fresh[0], VrfKey.from_seed_bytes(b"victim")
    with pytest.raises(ContractRevert) as exc:
        register_with_vrf_key(world, account, victim_key.public_key)
    assert exc.value.error == "Error"  # Chainlink VRF.sol's refusal, e.g. a failed witness check
    replayed = prove(victim_key, world.registry.possession_seed(world.fresh[1].address))
    with pytest.raises(ContractRevert) as exc:
        call_direct(
            world, account, "registerValidator", public_key_bytes(account), replayed.as_tuple(), value=STAKE
        )
    assert exc.value.error == "Error"
    assert not world.registry.is_validator(account.address)
    world.registry.register_validator(account, STAKE, vrf_key=victim_key)  # its holder can
    assert world.registry.vrf_key(account.address) == victim_key.public_key


def test_a_vrf_key_is_used_by_one_validator_only(world: World) -> None:
    holder = world.validators[0]
    taken = vrf_key_for(holder)
    with refused("VrfKeyTaken", owner=holder.address):
        world.registry.register_validator(world.fresh[0], STAKE, vrf_key=taken)
    # a key taken by a newly registered validator, too
    own = VrfKey.from_seed_bytes(b"fresh-1")
    world.registry.register_validator(world.fresh[1], STAKE, vrf_key=own)
    with refused("VrfKeyTaken", owner=world.fresh[1].address):
        world.registry.register_validator(world.fresh[2], STAKE, vrf_key=own)
    assert not world.registry.is_validator(world.fresh[0].address)
    assert not world.registry.is_validator(world.fresh[2].address)
    # the refused account is free to register with a key of its own
    world.registry.register_validator(world.fresh[0], STAKE)
    assert world.registry.vrf_key(world.fresh[0].address) == vrf_key_for(world.fresh[0]).public_key


# ---------------------------------------------------------------------- stake


def test_bond_adds_to_stake(world: World) -> None:
    v = world.validators[0]
    result = world.registry.bond(v, 5 * MIN_STAKE)
    assert result.event("StakeBonded").args == {
        "validator": v.address,
        "amount": 5 * MIN_STAKE,
        "totalStake": STAKE + 5 * MIN_STAKE,
    }
    assert world.registry.validator_info(v.address).stake == STAKE + 5 * MIN_STAKE


def test_bond_of_zero_is_refused(world: World) -> None:
    with refused("ZeroAmount"):
        world.registry.bond(world.validators[0], 0)


@pytest.mark.parametrize("who", ["worker", "fresh", "requester"])
@pytest.mark.parametrize("action", ["bond", "requestUnbond", "withdrawStake"])
def test_only_validators_manage_stake(world: World, who: str, action: str) -> None:
    account = {"worker": world.workers[0], "fresh": world.fresh[0], "requester": world.requester}[who]
    with refused("NotValidator", account=account.address):
        if action == "bond":
            world.registry.bond(account, MIN_STAKE)
        elif action == "requestUnbond":
            world.registry.request_unbond(account, MIN_STAKE)
        else:
            world.registry.withdraw_stake(account)


def test_request_unbond_moves_stake_to_unbonding(world: World) -> None:
    v = world.validators[0]
    result = world.registry.request_unbond(v, STAKE // 4)
    unlocks = block_time(world, result) + DELAY
    assert result.event("UnbondingRequested").args == {
        "validator": v.address,
        "amount": STAKE // 4,
        "unlocksAt": unlocks,
    }
    assert world.registry.validator_info(v.address) == ValidatorInfo(
        STAKE - STAKE // 4, STAKE // 4, unlocks, 0, True
    )


def test_a_new_unbond_request_adds_up_and_restarts_the_delay(world: World) -> None:
    v = world.validators[0]
    first = world.registry.request_unbond(v, 100)
    world.chain.increase_time(DELAY - 50)
    second = world.registry.request_unbond(v, 200)
    unlocks = block_time(world, second) + DELAY
    assert unlocks > block_time(world, first) + DELAY
    assert second.event("UnbondingRequested")["unlocksAt"] == unlocks
    info = world.registry.validator_info(v.address)
    assert (info.stake, info.unbonding, info.unbonding_ends) == (STAKE - 300, 300, unlocks)
    # the first request's delay is over, but the restarted one is not
    travel_to(world, block_time(world, first) + DELAY + 10)
    with refused("UnbondingNotOver", unlocksAt=unlocks):
        world.registry.withdraw_stake(v)


def test_request_unbond_of_zero_is_refused(world: World) -> None:
    with refused("ZeroAmount"):
        world.registry.request_unbond(world.validators[0], 0)


def test_request_unbond_above_stake_is_refused(world: World) -> None:
    v = world.validators[0]
    with refused("AmountExceedsStake", amount=STAKE + 1, stake=STAKE):
        world.registry.request_unbond(v, STAKE + 1)
    world.registry.request_unbond(v, STAKE // 2)
    # what is already unbonding no longer counts as stake
    with refused("AmountExceedsStake", amount=STAKE // 2 + 1, stake=STAKE // 2):
        world.registry.request_unbond(v, STAKE // 2 + 1)
    world.registry.request_unbond(v, STAKE // 2)  # the whole rest is allowed
    assert world.registry.validator_info(v.address).stake == 0
    assert world.registry.is_validator(v.address)  # still registered, just without stake


def test_withdraw_with_nothing_unbonding_is_refused(world: World) -> None:
    with refused("NothingUnbonding"):
        world.registry.withdraw_stake(world.validators[0])


def test_withdraw_before_the_delay_is_refused(world: World) -> None:
    v = world.validators[0]
    unlocks = block_time(world, world.registry.request_unbond(v, STAKE // 2)) + DELAY
    with refused("UnbondingNotOver", unlocksAt=unlocks):
        world.registry.withdraw_stake(v)
    travel_to(world, unlocks - 2)  # the next block is still before the unlock time
    with refused("UnbondingNotOver", unlocksAt=unlocks):
        world.registry.withdraw_stake(v)


def test_withdraw_after_the_delay_pays_back_exactly(world: World) -> None:
    v = world.validators[0]
    amount = STAKE // 3
    request = world.registry.request_unbond(v, amount)
    unlocks = block_time(world, request) + DELAY
    travel_to(world, unlocks)
    before, reg_before = balance(world, v.address), balance(world, world.registry.address)
    result = world.registry.withdraw_stake(v)
    assert block_time(world, result) >= unlocks
    assert result.event("StakeWithdrawn").args == {"validator": v.address, "amount": amount}
    assert balance(world, v.address) == before + amount - fee(result)
    assert balance(world, world.registry.address) == reg_before - amount
    assert world.registry.validator_info(v.address) == ValidatorInfo(STAKE - amount, 0, unlocks, 0, True)
    with refused("NothingUnbonding"):
        world.registry.withdraw_stake(v)


def test_registry_holds_exactly_every_stake(world: World) -> None:
    reg = world.registry
    total = len(world.validators) * STAKE
    assert balance(world, reg.address) == total
    reg.bond(world.validators[0], 7)
    reg.request_unbond(world.validators[1], 11)
    reg.register_validator(world.fresh[0], MIN_STAKE)
    infos = [reg.validator_info(a.address) for a in [*world.validators, world.fresh[0]]]
    assert balance(world, reg.address) == sum(i.stake + i.unbonding for i in infos) == total + 7 + MIN_STAKE


def _block(result: TxResult) -> int:
    return int(result.receipt["blockNumber"])


def test_stake_changes_are_checkpointed_by_block(world: World) -> None:
    """stakeAt / totalStakeAt give the stake at the end of any past block: what sortition counts."""
    reg, v, late = world.registry, world.validators[0], world.fresh[0]
    total = len(world.validators) * STAKE
    start = world.chain.w3.eth.block_number
    bonded = _block(reg.bond(v, 2 * ETH))
    registered = _block(reg.register_validator(late, 3 * ETH))
    unbonded = _block(reg.request_unbond(v, ETH // 2))
    world.chain.mine(2)
    history = {
        start: (STAKE, 0, total),
        bonded - 1: (STAKE, 0, total),
        bonded: (3 * ETH, 0, total + 2 * ETH),
        registered - 1: (3 * ETH, 0, total + 2 * ETH),
        registered: (3 * ETH, 3 * ETH, total + 5 * ETH),
        unbonded - 1: (3 * ETH, 3 * ETH, total + 5 * ETH),
        unbonded: (5 * ETH // 2, 3 * ETH, total + 9 * ETH // 2),
        unbonded + 2: (5 * ETH // 2, 3 * ETH, total + 9 * ETH // 2),
    }
    for block, (stake_v, stake_late, all_stake) in history.items():
        assert reg.stake_at(v.address, block) == stake_v, block
        assert reg.stake_at(late.address, block) == stake_late, block
        assert reg.total_stake_at(block) == all_stake, block
    # the latest checkpoints are the current stakes
    latest = world.chain.w3.eth.block_number
    assert reg.stake_at(v.address, latest) == reg.validator_info(v.address).stake
    assert reg.total_stake_at(latest) == sum(
        reg.validator_info(a.address).stake for a in [*world.validators, late]
    )
    # accounts that never held stake, and blocks before the registry existed
    assert reg.stake_at(world.workers[0].address, latest) == 0
    assert reg.stake_at(v.address, 0) == 0
    assert reg.total_stake_at(0) == 0


def test_withdrawing_does_not_change_the_checkpointed_stake(world: World) -> None:
    """Unbonding stake stops counting when it is requested, not when it is withdrawn."""
    reg, v = world.registry, world.validators[0]
    request = reg.request_unbond(v, STAKE // 4)
    travel_to(world, block_time(world, request) + DELAY)
    withdrawn = _block(reg.withdraw_stake(v))
    assert (
        reg.stake_at(v.address, _block(request)) == reg.stake_at(v.address, withdrawn) == STAKE - STAKE // 4
    )
    assert reg.total_stake_at(withdrawn) == len(world.validators) * STAKE - STAKE // 4


# ---------------------------------------------------------------------- committee seats


def test_seats_are_recorded_and_emitted(world: World) -> None:
    task = new_task(world)
    validators = world.validators[:3]
    admitted = seat(world, task, validators)
    for v, result in zip(validators, admitted, strict=True):
        assert only(registry_events(world, result), "SeatTaken").args == {
            "task": task.address,
            "validator": v.address,
            "stake": STAKE,
        }
        assert world.registry.validator_info(v.address).active_seats == 1
    assert world.registry.seats_of(task.address) == [v.address for v in validators]


def test_seat_reports_the_current_bonded_stake(world: World) -> None:
    v = world.validators[0]
    world.registry.bond(v, 5)
    world.registry.request_unbond(v, 2)
    task = new_task(world)
    (result,) = seat(world, task, [v])
    assert only(registry_events(world, result), "SeatTaken")["stake"] == STAKE + 3
    assert task.get_events("CommitteeMemberAdded")[0]["stake"] == STAKE + 3

    # stake bonded after the snapshot is locked with the seat (and reported), though it won nothing
    w = world.validators[1]
    later = new_task(world)
    later.open_recruitment(world.requester)
    wait_for_seed(later)  # the seed epoch has begun: its snapshot block is past
    world.registry.bond(w, 2 * ETH)
    result = claim_seat(world, later, w)
    assert only(registry_events(world, result), "SeatTaken")["stake"] == 3 * ETH
    assert later.committee() == {w.address: 1}


def test_seat_needs_the_snapshot_stake_still_bonded(world: World) -> None:
    """Seats are drawn with the stake bonded at the snapshot; a validator who unbonds part of it afterwards
    (allowed while it sits on no committee) cannot take them."""
    v = world.validators[0]
    task = new_task(world)
    task.open_recruitment(world.requester)
    wait_for_seed(task)
    world.registry.request_unbond(v, 1)
    with refused("StakeTooLow", stake=STAKE - 1, minimum=STAKE):
        claim_seat(world, task, v)
    assert world.registry.validator_info(v.address).active_seats == 0
    world.registry.bond(v, 1)  # bonded again: the seats can be taken
    claim_seat(world, task, v)
    assert world.registry.validator_info(v.address).active_seats == 1


def test_seat_needs_min_stake_still_bonded(world: World) -> None:
    """With a stake unit below the minimum stake, a validator who unbonded to under the minimum before
    recruitment opened still has weight, but the registry does not seat it."""
    unit = MIN_STAKE // 10
    reg = Registry.deploy(
        world.chain,
        world.admin,
        min_stake=MIN_STAKE,
        unbonding_delay=DELAY,
        stake_unit=unit,
        sortition=world.registry.sortition().address,
    )
    low, ok = world.fresh[0], world.fresh[1]
    reg.register_validator(low, MIN_STAKE)
    reg.register_validator(ok, MIN_STAKE)
    reg.request_unbond(low, MIN_STAKE // 2)  # 5 units, below the minimum
    task = Task.deploy(world.chain, world.requester, reg.address, config())
    reg.register_task(world.requester, task.address)
    task.open_recruitment(world.requester)
    ticket = draw(task, reg, low.address, vrf_key_for(low))
    assert (ticket.stake_units, ticket.total_units, ticket.seats) == (5, 15, 5)
    with refused("StakeTooLow", stake=MIN_STAKE // 2, minimum=MIN_STAKE):
        task.claim_seat(low, ticket.proof, ticket.seats)
    assert reg.validator_info(low.address).active_seats == 0
    ticket = draw(task, reg, ok.address, vrf_key_for(ok))
    task.claim_seat(ok, ticket.proof, ticket.seats)
    assert task.committee() == {ok.address: 10}


def test_request_unbond_is_refused_while_seated(world: World) -> None:
    v = world.validators[0]
    t1, t2 = new_task(world), new_task(world)
    seat(world, t1, [v])
    with refused("SeatedOnActiveTask", seats=1):
        world.registry.request_unbond(v, 1)
    seat(world, t2, [v])
    assert world.registry.validator_info(v.address).active_seats == 2
    with refused("SeatedOnActiveTask", seats=2):
        world.registry.request_unbond(v, 1)
    t1.close_recruitment(world.requester)
    t1.stop_training(world.requester)
    with refused("SeatedOnActiveTask", seats=1):
        world.registry.request_unbond(v, 1)
    t2.close_recruitment(world.requester)
    t2.stop_training(world.requester)
    assert world.registry.validator_info(v.address).active_seats == 0
    world.registry.request_unbond(v, 1)


def _terminate(world: World, task: Task, how: str, validators: list[LocalAccount]) -> TxResult:
    workers = world.workers[:2]
    if how == "idle":
        world.chain.increase_time(task.config().durations.idle + 1)
        return task.advance(world.outsider)
    if how == "stopped":
        return task.stop_training(world.requester)
    played = play_round(world, task, workers, validators)
    if how == "stopped_after_round":
        return task.stop_training(world.requester)
    return played.finalize  # max rounds


@pytest.mark.parametrize("how", ["stopped", "stopped_after_round", "max_rounds", "idle"])
def test_termination_unlocks_the_stake_of_its_committee(world: World, how: str) -> None:
    v = world.validators[0]
    extra = STAKE // 2
    world.registry.bond(v, extra)  # so that a whole unit of stake (weight 1) stays bonded
    task = new_task(world, max_rounds=1 if how == "max_rounds" else 3)
    task.open_recruitment(world.requester)
    for w in world.workers[:2]:
        task.sign_up(w)
    committee = [v, *world.validators[1:3]]
    for member in committee:
        claim_seat(world, task, member)
    task.close_recruitment(world.requester)
    with refused("SeatedOnActiveTask", seats=1):
        world.registry.request_unbond(v, extra)

    result = _terminate(world, task, how, committee)
    assert only(registry_events(world, result), "TaskRemoved")["task"] == task.address
    assert not world.registry.is_active_task(task.address)
    assert world.registry.seats_of(task.address) == []
    assert all(world.registry.validator_info(m.address).active_seats == 0 for m in committee)

    travel_to(world, block_time(world, world.registry.request_unbond(v, extra)) + DELAY)
    before = balance(world, v.address)
    withdrawn = world.registry.withdraw_stake(v)
    assert withdrawn.event("StakeWithdrawn")["amount"] == extra
    assert balance(world, v.address) == before + extra - fee(withdrawn)


def test_stake_unbonding_before_a_seat_is_not_locked_by_it(world: World) -> None:
    """Unbonding stake no longer counts as stake: a seat taken after the request locks what is still
    bonded, and the unbonding part is paid out after the delay while the validator sits on a task."""
    v = world.validators[0]
    world.registry.bond(v, STAKE)
    unlocks = block_time(world, world.registry.request_unbond(v, STAKE)) + DELAY
    task = new_task(world)
    seat(world, task, [v])
    assert world.registry.validator_info(v.address).active_seats == 1
    travel_to(world, unlocks)
    before = balance(world, v.address)
    withdrawn = world.registry.withdraw_stake(v)  # was refused with SeatedOnActiveTask
    assert withdrawn.event("StakeWithdrawn")["amount"] == STAKE
    assert balance(world, v.address) == before + STAKE - fee(withdrawn)
    assert world.registry.is_active_task(task.address)
    assert world.registry.validator_info(v.address).stake == STAKE  # what the seat locks stays


def test_a_seat_locks_the_stake_for_max_seat_lock_at_most(world: World) -> None:
    """A task may run (or be kept alive) for as long as it likes: its committee's stake is locked for
    the registry's `maxSeatLock` after the latest seat, not for the task's lifetime."""
    reg, v = world.registry, world.validators[0]
    lock = reg.max_seat_lock()
    assert lock == DEFAULT_SEAT_LOCK
    longest = Durations(*(MAX_DURATION,) * 6)
    first = new_task(world, durations=longest)
    (seated,) = seat(world, first, [v])
    locked_until = block_time(world, seated) + lock
    assert reg.validator_info(v.address).locked_until == locked_until
    with refused("SeatedOnActiveTask", seats=1, lockedUntil=locked_until):
        reg.request_unbond(v, 1)  # the cheating early unbond
    # a second seat, later, moves the lock's end to its own
    world.chain.increase_time(lock // 2)
    second = new_task(world, durations=longest)
    (seated,) = seat(world, second, [v])
    locked_until = block_time(world, seated) + lock
    assert reg.validator_info(v.address).locked_until == locked_until
    travel_to(world, locked_until - 2)  # the next block is still before the lock's end
    with refused("SeatedOnActiveTask", seats=2, lockedUntil=locked_until):
        reg.request_unbond(v, STAKE)
    travel_to(world, locked_until)
    # both tasks still run (first's recruitment is long over, but nobody advances it)
    assert reg.is_active_task(first.address) and reg.is_active_task(second.address)
    assert reg.validator_info(v.address).active_seats == 2
    unlocks = block_time(world, reg.request_unbond(v, STAKE)) + DELAY
    travel_to(world, unlocks)
    assert reg.withdraw_stake(v).event("StakeWithdrawn")["amount"] == STAKE


@pytest.mark.parametrize("lock", [0, 365 * 86400 + 1])
def test_a_seat_lock_of_zero_or_above_a_year_is_refused(world: World, lock: int) -> None:
    with refused("InvalidSeatLock"):
        Registry.deploy(world.chain, world.admin, min_stake=MIN_STAKE, max_seat_lock=lock)


def test_termination_unlocks_only_that_tasks_committee(world: World) -> None:
    a, b, c = world.validators[:3]
    t1, t2 = new_task(world), new_task(world)
    seat(world, t1, [a, b])
    seat(world, t2, [b, c])
    t1.close_recruitment(world.requester)
    t1.stop_training(world.requester)
    seats = {v.address: world.registry.validator_info(v.address).active_seats for v in (a, b, c)}
    assert seats == {a.address: 0, b.address: 1, c.address: 1}
    assert world.registry.seats_of(t2.address) == [b.address, c.address]


# ---------------------------------------------------------------------- task listing


def test_register_task_lists_it(world: World) -> None:
    task = new_task(world, register=False)
    assert not world.registry.is_active_task(task.address)
    result = world.registry.register_task(world.requester, task.address)
    assert result.names() == ["TaskRegistered"]
    assert result.event("TaskRegistered").args == {"task": task.address, "requester": world.requester.address}
    assert world.registry.is_active_task(task.address)
    assert world.registry.active_tasks() == [task.address]


def test_only_the_requester_registers_its_task(world: World) -> None:
    task = new_task(world, register=False)
    for other in (world.outsider, world.admin, world.workers[0]):
        with refused("NotTaskRequester", requester=world.requester.address, sender=other.address):
            world.registry.register_task(other, task.address)
    assert not world.registry.is_active_task(task.address)


def test_a_task_is_registered_once(world: World) -> None:
    task = new_task(world)
    with refused("TaskAlreadyRegistered", task=task.address):
        world.registry.register_task(world.requester, task.address)
    task.open_recruitment(world.requester)  # no longer new, and still listed
    with refused("TaskAlreadyRegistered", task=task.address):
        world.registry.register_task(world.requester, task.address)
    assert world.registry.active_tasks() == [task.address]


def test_a_task_for_another_registry_is_refused(world: World) -> None:
    other = Registry.deploy(world.chain, world.admin, min_stake=MIN_STAKE, unbonding_delay=DELAY)
    task = Task.deploy(world.chain, world.requester, other.address, config())
    with refused("WrongRegistry", taskRegistry=other.address):
        world.registry.register_task(world.requester, task.address)
    other.register_task(world.requester, task.address)  # fine where it belongs
    assert other.is_active_task(task.address)
    assert not world.registry.is_active_task(task.address)


def test_a_task_that_is_not_new_is_refused(world: World) -> None:
    # a task stopped before it was ever listed is TERMINATED, not new
    unlisted = new_task(world, register=False)
    unlisted.stop_training(world.requester)
    with refused("TaskNotNew", task=unlisted.address):
        world.registry.register_task(world.requester, unlisted.address)
    # a listed task that terminated cannot come back onto the list
    listed = new_task(world)
    listed.stop_training(world.requester)
    assert not world.registry.is_active_task(listed.address)
    with refused("TaskNotNew", task=listed.address):
        world.registry.register_task(world.requester, listed.address)
    assert world.registry.active_tasks() == []


def test_unapproved_code_is_refused(world: World) -> None:
    w3 = world.chain.w3
    other = Registry.deploy(world.chain, world.admin)
    codehash = keccak(bytes(w3.eth.get_code(other.address)))
    with refused("UnapprovedTaskCode", codehash=codehash):
        world.registry.register_task(world.requester, other.address)
    # an account without code: EXTCODEHASH is keccak("") for a funded one, 0 for one that never existed
    with refused("UnapprovedTaskCode", codehash=keccak(b"")):
        world.registry.register_task(world.requester, world.outsider.address)
    with refused("UnapprovedTaskCode", codehash=b"\0" * 32):
        world.registry.register_task(world.requester, "0x" + "12" * 20)
    assert world.registry.active_tasks() == []


def test_only_the_owner_sets_code_approval(world: World) -> None:
    for account in (world.outsider, world.requester, world.validators[0]):
        with refused("OwnableUnauthorizedAccount", account=account.address):
            world.registry.set_task_code_approval(account, keccak(b"anything"), True)
    assert not approved(world.registry, keccak(b"anything"))


def test_revoking_approval_blocks_new_tasks_only(world: World) -> None:
    reg, codehash = world.registry, task_codehash()
    listed = new_task(world)
    result = reg.set_task_code_approval(world.admin, codehash, False)
    assert result.event("TaskCodeApproval").args == {"codehash": codehash, "approved": False}
    assert not approved(reg, codehash)

    pending = new_task(world, register=False)
    with refused("UnapprovedTaskCode", codehash=codehash):
        reg.register_task(world.requester, pending.address)
    # a task listed before the revocation keeps working, and still leaves the list when it terminates
    assert reg.is_active_task(listed.address)
    seat(world, listed, world.validators[:1])
    listed.close_recruitment(world.requester)
    listed.stop_training(world.requester)
    assert not reg.is_active_task(listed.address)
    assert reg.validator_info(world.validators[0].address).active_seats == 0

    reg.set_task_code_approval(world.admin, codehash, True)
    reg.register_task(world.requester, pending.address)
    assert reg.active_tasks() == [pending.address]


@pytest.mark.parametrize("caller", ["outsider", "requester", "validator"])
def test_task_callbacks_refuse_accounts_that_are_not_active_tasks(world: World, caller: str) -> None:
    account = {"outsider": world.outsider, "requester": world.requester, "validator": world.validators[0]}[
        caller
    ]
    new_task(world)  # some active task exists, but the caller is not it
    with refused("NotActiveTask", caller=account.address):
        call_direct(world, account, "takeSeat", world.validators[0].address, 0)
    with refused("NotActiveTask", caller=account.address):
        call_direct(world, account, "onTaskTerminated")
    assert world.registry.validator_info(world.validators[0].address).active_seats == 0


# ---------------------------------------------------------------------- active-task list


def _tasks(world: World, n: int) -> list[str]:
    return [new_task(world).address for _ in range(n)]


def test_active_tasks_are_enumerated_in_pages(world: World) -> None:
    reg = world.registry
    assert reg.active_tasks() == []
    tasks = _tasks(world, 5)
    assert reg.contract.functions.activeTaskCount().call() == 5
    for page_size in (1, 2, 3, 4, 5, 500):
        assert reg.active_tasks(page_size=page_size) == tasks
    page = reg.contract.functions.activeTasks
    assert page(0, 0).call() == []
    assert page(1, 2).call() == tasks[1:3]
    assert page(3, 10).call() == tasks[3:]  # clipped to the end
    assert page(5, 1).call() == []
    assert page(2**255, 2**255).call() == []
    assert all(reg.is_active_task(t) for t in tasks)


def test_active_tasks_page_with_the_largest_count(world: World) -> None:
    """`activeTasks(start, type(uint256).max)` means "everything from `start`": clipped, not a revert."""
    tasks = _tasks(world, 3)
    page = world.registry.contract.functions.activeTasks
    assert page(0, 2**256 - 1).call() == tasks
    assert page(1, 2**256 - 1).call() == tasks[1:]
    assert page(2, 2**256 - 2).call() == tasks[2:]


def _stop(world: World, address: str) -> TxResult:
    result = Task(world.chain, address).stop_training(world.requester)
    assert only(registry_events(world, result), "TaskRemoved").args == {"task": address}
    return result


def test_removal_swaps_the_last_task_into_the_gap(world: World) -> None:
    reg = world.registry
    a, b, c, d, e = _tasks(world, 5)
    _stop(world, b)  # middle: the last one moves into its slot
    assert reg.active_tasks() == [a, e, c, d]
    assert reg.active_tasks(page_size=3) == [a, e, c, d]
    _stop(world, d)  # the last one: just popped
    assert reg.active_tasks() == [a, e, c]
    _stop(world, a)  # the first one
    assert reg.active_tasks() == [c, e]
    (f,) = _tasks(world, 1)
    assert reg.active_tasks() == [c, e, f]
    _stop(world, e)  # the moved task's index was kept right: it can be found and removed
    assert reg.active_tasks() == [c, f]
    _stop(world, c)
    _stop(world, f)
    assert reg.active_tasks() == []
    assert not any(reg.is_active_task(t) for t in (a, b, c, d, e, f))


def test_removal_cost_does_not_grow_with_the_list(world: World) -> None:
    """Swap-and-pop: removing a middle task costs the same with 3 or 9 tasks listed."""
    small = _tasks(world, 3)
    gas_small = _stop(world, small[1]).gas_used
    for t in (small[0], small[2]):
        _stop(world, t)
    large = _tasks(world, 9)
    gas_large = _stop(world, large[4]).gas_used
    assert gas_small == gas_large
