"""The administrator (paper 2.1): deploys and maintains the registry; takes part in no task."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from refiner.chain import Registry
from refiner.chain.connection import Chain
from refiner.chain.registry import DEFAULT_EPOCH_LENGTH, DEFAULT_SEAT_LOCK
from refiner.roles.participant import Participant


@dataclass
class Administrator(Participant):
    @staticmethod
    def deploy_registry(
        chain: Chain,
        account: LocalAccount,
        *,
        min_stake: int = 10**17,
        unbonding_delay: int = 7 * 86400,
        stake_unit: int | None = None,
        epoch_length: int = DEFAULT_EPOCH_LENGTH,
        max_seat_lock: int = DEFAULT_SEAT_LOCK,
    ) -> Registry:
        """Deploy the sortition contract and the registry, approving the current RefinerTask code;
        `epoch_length` is the blocks per sortition epoch (see `Registry.deploy`)."""
        return Registry.deploy(
            chain,
            account,
            min_stake=min_stake,
            unbonding_delay=unbonding_delay,
            stake_unit=stake_unit,
            epoch_length=epoch_length,
            max_seat_lock=max_seat_lock,
        )
