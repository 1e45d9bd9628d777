// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Types and pure helpers of a Refiner task, shared by the contract and mirrored by the Python layer.
library TaskTypes {
    /// @notice The paper's task statuses (2.3.2–2.3.8).
    enum Status {
        PENDING,
        RECRUITING,
        TRAINING,
        EVALUATING,
        REVEALING,
        REWARDING,
        TERMINATED
    }

    enum Aggregation {
        FedAvg,
        FedProx
    }

    enum TerminationReason {
        MaxRounds,
        TargetReached,
        Stopped,
        Idle
    }

    /// @notice Seconds each timed phase may last. `idle` bounds how long the task may wait between rounds
    /// before anybody can terminate it (so committee stakes never stay locked); `claim` is how long
    /// rewards stay reserved after the task terminates before the requester can take back what was not
    /// claimed (rewards accrue over the rounds and can be claimed once for the whole task).
    struct Durations {
        uint64 recruitment;
        uint64 training;
        uint64 evaluation;
        uint64 reveal;
        uint64 idle;
        uint64 claim;
    }

    /// @notice A task's configuration. Fractions (accuracy, loss threshold ε, FedProx μ) are fixed point
    /// with 6 decimals: 1_000_000 means 1.0. `signUpDeposit` (wei, may be 0) is what a worker pays to
    /// sign up: refunded with its first submission, forfeited to the budget if it submits nothing in
    /// round 1, so that squatting worker slots costs the squatter.
    struct Config {
        string description;
        uint32 targetAccuracy;
        uint32 maxRounds;
        uint32 maxWorkers;
        uint32 committeeSize;
        uint64 epsilon;
        Aggregation aggregation;
        uint64 mu;
        uint256 workerReward;
        uint256 validatorReward;
        Durations durations;
        uint256 signUpDeposit;
    }

    /// @notice What a validator commits to and reveals. Only the deterministic part (results root, total
    /// contribution, payees, accuracy, model digest) is voted on; the handles are the validator's own:
    /// `aggregateHandle` names its encrypted copy of the aggregated model for the requester, and
    /// `detailsHandle` the full manifest (per-worker results and key envelope) in storage.
    struct Manifest {
        bytes32 resultsRoot;
        uint256 totalContribution;
        uint32 payees;
        uint32 accuracy;
        bytes32 modelDigest;
        bytes aggregateHandle;
        bytes detailsHandle;
    }

    /// @notice A round's counters and consensus results. Its rewards are escrowed while it runs (the task's
    /// `workerReward` and `validatorReward`, see {RefinerTask-owed}); when it is finalized with consensus
    /// they move to the task's reward escrows, from which claims of any later round are paid too.
    struct Round {
        uint32 submissions;
        uint32 commits;
        uint32 reveals;
        uint32 payees;
        uint32 accuracy;
        bool finalized;
        /// @dev the committee's total vote weight, copied by {RefinerTask-startRound} next to the counters
        /// that every reveal updates (a cold read of the task's `totalWeight` costs each reveal 2_100 gas)
        uint64 totalWeight;
        bytes32 consensusKey;
        bytes32 resultsRoot;
        uint256 totalContribution;
        bytes32 modelDigest;
    }

    uint32 internal constant ONE = 1_000_000;
    /// @notice Longest any phase may last: deadlines are `block.timestamp + duration` in uint64, so an
    /// unbounded duration could overflow and freeze the task in a phase; and a task whose phases last
    /// years is no task anybody should sit on (the registry bounds a seat's stake lock separately).
    uint64 internal constant MAX_DURATION = 30 days;
    /// @notice Longest handle (a content identifier) accepted on chain: a CIDv0 is 34 bytes, a CIDv1 36.
    uint256 internal constant MAX_HANDLE = 64;
    /// @notice Largest expected committee size τ (RefinerSortition.MAX_TAU): keeps every stake inside the
    /// sortition's fixed-point domain and the committee far below MAX_COMMITTEE members (see
    /// RefinerSortition.effectiveTau).
    uint32 internal constant MAX_COMMITTEE_SIZE = 64;

    error InvalidConfig(string reason);

    /// @notice Reverts with {InvalidConfig} naming the first setting that is out of range.
    function validate(Config memory c) internal pure {
        if (bytes(c.description).length == 0) revert InvalidConfig("description is empty");
        if (c.targetAccuracy > ONE) revert InvalidConfig("targetAccuracy above 1_000_000");
        if (c.maxRounds == 0) revert InvalidConfig("maxRounds is 0");
        if (c.maxWorkers == 0) revert InvalidConfig("maxWorkers is 0");
        if (c.committeeSize == 0) revert InvalidConfig("committeeSize is 0");
        if (c.committeeSize > MAX_COMMITTEE_SIZE) revert InvalidConfig("committeeSize above 64");
        if (c.epsilon == 0) revert InvalidConfig("epsilon is 0");
        if (c.aggregation == Aggregation.FedProx && c.mu == 0) revert InvalidConfig("FedProx needs mu > 0");
        if (c.aggregation == Aggregation.FedAvg && c.mu != 0) revert InvalidConfig("FedAvg takes no mu");
        Durations memory d = c.durations;
        if (d.recruitment == 0 || d.training == 0 || d.evaluation == 0 || d.reveal == 0 || d.idle == 0 || d.claim == 0)
        {
            revert InvalidConfig("every duration must be > 0");
        }
        if (
            d.recruitment > MAX_DURATION || d.training > MAX_DURATION || d.evaluation > MAX_DURATION
                || d.reveal > MAX_DURATION || d.idle > MAX_DURATION || d.claim > MAX_DURATION
        ) revert InvalidConfig("a duration exceeds 30 days");
        if (c.workerReward > type(uint256).max - c.validatorReward) revert InvalidConfig("rewards overflow");
        // a member's accrued seat rewards (≤ maxRounds × validatorReward) stay below 2^128
        if (c.validatorReward > type(uint96).max) revert InvalidConfig("validatorReward above 2^96 - 1");
        if (c.signUpDeposit > type(uint72).max) revert InvalidConfig("signUpDeposit above 2^72 - 1");
    }

    /// @notice Whether `handle` can name stored content: non-empty and at most {MAX_HANDLE} bytes.
    function isHandle(bytes calldata handle) internal pure returns (bool) {
        return handle.length != 0 && handle.length <= MAX_HANDLE;
    }

    /// @notice Hash of a whole manifest, handles included: what a commitment binds.
    function hash(Manifest calldata m) internal pure returns (bytes32) {
        return keccak256(abi.encode(m));
    }

    /// @notice Top bit of a ballot word: set in a commitment as stored, clear in every vote key, so that a
    /// ballot tells whether its validator revealed (a committer cannot store a word equal to a vote key).
    bytes32 internal constant COMMITTED = bytes32(uint256(1) << 255);

    /// @notice Hash of a manifest's deterministic part, top bit cleared ({COMMITTED}): validators with
    /// equal results have equal keys.
    function voteKey(Manifest calldata m) internal pure returns (bytes32) {
        return keccak256(abi.encode(m.resultsRoot, m.totalContribution, m.payees, m.accuracy, m.modelDigest))
            & ~COMMITTED;
    }

    /// @notice A worker's leaf in a round's results tree, as in OpenZeppelin's standard Merkle tree
    /// (double-hashed ABI encoding), so leaves cannot be confused with inner nodes. `earned` is what the
    /// worker has earned in the task through this round (wei): its `earned` in the last earlier consensus
    /// round it has a leaf in, plus `workerReward × contribution / totalContribution` of this round when
    /// accepted with a positive contribution; so one claim with its latest leaf pays every round.
    function leafHash(address worker, bool accepted, uint64 samples, int256 contribution, uint256 earned)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(keccak256(abi.encode(worker, accepted, samples, contribution, earned))));
    }
}
