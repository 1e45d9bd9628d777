"""Malformed input to the contracts on the real EVM: bad lengths, zero addresses, values beyond a type's
range or beyond what exists, and Ether sent where none is expected.

Each refusal is checked twice: the simulated call names the error (``refused``), then the same calldata
is forced on chain without the simulation and must revert there (status 0) leaving every observable of
the registry and the task unchanged. Refusals that the Solidity compiler generates (Ether sent to a
non-payable function, calldata the ABI decoder rejects: truncated, or a number wider than its type) carry
no data: the Python layer names them ``Reverted``. What the contracts accept but should refuse is a
strict ``xfail`` naming the gap (all the gaps found are fixed now).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract.contract import ContractFunction
from web3.types import TxParams, TxReceipt

from refiner.chain import ContractRevert, Status, Task, public_key_bytes
from refiner.chain.accounts import vrf_key_for
from refiner.chain.build import load_artifact
from refiner.chain.committee import draw
from refiner.chain.contract import ContractWrapper
from refiner.sortition import prove
from tests.helpers import (
    FAST,
    STAKE,
    World,
    commit_all,
    config,
    handle,
    new_task,
    play_round,
    recruit,
    refused,
    results_tree,
    reveal_all,
    salt_for,
    seat,
    start_round,
    submit_all,
)

ZERO = "0x" + "00" * 20
UINT32_MAX, UINT64_MAX, UINT256_MAX = 2**32 - 1, 2**64 - 1, 2**256 - 1


class RawCall:
    """Arbitrary calldata in the shape `Chain.transact` expects of a contract function, so that it is
    simulated, refused and decoded exactly as the typed wrappers' calls are."""

    def __init__(self, world: World, to: str, data: bytes) -> None:
        self.w3, self.to, self.data = world.chain.w3, to, data

    def call(self, params: Any, block_identifier: Any = "latest") -> Any:
        return self.w3.eth.call(
            cast(TxParams, {**params, "to": self.to, "data": self.data}), block_identifier
        )

    def build_transaction(self, params: Any) -> Any:
        # web3's own build_transaction fills the fee, which the embedded chain's transact then leaves alone
        return {"gasPrice": self.w3.eth.gas_price, **params, "to": self.to, "data": self.data}


def calldata(contract: ContractWrapper, function: str, *args: Any) -> bytes:
    return bytes.fromhex(contract.contract.encode_abi(function, args=list(args))[2:])


def observables(world: World, task: Task | None, accounts: Sequence[str]) -> dict[str, Any]:
    """Everything a refused call could have changed: balances, the registry's lists, stakes and keys,
    the task's status, money (budget, reward escrows, the accounts' claims), members and current round."""
    eth, reg = world.chain.w3.eth, world.registry
    seen: dict[str, Any] = {
        "registry": (eth.get_balance(reg.address), reg.active_tasks(), reg.total_stake_at(eth.block_number)),
    }
    for a in accounts:
        seen[a] = (reg.is_worker(a), reg.is_validator(a), reg.worker_key(a), reg.validator_info(a))
    if task is not None:
        r = task.current_round()
        seen["task"] = (
            task.status(),
            r,
            task.deadline(),
            task.budget(),
            task.balance(),
            task.owed(),
            task.worker_escrow(),
            task.validator_escrow(),
            task.claim_deadline(),
            task.workers(),
            task.committee(),
            task.round_info(r),
            [
                (
                    task.submitted(r, a),
                    task.worker_claims(a),
                    task.validator_reward_of(a),
                    task.ballot_of(r, a),
                )
                for a in accounts
            ],
        )
    return seen


def force(world: World, sender: LocalAccount, to: str, data: bytes, value: int = 0) -> TxReceipt:
    """Send the transaction without simulating it first: it is mined, and must fail on chain."""
    w3 = world.chain.w3
    tx: dict[str, Any] = {
        "to": to,
        "data": data,
        "value": value,
        "gas": 2_000_000,
        "gasPrice": w3.eth.gas_price,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "chainId": world.chain.chain_id,
    }
    receipt = w3.eth.get_transaction_receipt(
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 0, "the refused call succeeded on chain"
    return receipt


def rejected(
    world: World,
    sender: LocalAccount,
    to: str,
    data: bytes,
    error: str,
    *,
    value: int = 0,
    task: Task | None = None,
    **args: Any,
) -> None:
    """`data` sent by `sender` to `to` is refused with `error` (and these arguments), in simulation and
    on chain, and changes nothing observable."""
    accounts = [sender.address]
    before = observables(world, task, accounts)
    with refused(error, **args):
        world.chain.transact(sender, cast(ContractFunction, RawCall(world, to, data)), value=value)
    force(world, sender, to, data, value)
    assert observables(world, task, accounts) == before


# ---------------------------------------------------------------------------------------- bad lengths


@pytest.mark.parametrize("role", ["registerWorker", "registerValidator"])
def test_a_63_byte_public_key_is_refused(world: World, role: str) -> None:
    account = world.fresh[0]
    key = public_key_bytes(account)[:63]
    if role == "registerWorker":
        data = calldata(world.registry, role, key)
    else:
        possession = prove(vrf_key_for(account), world.registry.possession_seed(account.address))
        data = calldata(world.registry, role, key, possession.as_tuple())
    rejected(
        world,
        account,
        world.registry.address,
        data,
        "InvalidPublicKey",
        value=STAKE * (role != "registerWorker"),
        length=63,
    )


def test_a_merkle_proof_of_the_wrong_size_is_refused(world: World) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=4)
    played = play_round(world, task, workers, validators)
    w = workers[0]
    result = played.tree.result_of(w.address)
    good = played.tree.proof(w.address)
    assert len(good) == 2  # four leaves
    for proof in ([], good[:1], [*good, good[0]], [bytes(32)] * 64):
        data = calldata(
            task, "claimReward", 1, result.accepted, result.samples, result.contribution, result.earned, proof
        )
        rejected(world, w, task.address, data, "InvalidProof", task=task)


def test_truncated_calldata_is_refused(world: World) -> None:
    """A VRF proof, a manifest and a submission cut short: the ABI decoder refuses them before any code."""
    task = new_task(world)
    task.open_recruitment(world.requester)
    v = world.validators[0]
    ticket = draw(task, world.registry, v.address, vrf_key_for(v))
    claim = calldata(task, "claimSeat", ticket.proof.as_tuple(), ticket.seats)
    for cut in (4, 100, len(claim) - 1):
        rejected(world, v, task.address, claim[:cut], "Reverted", task=task)
    task.claim_seat(v, ticket.proof, ticket.seats)  # the whole proof is fine
    task.sign_up(world.workers[0])
    task.close_recruitment(world.requester)
    start_round(world, task)
    submit = calldata(task, "submitTrainingResults", handle("u"), handle("k"), 10)
    rejected(world, world.workers[0], task.address, submit[:-32], "Reverted", task=task)
    submit_all(task, world.workers[:1])
    manifest = results_tree(world.workers[:1]).manifest(1, b"\x01" * 32, handle("a"), handle("d"))
    commit_all(task, [v], [manifest])
    reveal = calldata(task, "revealManifest", manifest.as_tuple(), salt_for(v, 1))
    rejected(world, v, task.address, reveal[:-40], "Reverted", task=task)


# Handles (CIDs) are bounded on chain: empty or longer than 64 bytes is refused with InvalidHandle.
@pytest.mark.parametrize("where", ["startRound", "submitTrainingResults", "revealManifest"])
@pytest.mark.parametrize("size", [0, 64 * 1024])
def test_empty_or_oversized_handles_are_refused(world: World, where: str, size: int) -> None:
    bad = b"\x12" * size
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=1, n_validators=1)
    if where == "startRound":
        with pytest.raises(ContractRevert, match="InvalidHandle"):
            task.start_round(world.requester, bad, bad, bad, bad, value=10**18 + 3 * 10**17)
        return
    start_round(world, task)
    if where == "submitTrainingResults":
        with pytest.raises(ContractRevert):
            task.submit_training_results(workers[0], bad, bad, 10)
        return
    submit_all(task, workers)
    manifest = results_tree(workers).manifest(1, b"\x01" * 32, bad, bad)
    commit_all(task, validators, [manifest])
    with pytest.raises(ContractRevert):
        task.reveal_manifest(validators[0], manifest, salt_for(validators[0], 1))


# ------------------------------------------------------------------------------------- zero addresses


def test_a_registry_without_an_administrator_is_refused(world: World) -> None:
    sortition = world.registry.sortition().address
    with refused("OwnableInvalidOwner", owner=ZERO):
        world.chain.deploy(
            world.admin, load_artifact("RefinerRegistry"), ZERO, 1, 1, STAKE, sortition, b"\x01" * 32, 16, 1
        )


def test_a_registry_without_a_sortition_contract_is_refused(world: World) -> None:
    with pytest.raises(ContractRevert):
        world.chain.deploy(
            world.admin,
            load_artifact("RefinerRegistry"),
            world.admin.address,
            1,
            1,
            STAKE,
            ZERO,
            b"\x01" * 32,
            16,
            1,
        )


def test_a_registry_with_epochs_of_no_blocks_is_refused(world: World) -> None:
    sortition = world.registry.sortition().address
    with refused("InvalidEpochLength"):
        world.chain.deploy(
            world.admin,
            load_artifact("RefinerRegistry"),
            world.admin.address,
            1,
            1,
            STAKE,
            sortition,
            b"\x01" * 32,
            0,
            1,
        )


def test_a_task_without_a_registry_is_refused(world: World) -> None:
    with pytest.raises(ContractRevert):
        Task.deploy(world.chain, world.requester, ZERO, config())


@pytest.mark.parametrize("target", ["zero", "account"])
def test_registering_the_zero_address_or_an_account_as_a_task_is_refused(world: World, target: str) -> None:
    address = ZERO if target == "zero" else world.outsider.address
    data = calldata(world.registry, "registerTask", address)
    rejected(world, world.requester, world.registry.address, data, "UnapprovedTaskCode")


# --------------------------------------------------------------------------------- values out of range


@pytest.mark.parametrize("round_", [0, 2, UINT32_MAX])
def test_claims_for_a_round_that_does_not_exist_are_refused(world: World, round_: int) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task)
    played = play_round(world, task, workers, validators)
    result = played.tree.result_of(workers[0].address)
    proof = played.tree.proof(workers[0].address)
    claim = calldata(
        task, "claimReward", round_, True, result.samples, result.contribution, result.earned, proof
    )
    rejected(world, workers[0], task.address, claim, "RoundNotFinalized", task=task, round=round_)
    assert task.round_info(UINT32_MAX).finalized is False  # reading one is harmless
    assert task.validator_unit(UINT32_MAX) == 0


def test_validator_claims_and_releases_before_anything_is_due_are_refused(world: World) -> None:
    """Neither takes a round any more: a validator's claim pays the finalized rounds, none before the
    first is finalized (its round is revealed, not finalized yet); the unclaimed rewards are released
    only once the task has terminated."""
    task = new_task(world)
    workers, validators = recruit(world, task)
    start_round(world, task)
    submit_all(task, workers)
    manifest = results_tree(workers).manifest(900_000, b"\x01" * 32, handle("a"), handle("d"))
    commit_all(task, validators, [manifest] * 3)
    reveal_all(task, validators, [manifest] * 3)
    assert task.status() is Status.REWARDING
    claim = calldata(task, "claimValidatorReward")
    rejected(world, validators[0], task.address, claim, "NoReward", task=task)
    release = calldata(task, "releaseUnclaimed")
    rejected(world, world.outsider, task.address, release, "WrongStatus", task=task)


def test_numbers_wider_than_their_type_are_refused(world: World) -> None:
    """A uint32 round of 2^32 and a uint64 sample count of 2^64 (raw calldata: the ABI encoder would not
    produce them) are refused by the ABI decoder. The largest values of the types are valid: a sample
    count of 2^64 − 1 is stored as such (validators refuse to weigh it, see tests/roles/test_faults.py)."""
    task = new_task(world)
    workers, _ = recruit(world, task)
    start_round(world, task)
    submit = calldata(task, "submitTrainingResults", handle("u"), handle("k"), UINT64_MAX)
    samples_at = 4 + 2 * 32  # the third head word
    wide = submit[:samples_at] + (UINT64_MAX + 1).to_bytes(32, "big") + submit[samples_at + 32 :]
    rejected(world, workers[0], task.address, wide, "Reverted", task=task)
    task.submit_training_results(workers[0], handle("u"), handle("k"), UINT64_MAX)
    assert task.submitted_samples(1, workers[0].address) == UINT64_MAX
    claim = bytearray(calldata(task, "claimReward", UINT32_MAX, True, 1, 1, 1, []))
    claim[4:36] = (UINT32_MAX + 1).to_bytes(32, "big")  # the round, the first head word
    rejected(world, workers[0], task.address, bytes(claim), "Reverted", task=task)


def test_a_huge_seat_count_is_refused(world: World) -> None:
    task = new_task(world)
    task.open_recruitment(world.requester)
    v = world.validators[0]
    ticket = draw(task, world.registry, v.address, vrf_key_for(v))
    assert ticket.seats == 1
    for seats in (0, 2, UINT256_MAX):
        data = calldata(task, "claimSeat", ticket.proof.as_tuple(), seats)
        rejected(world, v, task.address, data, "WrongSeatCount", task=task, claimed=seats, actual=1)


def test_the_largest_committee_size_seats_every_unit_without_overflow(world: World) -> None:
    with refused("InvalidConfig", reason="committeeSize above 64"):
        new_task(world, committee_size=UINT32_MAX)
    task = new_task(world, committee_size=64)
    task.open_recruitment(world.requester)
    for v in world.validators[:3]:
        seat(world, task, v)
    assert task.committee() == {v.address: 1 for v in world.validators[:3]}  # τ ≥ W: all units win


# Durations are bounded (10 years): a duration near 2^64 used to overflow its phase's deadline and freeze
# the task (and its committee's stakes) in that phase. Rewards whose sum overflows are refused too.
@pytest.mark.parametrize("phase", ["recruitment", "training", "evaluation", "reveal", "idle", "claim"])
def test_a_duration_that_overflows_its_deadline_is_refused_at_deployment(world: World, phase: str) -> None:
    with refused("InvalidConfig"):
        new_task(world, durations=replace(FAST, **{phase: UINT64_MAX}))


def test_an_overflowing_idle_duration_cannot_lock_a_seated_validators_stake(world: World) -> None:
    try:
        task = new_task(world, durations=replace(FAST, idle=UINT64_MAX))
    except ContractRevert as exc:  # the fix: refused at deployment
        assert exc.error == "InvalidConfig"
        return
    task.open_recruitment(world.requester)
    seat(world, task, world.validators[0])
    world.chain.increase_time(FAST.recruitment + 1)
    task.advance(world.outsider)  # today: Panic(0x11), the task stays RECRUITING with the seat taken
    task.stop_training(world.requester)
    world.registry.request_unbond(world.validators[0], 1)


def test_rewards_whose_sum_overflows_are_refused_at_deployment(world: World) -> None:
    with refused("InvalidConfig"):
        new_task(world, worker_reward=UINT256_MAX, validator_reward=1)


# ------------------------------------------------------------------------- Ether where none is expected


def test_ether_sent_to_a_function_that_takes_none_is_refused(world: World) -> None:
    task = new_task(world)
    task.open_recruitment(world.requester)
    worker, v = world.workers[0], world.validators[0]
    # signUp takes exactly the task's deposit: none here
    rejected(world, worker, task.address, calldata(task, "signUp"), "WrongDeposit", value=1, task=task)
    ticket = draw(task, world.registry, v.address, vrf_key_for(v))
    claim = calldata(task, "claimSeat", ticket.proof.as_tuple(), ticket.seats)
    rejected(world, v, task.address, claim, "Reverted", value=1, task=task)
    rejected(world, world.outsider, task.address, calldata(task, "fixSeed"), "Reverted", value=1, task=task)
    task.sign_up(worker)
    task.claim_seat(v, ticket.proof, ticket.seats)
    task.close_recruitment(world.requester)
    start_round(world, task)
    submit = calldata(task, "submitTrainingResults", handle("u"), handle("k"), 10)
    rejected(world, worker, task.address, submit, "Reverted", value=1, task=task)
    withdraw = calldata(task, "withdraw", 1)
    rejected(world, world.requester, task.address, withdraw, "Reverted", value=10**18, task=task)
    fresh = world.fresh[0]
    register = calldata(world.registry, "registerWorker", public_key_bytes(fresh))
    rejected(world, fresh, world.registry.address, register, "Reverted", value=1)
    register_task = calldata(world.registry, "registerTask", task.address)
    rejected(world, world.requester, world.registry.address, register_task, "Reverted", value=1)
    assert task.status() is Status.TRAINING


@pytest.mark.parametrize("contract", ["task", "registry", "sortition"])
def test_plain_ether_transfers_are_refused(world: World, contract: str) -> None:
    task = new_task(world)
    address = {
        "task": task.address,
        "registry": world.registry.address,
        "sortition": world.registry.sortition().address,
    }[contract]
    before = world.chain.w3.eth.get_balance(address)
    rejected(world, world.outsider, address, b"", "Reverted", value=10**18, task=task)
    assert world.chain.w3.eth.get_balance(address) == before
