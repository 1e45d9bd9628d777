// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title What a Refiner task contract needs from the registry.
interface IRefinerRegistry {
    /// @notice What a task needs to verify a validator's sortition, returned when the seat is taken.
    struct SeatDraw {
        uint256[2] vrfKey;
        uint256 stake; // wei bonded at the snapshot block
        uint256 stakeUnits; // floor(stake / stakeUnit)
        uint256 totalUnits; // floor(total stake at the snapshot block / stakeUnit)
        address sortition;
    }

    /// @notice Whether `account` is a registered worker.
    function isWorker(address account) external view returns (bool);

    /// @notice Whether `account` is a registered validator.
    function isValidator(address account) external view returns (bool);

    /// @notice Whether `task` is registered and has not terminated.
    function isActiveTask(address task) external view returns (bool);

    /// @notice Wei per unit of sortition weight.
    function stakeUnit() external view returns (uint256);

    /// @notice The RefinerSortition contract every task uses.
    function sortition() external view returns (address);

    /// @notice A validator's VRF public key.
    function vrfKey(address validator) external view returns (uint256[2] memory);

    /// @notice A validator's bonded stake at the end of block `blockNumber`.
    function stakeAt(address validator, uint256 blockNumber) external view returns (uint256);

    /// @notice All validators' bonded stake at the end of block `blockNumber`.
    function totalStakeAt(uint256 blockNumber) external view returns (uint256);

    /// @notice The sortition epoch a task opening recruitment now draws with, its seed block and the
    /// snapshot block of stakes (the same for every task of the epoch).
    function nextSeedEpoch() external view returns (uint64 epoch, uint64 seedBlock, uint64 snapshotBlock);

    /// @notice Fixes and returns `epoch`'s seed; 0 if its seed block's hash has aged out unfixed.
    function fixEpochSeed(uint256 epoch) external returns (uint256);

    /// @notice Records that `validator` sits on the calling task's committee and locks its stake until the
    /// task terminates or for `maxSeatLock` seconds, whichever is sooner; returns what the task needs to verify the validator's sortition for stakes as
    /// bonded at the end of `snapshotBlock`. The stake drawn with must still be bonded.
    function takeSeat(address validator, uint256 snapshotBlock) external returns (SeatDraw memory);

    /// @notice Called by a task when it terminates: removes it from the active list, unlocks its committee.
    function onTaskTerminated() external;
}
