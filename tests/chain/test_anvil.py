"""The same contracts and typed layer on a real node: a local anvil started by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from web3.types import TxReceipt

from refiner.chain import Chain, ChainError, ContractRevert, Registry, Status, demo_account
from refiner.chain.accounts import vrf_key_for
from refiner.chain.anvil import HOST, Anvil, AnvilError, find_anvil, start_anvil
from refiner.chain.committee import draw
from refiner.chain.registry import epoch_seed
from tests.helpers import (
    ETH,
    FAST,
    STAKE,
    VALIDATOR_REWARD,
    WORKER_REWARD,
    World,
    build_world,
    new_task,
    play_round,
    recruit,
    results_tree,
    seat,
    start_round,
    submit_all,
)

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.skipif(
        find_anvil() is None,
        reason="anvil is not installed under node_modules (run `make setup`: npm package @foundry-rs/anvil)",
    ),
]


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with start_anvil() as node:
        yield node


@pytest.fixture(scope="module")
def anvil_base(anvil: Anvil) -> World:
    return build_world(Chain.connect(anvil.url))


@pytest.fixture
def aworld(anvil_base: World) -> Iterator[World]:
    """The anvil world, reverted to its initial state after each test (evm_snapshot / evm_revert)."""
    snapshot = anvil_base.chain.snapshot()
    yield anvil_base
    anvil_base.chain.revert(snapshot)


def fee(receipt: TxReceipt) -> int:
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def test_connect_detects_anvil(anvil: Anvil) -> None:
    chain = Chain.connect(anvil.url)
    assert chain.kind == "anvil" and chain.is_dev_chain and not chain.manual_clock  # blocks come on their own
    assert anvil.url == f"http://{HOST}:{anvil.port}"
    assert chain.chain_id == 31337


def test_full_round_pays_workers_and_validators(aworld: World) -> None:
    chain = aworld.chain
    task = new_task(aworld)
    workers, validators = recruit(aworld, task, n_workers=3, n_validators=3)
    tree = results_tree(workers, contributions=[100, 300, 600])
    played = play_round(aworld, task, workers, validators, tree=tree)
    assert played.finalize.event("RoundFinalized")["agreeingWeight"] == 3
    assert task.status() == Status.PENDING

    for w, share in zip(workers, [100, 300, 600], strict=True):
        before = chain.w3.eth.get_balance(w.address)
        res = task.claim_reward(w, played.round, tree.result_of(w.address), tree.proof(w.address))
        amount = WORKER_REWARD * share // 1000
        assert res.event("RewardClaimed")["amount"] == amount
        assert chain.w3.eth.get_balance(w.address) == before + amount - fee(res.receipt)
        assert task.worker_claims(w.address) == (played.round, amount)
    for v in validators:
        before = chain.w3.eth.get_balance(v.address)
        res = task.claim_validator_reward(v)
        assert res.event("RewardClaimed")["amount"] == VALIDATOR_REWARD // 3
        assert chain.w3.eth.get_balance(v.address) == before + VALIDATOR_REWARD // 3 - fee(res.receipt)

    assert task.worker_escrow() == WORKER_REWARD - sum(WORKER_REWARD * c // 1000 for c in (100, 300, 600))
    assert task.validator_escrow() == 0
    assert task.budget() == VALIDATOR_REWARD - 3 * (VALIDATOR_REWARD // 3)
    assert task.balance() == task.owed()


def test_deadlines_let_anybody_advance_a_stalled_round(aworld: World) -> None:
    chain = aworld.chain
    task = new_task(aworld)
    workers, _ = recruit(aworld, task, n_workers=3, n_validators=3)
    start_round(aworld, task)
    submit_all(task, workers[:2])  # the third worker never submits
    assert task.status() == Status.TRAINING
    with pytest.raises(ContractRevert) as early:
        task.advance(aworld.outsider)
    assert early.value.error == "DeadlineNotReached"

    phases = [
        (FAST.training, Status.EVALUATING),
        (FAST.evaluation, Status.REVEALING),
        (FAST.reveal, Status.REWARDING),
    ]
    for duration, expected in phases:
        chain.increase_time(duration + 1)
        assert chain.now() > task.deadline()
        task.advance(aworld.outsider)
        assert task.status() == expected
    # no validator revealed: no consensus, the round's escrow is the requester's again
    refunded = task.finalize_round(aworld.outsider).event("NoConsensus")["refunded"]
    assert refunded == WORKER_REWARD + VALIDATOR_REWARD
    assert task.budget() == refunded
    assert task.status() == Status.PENDING
    assert task.balance() == task.owed()

    # and an idle task terminates once its idle deadline has passed
    chain.increase_time(FAST.idle + 1)
    task.advance(aworld.outsider)
    assert task.status() == Status.TERMINATED
    assert not aworld.registry.is_active_task(task.address)


def test_refused_call_raises_the_decoded_custom_error(aworld: World) -> None:
    task = new_task(aworld)
    worker = aworld.workers[0]
    nonce = aworld.chain.w3.eth.get_transaction_count(worker.address)
    with pytest.raises(ContractRevert) as refused:
        task.sign_up(worker)  # recruitment is not open
    assert refused.value.error == "WrongStatus"
    assert refused.value.args_by_name == {"actual": Status.PENDING}
    with pytest.raises(ContractRevert) as not_requester:
        task.open_recruitment(aworld.outsider)
    assert not_requester.value.error == "NotRequester"
    # addresses in decoded errors come back lower-case (eth_abi), not checksummed
    assert not_requester.value.args_by_name["caller"].lower() == aworld.outsider.address.lower()
    # refused during the gas estimate: nothing was sent, nothing paid
    assert aworld.chain.w3.eth.get_transaction_count(worker.address) == nonce


def test_sortition_on_a_real_node(aworld: World) -> None:
    """The seed is the seed block's hash as the node's EVM sees it; weights are stake units; a forged proof
    comes back as Chainlink's require message and another validator's proof as WrongVrfKey."""
    chain, reg = aworld.chain, aworld.registry
    reg.bond(aworld.validators[1], 2 * ETH)
    task = new_task(aworld)
    task.open_recruitment(aworld.requester)
    v0, v1 = aworld.validators[:2]
    t0 = draw(task, reg, v0.address, vrf_key_for(v0))  # anvil mines up to the seed block
    assert chain.w3.eth.block_number > task.seed_block()
    block_hash = bytes(chain.w3.eth.get_block(task.seed_block())["hash"])
    seed = epoch_seed(block_hash, reg.address, task.seed_epoch())
    assert task.sortition_seed() == seed

    with pytest.raises(ContractRevert) as forged:
        task.claim_seat(v0, replace(t0.proof, s=t0.proof.s ^ 1), t0.seats)
    assert forged.value.error == "Error"
    assert forged.value.args_by_name["message"]
    with pytest.raises(ContractRevert) as replayed:
        task.claim_seat(v1, t0.proof, t0.seats)
    assert replayed.value.error == "WrongVrfKey"

    first = task.claim_seat(v0, t0.proof, t0.seats)
    assert first.event("SeedFixed")["seed"] == seed
    assert seat(aworld, task, v1).event("CommitteeMemberAdded")["weight"] == 3
    assert task.committee() == {v0.address: 1, v1.address: 3}
    assert first.gas_used <= 300_000


def test_stake_changes_in_consecutive_blocks(aworld: World) -> None:
    """Each stake change writes a checkpoint for its block. A node estimates gas on the latest block, where
    a change of the block before is overwritten rather than pushed: the transaction must still get enough
    gas (each transaction is mined in a block of its own here)."""
    reg, v = aworld.registry, aworld.validators[0]
    blocks = [int(reg.bond(v, ETH).receipt["blockNumber"]) for _ in range(3)]
    blocks.append(int(reg.request_unbond(v, ETH).receipt["blockNumber"]))
    assert blocks == list(range(blocks[0], blocks[0] + 4))
    late = aworld.fresh[0]
    registered = int(reg.register_validator(late, STAKE).receipt["blockNumber"])
    assert [reg.stake_at(v.address, b) for b in blocks] == [2 * ETH, 3 * ETH, 4 * ETH, 3 * ETH]
    assert reg.total_stake_at(registered) == len(aworld.validators) * STAKE + 3 * ETH


def test_state_file_keeps_the_chain_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "anvil" / "state.json"
    admin = demo_account("admin")
    with start_anvil(state_path=state) as first:
        chain = Chain.connect(first.url)
        chain.fund(admin.address, 10 * ETH)
        registry = Registry.deploy(chain, admin, min_stake=10**15, unbonding_delay=500)
        code = bytes(chain.w3.eth.get_code(registry.address))
        balance = chain.w3.eth.get_balance(admin.address)
    assert not first.running
    assert state.is_file()

    with start_anvil(state_path=state) as second:
        assert second.port != 0
        chain = Chain.connect(second.url)
        assert bytes(chain.w3.eth.get_code(registry.address)) == code
        assert len(code) > 1000  # the registry's runtime code (with its immutables filled in)
        again = Registry(chain, registry.address)
        assert again.owner() == admin.address
        assert again.unbonding_delay() == 500
        assert chain.w3.eth.get_balance(admin.address) == balance


def test_stop_ends_the_node_and_a_taken_port_is_reported(anvil: Anvil) -> None:
    with pytest.raises(AnvilError, match="Address already in use"):
        start_anvil(port=anvil.port)
    node = start_anvil()
    assert Chain.connect(node.url).w3.eth.block_number == 0
    node.stop()
    node.stop()  # idempotent
    assert not node.running
    with pytest.raises(ChainError, match="no Ethereum JSON-RPC node answers"):
        Chain.connect(node.url)
