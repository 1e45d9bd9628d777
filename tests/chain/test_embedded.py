"""The embedded chain's log index answers eth_getLogs exactly as eth-tester's own scan does."""

from __future__ import annotations

import time
from typing import Any

from eth_utils import event_abi_to_log_topic

from refiner.chain import Chain
from refiner.chain.embedded import LogIndex
from tests.helpers import World, new_task, recruit, refused, start_round


def _scan(chain: Chain, query: dict[str, Any]) -> list[Any]:
    """What eth-tester answers without the index."""
    tester = chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    return list(tester.get_logs(**query))


def _indexed(chain: Chain, query: dict[str, Any]) -> list[Any]:
    endpoint = chain.w3.provider.api_endpoints["eth"]["getLogs"]  # type: ignore[attr-defined]
    assert isinstance(endpoint, LogIndex)
    return endpoint(chain.w3.provider.ethereum_tester, [query])  # type: ignore[attr-defined]


def _queries(world: World) -> list[dict[str, Any]]:
    registry = world.registry.address
    topics = [event_abi_to_log_topic(e) for e in world.registry.contract.abi if e["type"] == "event"]
    head = world.chain.w3.eth.block_number
    return [
        {},
        {"from_block": 0},
        {"from_block": 0, "to_block": "latest"},
        {"from_block": head // 2, "to_block": head - 1},
        {"from_block": head, "to_block": head},
        {"from_block": head + 5},
        {"from_block": 0, "address": registry},
        {"from_block": 0, "address": [registry, world.chain.w3.eth.accounts[0]]},
        {"from_block": 0, "topics": [topics[0]]},
        {"from_block": 0, "topics": [[topics[0], topics[-1]]]},
        {"from_block": 0, "topics": [None, None]},
        {"from_block": "earliest", "to_block": "latest"},
    ]


def test_index_matches_the_scan(world: World) -> None:
    task = new_task(world)
    recruit(world, task)
    start_round(world, task)
    assert len(_scan(world.chain, {"from_block": 0})) > 10
    for query in _queries(world):
        assert _indexed(world.chain, query) == _scan(world.chain, query), query
    # past the head and on the pending block eth-tester's scan raises BlockNotFound; a node answers []
    head = world.chain.w3.eth.block_number
    assert _indexed(world.chain, {"from_block": head + 1, "to_block": "pending"}) == []


def test_index_follows_reverted_and_new_blocks(world: World) -> None:
    chain = world.chain
    before = _indexed(chain, {"from_block": 0})
    snapshot = chain.snapshot()
    chain.fund(world.workers[0].address, 1)  # a block without logs
    recruit(world, new_task(world))
    grown = _indexed(chain, {"from_block": 0})
    assert grown == _scan(chain, {"from_block": 0})
    assert len(grown) > len(before)
    chain.revert(snapshot)
    assert _indexed(chain, {"from_block": 0}) == _scan(chain, {"from_block": 0}) == before
    chain.mine(3)  # other blocks at the same heights
    assert _indexed(chain, {"from_block": 0}) == _scan(chain, {"from_block": 0})


def test_a_refused_transaction_costs_nothing_and_leaves_no_block(world: World) -> None:
    """On the embedded chain a transaction runs once; a refusal is undone before it is reported."""
    task = new_task(world)
    chain, outsider = world.chain, world.outsider
    before = (
        chain.w3.eth.block_number,
        chain.w3.eth.get_balance(outsider.address),
        chain.w3.eth.get_transaction_count(outsider.address),
        chain.gas_used,
    )
    with refused("NotRequester", caller=outsider.address):
        task.open_recruitment(outsider)
    after = (
        chain.w3.eth.block_number,
        chain.w3.eth.get_balance(outsider.address),
        chain.w3.eth.get_transaction_count(outsider.address),
        chain.gas_used,
    )
    assert after == before
    assert _indexed(chain, {"from_block": 0}) == _scan(chain, {"from_block": 0})
    assert task.open_recruitment(world.requester).names()  # the chain carries on as before


def test_the_embedded_chain_s_clock_moves_only_when_told(world: World) -> None:
    chain = world.chain
    assert chain.is_dev_chain and chain.manual_clock
    before = chain.now()
    assert chain.now() == before  # no block without a transaction or a request
    chain.increase_time(100)
    assert chain.now() >= before + 100


def test_the_clock_moves_on_after_a_revert_to_an_older_block() -> None:
    """A revert rebuilds the pending block with the wall clock, which may be past the latest block plus
    the jump asked for (a session's shared chain reverted after a slow test): the jump still lands, at
    least that far on, instead of "traveling backwards in time" (CI failed so once)."""
    chain = Chain.connect()
    chain.mine(1)
    snapshot, before = chain.snapshot(), chain.now()
    time.sleep(2.5)
    chain.revert(snapshot)
    chain.increase_time(1)
    assert chain.now() >= before + 1
