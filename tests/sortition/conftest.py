from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from refiner.chain import Chain, demo_account
from refiner.chain.sortition import Sortition


@pytest.fixture(scope="session")
def sortition_chain() -> tuple[Chain, LocalAccount]:
    """An embedded chain of its own (these tests only read, apart from the gas measurements)."""
    chain = Chain.connect()
    sender = demo_account("sortition-deployer")
    chain.fund(sender.address, 10**21)
    return chain, sender


@pytest.fixture(scope="session")
def sortition(sortition_chain: tuple[Chain, LocalAccount]) -> Sortition:
    chain, sender = sortition_chain
    return Sortition.deploy(chain, sender)
