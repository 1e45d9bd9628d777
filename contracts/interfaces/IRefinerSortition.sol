// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {VRF} from "@chainlink/contracts/src/v0.8/vrf/VRF.sol";

/// @title What a task needs from the sortition contract.
interface IRefinerSortition {
    /// @notice The VRF output `proof` proves for `seed` under `proof.pk`; reverts if the proof is invalid.
    function randomness(VRF.Proof calldata proof, uint256 seed) external view returns (uint256);

    /// @notice Verifies `proof` for `seed` and returns the seats it wins with `stake` of `totalStake`
    /// when `tau` (≤ 64) seats are expected, drawn with the effective τ' = effectiveTau(tau, totalStake),
    /// and the VRF output.
    function verifySeats(VRF.Proof calldata proof, uint256 seed, uint256 stake, uint256 totalStake, uint256 tau)
        external
        view
        returns (uint256 j, uint256 output);
}
