// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title What the registry reads from a task contract before listing it.
interface IRefinerTask {
    /// @notice The account that deployed the task and pays its rewards.
    function requester() external view returns (address);

    /// @notice The registry this task was deployed for.
    function registry() external view returns (address);

    /// @notice Whether the task is in its initial PENDING state (never opened for recruitment).
    function isNew() external view returns (bool);

    /// @notice The validators seated on the committee, in seat order.
    function committeeMembers() external view returns (address[] memory);
}
