// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {VRF} from "@chainlink/contracts/src/v0.8/vrf/VRF.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IRefinerSortition} from "./interfaces/IRefinerSortition.sol";

/// @title Refiner validator sortition
/// @notice Stake-weighted cryptographic sortition as in Algorand: a validator proves its VRF output for a
/// task's seed with Chainlink's secp256k1 VRF, and its number of committee seats is the binomial quantile
/// of that output. Deployed once; tasks call it. Stateless.
/// @dev The seat count is computed in Q255 fixed point (1.0 = 2^255) with the exact integer steps of the
/// Python mirror `refiner.sortition.binomial.seats`, so both agree bit for bit:
///   q = floor((W - tau) * 2^255 / W); B(0) = q^w by squaring, each product floor(a * b / 2^255);
///   B(k+1) = floor(B(k) * (w - k) * tau / ((k + 1) * (W - tau)));
///   j = the smallest j with (output >> 1) < sum_{k<=j} B(k), stopping early at a term that rounds to 0,
///   and at j = w.
/// All roundings are downwards. Stakes may be counted in any integer unit (wei included): the cost grows
/// with log2(stake) and with the number of seats, not with the stake.
contract RefinerSortition is VRF, IRefinerSortition {
    /// @notice 1.0 in the Q255 fixed point of the binomial.
    uint256 public constant ONE = 1 << 255;
    /// @notice Largest total stake accepted: keeps (w - k) * tau and (k + 1) * (W - tau) within 256 bits.
    uint256 public constant MAX_TOTAL_STAKE = type(uint128).max;
    /// @notice Smallest accepted B(0) = (1 - tau / W)^w, in Q255 units (2^-192): below it the binomial
    /// would lose precision. Means w * ln(W / (W - tau)) <= 133, about 133 expected seats when tau << W.
    uint256 public constant MIN_FIRST_TERM = 1 << 63;
    /// @notice Largest expected committee size {verifySeats} accepts (a task's `committeeSize` bound).
    uint256 public constant MAX_TAU = 64;

    /// @notice `stake` is larger than `totalStake`.
    error StakeExceedsTotal(uint256 stake, uint256 totalStake);
    /// @notice `totalStake` is above MAX_TOTAL_STAKE.
    error TotalStakeTooLarge(uint256 totalStake);
    /// @notice The validator's expected seat count is too large for the fixed point (B(0) < 2^-192).
    error ExpectedSeatsTooLarge(uint256 stake, uint256 totalStake, uint256 tau);
    /// @notice `tau` is above MAX_TAU.
    error TauTooLarge(uint256 tau, uint256 maximum);

    // solhint-disable-next-line no-empty-blocks
    constructor() {}

    /// @notice The VRF output (randomness) proven by `proof` for `seed` under the key `proof.pk`.
    /// @dev Verifies against the `seed` argument, never `proof.seed`; the caller derives the seed itself
    /// and must check that `proof.pk` is the key registered for the claimant (see `keyHash`).
    /// Reverts with Error(string) from Chainlink's VRF library when the proof is invalid.
    /// @param proof A proof in the field order of `VRF.Proof`.
    /// @param seed The seed the output must be for.
    /// @return The VRF output keccak256(abi.encode(3, proof.gamma)).
    function randomness(Proof calldata proof, uint256 seed) external view returns (uint256) {
        return _randomValueFromVRFProof(proof, seed);
    }

    /// @notice Number of committee seats for a validator with `stake` of `totalStake` units, expected
    /// committee size `tau`, and VRF output `output`: the Binomial(stake, tau / totalStake) quantile of
    /// output / 2^256.
    /// @dev Returns 0 when stake == 0 (before any check); reverts StakeExceedsTotal, TotalStakeTooLarge;
    /// returns 0 when tau == 0 and `stake` when tau >= totalStake; reverts ExpectedSeatsTooLarge when
    /// B(0) < 2^-192. The loop runs j times (j <= stake).
    /// @param output A uniformly distributed 256-bit value (the VRF output).
    /// @param stake The validator's stake w, in the same integer unit as totalStake.
    /// @param totalStake The total stake W of all eligible validators.
    /// @param tau The expected committee size (seats).
    /// @return j The number of seats, at most `stake`.
    function seats(
        uint256 output,
        uint256 stake,
        uint256 totalStake,
        uint256 tau
    ) public pure returns (uint256 j) {
        if (stake == 0) return 0;
        if (stake > totalStake) revert StakeExceedsTotal(stake, totalStake);
        if (totalStake > MAX_TOTAL_STAKE) revert TotalStakeTooLarge(totalStake);
        if (tau == 0) return 0;
        if (tau >= totalStake) return stake;
        uint256 rest = totalStake - tau;
        uint256 term = _firstTerm(Math.mulDiv(rest, ONE, totalStake), stake);
        if (term < MIN_FIRST_TERM) revert ExpectedSeatsTooLarge(stake, totalStake, tau);
        uint256 u = output >> 1;
        uint256 cdf = term;
        while (u >= cdf && j < stake) {
            term = Math.mulDiv(term, (stake - j) * tau, (j + 1) * rest);
            unchecked {
                ++j;
            }
            if (term == 0) break;
            cdf += term;
        }
    }

    /// @notice The expected committee size a draw among `totalStake` units uses for a task that asks for
    /// `tau` seats: τ' = τ when τ ≥ W (every unit is a seat) or τ ≤ ⌈W/2⌉, else ⌈W/2⌉.
    /// @dev With τ ≤ MAX_TAU = 64 this keeps every stake w ≤ W inside the domain of {seats}, so
    /// ExpectedSeatsTooLarge cannot be hit by a draw: when τ' < W, x = τ'/W ≤ 1/2 or W odd and
    /// x = (W+1)/(2W), and w·ln(W/(W−τ')) ≤ W·ln(W/(W−τ')) = τ'·(−ln(1−x)/x). For x ≤ 1/2 this is at most
    /// τ'·2·ln 2 ≤ 88.8; for odd W = 2τ'−1 ≤ 127 it is W·ln(2W/(W−1)) ≤ 127·ln(254/126) < 89.1. Both are
    /// below the 133 (= 192·ln 2) the fixed point allows, with room for its downward rounding (each of
    /// its ≤ 2·128 products loses < 2^-63 relative). Every unit is drawn with the same p = τ'/W, so seats
    /// follow stake, and splitting a stake over accounts changes nothing (Bin(a,p) + Bin(b,p) = Bin(a+b,p)).
    /// The seats of all validators add up to Bin(W, τ'/W), mean τ' ≤ 64, so a committee of more than 256
    /// members (each holds ≥ 1 seat) has probability ≤ e^-64·(64e/256)^256 < 1e-70 (Chernoff).
    /// @param tau The task's expected committee size.
    /// @param totalStake The total stake W in units.
    /// @return The τ' the binomial is drawn with.
    function effectiveTau(uint256 tau, uint256 totalStake) public pure returns (uint256) {
        if (tau >= totalStake) return tau;
        uint256 half = totalStake / 2 + (totalStake & 1);
        return tau < half ? tau : half;
    }

    /// @notice Verifies `proof` for `seed` and returns the seats it wins for a task with expected committee
    /// size `tau`: `seats(randomness(proof, seed), stake, totalStake, effectiveTau(tau, totalStake))`.
    /// @dev The caller must check that `proof.pk` is the claimant's registered VRF key. Reverts
    /// TauTooLarge when tau > MAX_TAU; never ExpectedSeatsTooLarge (see {effectiveTau}).
    /// @param proof A proof in the field order of `VRF.Proof`.
    /// @param seed The seed the output must be for.
    /// @param stake The claimant's stake w.
    /// @param totalStake The total stake W.
    /// @param tau The expected committee size, at most MAX_TAU.
    /// @return j The number of seats won.
    /// @return output The verified VRF output.
    function verifySeats(
        Proof calldata proof,
        uint256 seed,
        uint256 stake,
        uint256 totalStake,
        uint256 tau
    ) external view returns (uint256 j, uint256 output) {
        if (tau > MAX_TAU) revert TauTooLarge(tau, MAX_TAU);
        output = _randomValueFromVRFProof(proof, seed);
        j = seats(output, stake, totalStake, effectiveTau(tau, totalStake));
    }

    /// @notice The identifier of a VRF public key, keccak256(abi.encode(publicKey)) (Chainlink's hashOfKey).
    /// @param publicKey The key's affine coordinates (x, y).
    /// @return The key hash a registry can store and compare with `keyHash(proof.pk)`.
    function keyHash(uint256[2] calldata publicKey) external pure returns (bytes32) {
        return keccak256(abi.encode(publicKey));
    }

    /// @dev base^exponent in Q255 by squaring; skips the squaring after the last bit, as the Python mirror.
    function _firstTerm(uint256 base, uint256 exponent) private pure returns (uint256 result) {
        result = ONE;
        while (true) {
            if (exponent & 1 == 1) result = _mulQ(result, base);
            exponent >>= 1;
            if (exponent == 0) return result;
            base = _mulQ(base, base);
        }
    }

    /// @dev floor(a * b / 2^255) for a, b <= 2^255, from the 512-bit product (hi, lo): the product is
    /// at most 2^510, so hi < 2^255 and hi * 2 + lo / 2^255 is the exact quotient. Equals
    /// Math.mulDiv(a, b, ONE) at a tenth of the gas.
    function _mulQ(uint256 a, uint256 b) private pure returns (uint256) {
        unchecked {
            uint256 lo = a * b;
            uint256 mm = mulmod(a, b, type(uint256).max);
            uint256 hi = mm - lo - (mm < lo ? 1 : 0);
            return (hi << 1) | (lo >> 255);
        }
    }
}
