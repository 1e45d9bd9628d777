"""Typed wrapper of the RefinerSortition contract (VRF verification and stake-weighted seat counts).

Deployed once; tasks call it. Every method here is a call (no state changes); refusals raise
:class:`~refiner.chain.errors.ContractRevert`: the contract's custom errors by name, an invalid VRF proof
as ``Error`` with Chainlink's message in ``args_by_name["message"]``.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount

from refiner.chain.build import load_artifact
from refiner.chain.connection import Chain
from refiner.chain.contract import ContractWrapper, TxResult
from refiner.chain.errors import REVERTS, ContractRevert, decode_revert, revert_data
from refiner.sortition.vrf import Point, Proof


class Sortition(ContractWrapper):
    ARTIFACT = "RefinerSortition"

    @classmethod
    def deploy(cls, chain: Chain, sender: LocalAccount) -> Sortition:
        address, receipt = chain.deploy(sender, load_artifact(cls.ARTIFACT))
        return cls(chain, address, from_block=receipt["blockNumber"])

    def _view(self, function: str, *args: Any) -> Any:
        """A call whose revert comes back decoded, as a transaction's would."""
        try:
            return self._call(function, *args)
        except REVERTS as exc:
            raise _decoded(exc) from None

    # ------------------------------------------------------------------ views

    def randomness(self, proof: Proof, seed: int) -> int:
        """The VRF output `proof` proves for `seed` (reverts ``Error`` if the proof is invalid)."""
        return int(self._view("randomness", proof.as_tuple(), seed))

    def seats(self, output: int, stake: int, total_stake: int, tau: int) -> int:
        return int(self._view("seats", output, stake, total_stake, tau))

    def effective_tau(self, tau: int, total_stake: int) -> int:
        """The τ' a task's draw among `total_stake` units uses (see ``binomial.effective_tau``)."""
        return int(self._view("effectiveTau", tau, total_stake))

    def verify_seats(
        self, proof: Proof, seed: int, stake: int, total_stake: int, tau: int
    ) -> tuple[int, int]:
        """(seats, output) for a proof of `seed`: verification and a task's draw (τ ≤ 64, drawn with
        ``effective_tau``) in one call."""
        j, output = self._view("verifySeats", proof.as_tuple(), seed, stake, total_stake, tau)
        return int(j), int(output)

    def key_hash(self, public_key: Point) -> bytes:
        return bytes(self._view("keyHash", list(public_key)))

    def max_total_stake(self) -> int:
        return int(self._call("MAX_TOTAL_STAKE"))

    # ------------------------------------------------------------------ measurement

    def verify_seats_transaction(
        self, sender: LocalAccount, proof: Proof, seed: int, stake: int, total_stake: int, tau: int
    ) -> TxResult:
        """Send verifySeats as a transaction (it changes nothing): its gas is what a task's claim pays
        for the check, plus the 21,000 base and the calldata."""
        return self._send(sender, "verifySeats", proof.as_tuple(), seed, stake, total_stake, tau)

    def estimate_verify_seats_gas(
        self, proof: Proof, seed: int, stake: int, total_stake: int, tau: int
    ) -> int:
        call = self.contract.functions.verifySeats(proof.as_tuple(), seed, stake, total_stake, tau)
        return int(call.estimate_gas())


_REASON_PREFIX = "execution reverted: "


def _decoded(exc: BaseException) -> ContractRevert:
    """The revert behind `exc`. The embedded chain hands a ``require`` message back as text, not as
    Error(string) data, so that case is rebuilt as ``Error`` with the message."""
    data = revert_data(exc)
    if data is None:
        seen: BaseException | None = exc
        while seen is not None:
            if seen.args and isinstance(seen.args[0], str) and seen.args[0].startswith(_REASON_PREFIX):
                return ContractRevert("Error", {"message": seen.args[0].removeprefix(_REASON_PREFIX)})
            seen = seen.__cause__ or seen.__context__
    return decode_revert(data)
