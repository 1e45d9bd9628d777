// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title What a Refiner task contract needs from the registry.
interface IRefinerRegistry {
    /// @notice Whether `account` is a registered worker.
    function isWorker(address account) external view returns (bool);

    /// @notice Whether `account` is a registered validator.
    function isValidator(address account) external view returns (bool);

    /// @notice Whether `task` is registered and has not terminated.
    function isActiveTask(address task) external view returns (bool);

    /// @notice Records that `validator` sits on the calling task's committee; locks its stake until the
    /// task terminates. Returns the validator's bonded stake.
    function takeSeat(address validator) external returns (uint256 stake);

    /// @notice Called by a task when it terminates: removes it from the active list, unlocks its committee.
    function onTaskTerminated() external;
}
