"""`Chain` drives its node through a backend and never asks what kind it is; a backend without dev-chain
helpers refuses them with one clear error."""

from __future__ import annotations

import pytest

from refiner.chain import Chain, ChainError, demo_account
from refiner.chain.backends import Anvil, Backend, Embedded


def test_each_kind_of_node_has_its_backend() -> None:
    chain = Chain.connect()
    assert isinstance(chain.backend, Embedded) and chain.kind == "embedded"
    assert chain.is_dev_chain and chain.manual_clock
    assert Anvil.dev_chain and not Anvil.manual_clock and not Backend.dev_chain


def test_a_node_without_dev_helpers_refuses_them_with_one_clear_error() -> None:
    embedded = Chain.connect()
    node = Chain(embedded.w3, "generic", Backend())  # driven as any JSON-RPC node (anvil: test_anvil.py)
    assert not node.is_dev_chain and not node.manual_clock and node.kind == "rpc"
    before = node.now()
    with pytest.raises(ChainError, match="time travel needs a dev chain"):
        node.increase_time(10)
    with pytest.raises(ChainError, match="mining on demand needs a dev chain"):
        node.mine()
    with pytest.raises(ChainError, match="funding needs a dev chain"):
        node.fund(demo_account("worker-0").address, 1)
    assert node.now() == before
