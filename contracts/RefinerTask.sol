// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {VRF} from "@chainlink/contracts/src/v0.8/vrf/VRF.sol";
import {IRefinerRegistry} from "./interfaces/IRefinerRegistry.sol";
import {IRefinerSortition} from "./interfaces/IRefinerSortition.sol";
import {IRefinerTask} from "./interfaces/IRefinerTask.sol";
import {TaskTypes} from "./TaskTypes.sol";

/// @title Refiner task: one federated-learning task, its escrow, its rounds and its payments (paper 2.3).
/// @notice Deployed by the requester, listed with {RefinerRegistry-registerTask}. Statuses follow the paper:
/// PENDING → RECRUITING → PENDING → TRAINING → EVALUATING → REVEALING → REWARDING → (PENDING | TERMINATED).
/// Every timed phase ends when everyone has acted or, after its deadline, when anybody calls {advance}.
/// Ether is held as: `budget` (the requester's refundable balance); the running round's worker and
/// validator rewards, escrowed by {startRound}; the task's reward escrows ({workerEscrow},
/// {validatorEscrow}), where each round finalized with consensus moves what it pays and from which
/// workers and validators claim what they earned over all rounds, in one transaction if they like; and
/// the workers' sign-up deposits ({depositsHeld}) until round 1's training ends.
/// @dev Keep this contract free of `immutable` variables: the registry approves its runtime codehash.
contract RefinerTask is IRefinerTask, ReentrancyGuardTransient {
    using TaskTypes for TaskTypes.Manifest;

    /// @notice Most committee members a task can seat (bit sets over members fit in one word).
    uint256 public constant MAX_COMMITTEE = 256;
    /// @dev a worker's bit in its round word of `_submissions`
    uint256 private constant SUBMITTED = 1;
    /// @dev `_workerNumber`: sign-up index + 1 in the low 32 bits, the last round claimed in the next 32,
    /// wei paid in the task above them
    uint256 private constant NUMBER_BITS = 32;
    uint256 private constant PAID_SHIFT = 64;
    /// @dev `_seat`: seat index + 1 in the low 16 bits, vote weight in the next 64, the round of the
    /// member's ballot (`_ballot`) in the next 32, the seat rewards (wei per seat) accrued and not claimed
    /// in the next 128, and FOLDED when the ballot's round is counted in them already. A ballot's round is
    /// counted when the member commits in a later round (every earlier round is finalized by then) or
    /// claims: the ballot word is one per member, rewritten each round (2_900 gas instead of a fresh
    /// word's 20_000), and a claim reads no round's storage but the last one's.
    uint256 private constant WEIGHT_SHIFT = 16;
    uint256 private constant BALLOT_ROUND_SHIFT = 80;
    uint256 private constant ACCRUED_SHIFT = 112;
    uint256 private constant FOLDED = 1 << 240;
    /// @dev the consensus vote key's weight in `_voteWeight` keeps the round's reward per seat above this
    uint256 private constant UNIT_SHIFT = 128;

    address public requester;
    address public registry;
    TaskTypes.Config private _config;

    TaskTypes.Status public status;
    bool public recruitmentOpened;
    bool public recruitmentClosed;
    /// @notice The current (or last) round, counted from 1; 0 before the first round.
    uint32 public currentRound;
    /// @notice When the current timed phase ends (0 when no phase is timed).
    uint64 public deadline;
    /// @dev `_workers.length` and `_committee.length`, fixed when recruitment closes and kept in the status
    /// slot, which every phase's calls read anyway.
    uint32 private _workerCount;
    uint32 private _committeeCount;
    /// @dev `_config.signUpDeposit` (< 2^72), kept in the status slot too: signUp and every round-1
    /// submission read it, and the slot is warm (a cold read of the config's slot costs 2_000 gas more)
    uint72 private _signUpDeposit;
    /// @notice The requester's refundable balance: deposits and released escrow, not yet withdrawn.
    uint256 public budget;
    /// @notice The last round that reached consensus (0 if none): its model is the global model.
    uint32 public lastConsensusRound;
    /// @notice Stakes are counted as they were at the end of this block (the one before `seedBlock`).
    uint64 public snapshotBlock;
    /// @notice The first block of `seedEpoch`, whose hash seeds the sortition of every task of that epoch.
    uint64 public seedBlock;
    /// @notice The registry's sortition epoch whose seed draws this task's committee.
    uint64 public seedEpoch;
    /// @notice The block this task was deployed in: where readers start scanning its events.
    uint64 public createdBlock;
    /// @notice Until when rewards can be claimed: `claim` seconds after the task terminated (0 before).
    uint64 public claimDeadline;
    /// @notice Worker rewards of finalized rounds not claimed yet (the rounding dust of each round's
    /// shares stays here until {releaseUnclaimed}).
    uint256 public workerEscrow;
    /// @notice Validator rewards of finalized rounds not claimed yet.
    uint256 public validatorEscrow;
    /// @notice The sortition seed (0 until fixed by {fixSeed} or the first {claimSeat}).
    uint256 public seed;

    address[] private _workers;
    /// @dev per worker: its sign-up index + 1 (0 if not signed up), the last round it claimed in and the
    /// wei it has been paid (see NUMBER_BITS, PAID_SHIFT)
    mapping(address => uint256) private _workerNumber;

    address[] private _committee;
    /// @dev per member: (seat index + 1), vote weight, its ballot's round, accrued seat rewards (see
    /// WEIGHT_SHIFT, BALLOT_ROUND_SHIFT, ACCRUED_SHIFT, FOLDED)
    mapping(address => uint256) private _seat;
    /// @dev per member, its ballot of the round in `_seat`: its commitment with the top bit set
    /// (TaskTypes.COMMITTED), replaced by its vote key (top bit clear) when it reveals.
    mapping(address => bytes32) private _ballot;
    /// @notice Sum of the committee's vote weights.
    uint256 public totalWeight;

    /// @dev workers who took their deposit back after the task terminated before round 1 (the only way a
    /// deposit is paid back other than with the round-1 submission)
    mapping(address => bool) private _depositRefunded;
    uint256 private _depositRefunds;

    mapping(uint256 round => TaskTypes.Round) private _rounds;
    /// @dev per round, one bit per worker at sign-up index mod 256 of word index / 256 (SUBMITTED). One
    /// word serves 256 workers, so only the first of them writes a fresh slot each round.
    mapping(uint256 round => mapping(uint256 word => uint256)) private _submissions;
    /// @dev vote weight revealed per key (low 128 bits); once the round is finalized, the consensus key's
    /// entry also holds the round's validator reward per seat (above UNIT_SHIFT), so that counting a
    /// member's round reads one word: its ballot's entry.
    mapping(uint256 round => mapping(bytes32 voteKey => uint256)) private _voteWeight;

    event StatusChanged(TaskTypes.Status from, TaskTypes.Status to, uint32 round, uint64 deadline);
    event Funded(address indexed from, uint256 amount, uint256 budget);
    event Withdrawn(address indexed to, uint256 amount, uint256 budget);
    event WorkerSignedUp(address indexed worker, uint256 workers);
    event CommitteeMemberAdded(address indexed validator, uint64 weight, uint256 stake);
    event SeedScheduled(uint64 epoch, uint64 seedBlock, uint64 snapshotBlock);
    event SeedFixed(uint256 seed);
    event RoundStarted(
        uint32 indexed round,
        bytes modelHandle,
        bytes modelKeysHandle,
        bytes validationHandle,
        bytes validationKeysHandle,
        uint256 workerReward,
        uint256 validatorReward
    );
    event TrainingResultsSubmitted(
        uint32 indexed round, address indexed worker, uint64 samples, bytes modelHandle, bytes keysHandle
    );
    event ManifestCommitted(uint32 indexed round, address indexed validator, bytes32 commitment, bytes32 memo);
    /// @dev `salt` opens the validator's stored details, sealed until now so that no member can copy a vote.
    event ManifestRevealed(
        uint32 indexed round,
        address indexed validator,
        bytes32 indexed voteKey,
        TaskTypes.Manifest manifest,
        bytes32 salt
    );
    event RoundFinalized(
        uint32 indexed round, bytes32 voteKey, uint256 agreeingWeight, uint32 accuracy, bytes32 modelDigest
    );
    event NoConsensus(uint32 indexed round, uint256 refunded);
    /// @dev `round` is the round whose results leaf (worker) or through which (validator) the claim pays:
    /// `amount` covers every round not claimed before.
    event RewardClaimed(uint32 indexed round, address indexed account, uint256 amount);
    /// @dev `round` is 0 when the unclaimed rewards of the whole task are released.
    event EscrowReleased(uint32 indexed round, uint256 amount);
    event TaskTerminated(TaskTypes.TerminationReason reason, uint32 rounds);
    event DepositRefunded(address indexed worker, uint256 amount);
    event DepositsForfeited(uint256 workers, uint256 amount, uint256 budget);

    error NotRequester(address caller);
    error WrongStatus(TaskTypes.Status actual);
    error NotRegisteredInRegistry();
    error RecruitmentAlreadyOpened();
    error RecruitmentNotClosed();
    error DeadlinePassed(uint64 deadline);
    error DeadlineNotReached(uint64 deadline);
    error NotRegisteredWorker(address account);
    error AlreadySignedUp(address worker);
    error WorkersFull(uint32 maxWorkers);
    error CommitteeFull(uint32 committeeSize);
    error AlreadyOnCommittee(address validator);
    error NotRegisteredValidator(address account);
    error SeedNotReady(uint64 seedBlock);
    error WrongVrfKey();
    error NotSelected();
    error WrongSeatCount(uint256 claimed, uint256 actual);
    error NoWorkers();
    error NoCommittee();
    error InsufficientBudget(uint256 budget, uint256 needed);
    error NotSignedUp(address account);
    error AlreadySubmitted(address worker);
    error ZeroSamples();
    error NotOnCommittee(address account);
    error EmptyCommitment();
    error AlreadyCommitted(address validator);
    error NotCommitted(address validator);
    error AlreadyRevealed(address validator);
    error CommitmentMismatch();
    error NotConsensusManifest(bytes32 voteKey, bytes32 consensusKey);
    error RoundNotFinalized(uint32 round);
    error AlreadyClaimed(address account, uint32 round);
    error NoReward();
    error InvalidProof();
    error RewardExceedsEscrow(uint256 amount, uint256 escrow);
    error ClaimWindowOpen(uint64 closesAt);
    error ClaimWindowClosed(uint64 closedAt);
    error NothingToRelease();
    error AmountExceedsBudget(uint256 amount, uint256 budget);
    error ZeroAmount();
    error InvalidHandle(uint256 length);
    error ZeroAddress();
    error WrongDeposit(uint256 sent, uint256 required);
    error DepositNotRefundable(address worker);

    modifier onlyRequester() {
        if (msg.sender != requester) revert NotRequester(msg.sender);
        _;
    }

    modifier inStatus(TaskTypes.Status expected) {
        if (status != expected) revert WrongStatus(status);
        _;
    }

    /// @dev Acting in a timed phase is allowed up to and including its deadline.
    modifier beforeDeadline() {
        if (block.timestamp > deadline) revert DeadlinePassed(deadline);
        _;
    }

    /// @param registry_ The Refiner registry the task will be listed in.
    /// @param config_ The task's configuration, fixed for its lifetime (see {TaskTypes-Config}).
    constructor(address registry_, TaskTypes.Config memory config_) payable {
        if (registry_ == address(0)) revert ZeroAddress();
        TaskTypes.validate(config_);
        requester = msg.sender;
        registry = registry_;
        _config = config_;
        _signUpDeposit = uint72(config_.signUpDeposit); // < 2^72 ({TaskTypes-validate})
        createdBlock = uint64(block.number);
        if (msg.value != 0) {
            budget = msg.value;
            emit Funded(msg.sender, msg.value, msg.value);
        }
    }

    // ------------------------------------------------------------------ requester

    /// @notice Adds `msg.value` to the requester's budget ("supply rewards").
    /// Requirements: caller is the requester; value > 0; task not terminated. Emits {Funded}.
    function fund() external payable onlyRequester {
        if (msg.value == 0) revert ZeroAmount();
        if (status == TaskTypes.Status.TERMINATED) revert WrongStatus(status);
        budget += msg.value;
        emit Funded(msg.sender, msg.value, budget);
    }

    /// @notice Pays `amount` of the refundable budget back to the requester. Escrow of started rounds is
    /// not part of the budget and cannot be withdrawn.
    /// Requirements: caller is the requester; 0 < `amount` ≤ {budget}. Emits {Withdrawn}.
    function withdraw(uint256 amount) external onlyRequester nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (amount > budget) revert AmountExceedsBudget(amount, budget);
        budget -= amount;
        emit Withdrawn(msg.sender, amount, budget);
        Address.sendValue(payable(msg.sender), amount);
    }

    /// @notice Opens member recruitment (paper 2.3.3): workers may {signUp}; validators evaluate their
    /// sortition for the seed of the registry's next epoch and {claimSeat}. Stakes count as bonded at the
    /// end of the block before that epoch starts. Every task opening in the same epoch draws the same
    /// committee, so a requester cannot re-draw it by redeploying (only by waiting an epoch).
    /// Requirements: caller is the requester; status PENDING and never opened; the task is listed in its
    /// registry. Emits {SeedScheduled}, {StatusChanged}.
    function openRecruitment() external onlyRequester inStatus(TaskTypes.Status.PENDING) {
        if (recruitmentOpened) revert RecruitmentAlreadyOpened();
        if (!IRefinerRegistry(registry).isActiveTask(address(this))) revert NotRegisteredInRegistry();
        recruitmentOpened = true;
        _scheduleSeed();
        _enter(TaskTypes.Status.RECRUITING, _config.durations.recruitment);
    }

    /// @notice Ends recruitment; the committee and the workers are fixed from now on.
    /// Requirements: caller is the requester; status RECRUITING. Emits {StatusChanged}.
    function closeRecruitment() external onlyRequester inStatus(TaskTypes.Status.RECRUITING) {
        _closeRecruitment();
    }

    /// @notice Starts a round (paper 2.3.4): escrows this round's worker and validator rewards from the
    /// budget, topped up by `msg.value` (held for the round until {finalizeRound}, see {owed}), and
    /// publishes the handles of the starting model, the validation set and the key envelopes that wrap
    /// their keys for the workers and the committee.
    /// Requirements: caller is the requester; status PENDING after recruitment; at least one worker and
    /// one committee member; budget + `msg.value` covers both rewards. Emits {RoundStarted}, {StatusChanged}.
    function startRound(
        bytes calldata modelHandle,
        bytes calldata modelKeysHandle,
        bytes calldata validationHandle,
        bytes calldata validationKeysHandle
    ) external payable onlyRequester inStatus(TaskTypes.Status.PENDING) {
        if (!recruitmentClosed) revert RecruitmentNotClosed();
        _checkHandle(modelHandle);
        _checkHandle(modelKeysHandle);
        _checkHandle(validationHandle);
        _checkHandle(validationKeysHandle);
        if (_workerCount == 0) revert NoWorkers();
        if (_committeeCount == 0) revert NoCommittee();
        uint256 available = budget + msg.value;
        uint256 needed = _config.workerReward + _config.validatorReward;
        if (available < needed) revert InsufficientBudget(available, needed);
        if (msg.value != 0) emit Funded(msg.sender, msg.value, available);
        budget = available - needed;
        uint32 round = ++currentRound;
        _rounds[round].totalWeight = uint64(totalWeight); // seats are won one sortition step (gas) each: ≪ 2^64
        emit RoundStarted(
            round,
            modelHandle,
            modelKeysHandle,
            validationHandle,
            validationKeysHandle,
            _config.workerReward,
            _config.validatorReward
        );
        _enter(TaskTypes.Status.TRAINING, _config.durations.training);
    }

    /// @notice Terminates the task between rounds (paper: StopTraining).
    /// Requirements: caller is the requester; status PENDING. Emits {TaskTerminated}, {StatusChanged}.
    function stopTraining() external onlyRequester inStatus(TaskTypes.Status.PENDING) {
        _terminate(TaskTypes.TerminationReason.Stopped);
    }

    // ------------------------------------------------------------------ validators: sortition

    /// @notice Fixes the sortition seed: the registry's seed of `seedEpoch`,
    /// keccak256(blockhash(seedBlock), registry, seedEpoch), the same for every task of the epoch. Nobody
    /// knows it when recruitment opens; if nobody fixed it within 256 blocks of `seedBlock` (when the hash
    /// is no longer available) the task moves to the next epoch. Anybody may call it; {claimSeat} calls it.
    /// Requirements: status RECRUITING; the seed block has been mined. Emits {SeedFixed} or {SeedScheduled}.
    function fixSeed() public inStatus(TaskTypes.Status.RECRUITING) returns (uint256) {
        if (seed != 0) return seed;
        if (block.number <= seedBlock) revert SeedNotReady(seedBlock);
        uint256 s = IRefinerRegistry(registry).fixEpochSeed(seedEpoch);
        if (s == 0) {
            _scheduleSeed();
            return 0;
        }
        seed = s;
        emit SeedFixed(s);
        return s;
    }

    /// @notice Takes the caller's committee seats, won by stake-weighted sortition (Algorand): `proof` is
    /// the caller's VRF proof for this task's seed under the VRF key it registered; with stake w of total
    /// W (both in stake units, as bonded at `snapshotBlock`, before the seed existed) and `committeeSize`
    /// τ, the seats are the smallest j with output / 2^256 < Σ_{k≤j} B(k; w, τ'/W), τ' =
    /// RefinerSortition.effectiveTau(τ, W), recomputed here and required to equal `seats`. j is the caller's vote weight and its share basis for validator rewards.
    /// Requirements: status RECRUITING before its deadline; the seed can be fixed; the caller is a
    /// registered validator not yet seated, `proof` verifies under its registered key for the seed, j ≥ 1
    /// equals `seats`; its stake is still bonded; fewer than MAX_COMMITTEE members.
    /// Emits {CommitteeMemberAdded}.
    function claimSeat(VRF.Proof calldata proof, uint256 seats)
        external
        inStatus(TaskTypes.Status.RECRUITING)
        beforeDeadline
    {
        IRefinerRegistry reg = IRefinerRegistry(registry);
        if (!reg.isValidator(msg.sender)) revert NotRegisteredValidator(msg.sender);
        if (_seat[msg.sender] != 0) revert AlreadyOnCommittee(msg.sender);
        if (_committee.length >= MAX_COMMITTEE) revert CommitteeFull(uint32(MAX_COMMITTEE));
        uint256 s = fixSeed();
        if (s == 0) revert SeedNotReady(seedBlock);
        // takes the seat first (one registry call); any refusal below reverts it
        IRefinerRegistry.SeatDraw memory draw = reg.takeSeat(msg.sender, snapshotBlock);
        if (proof.pk[0] != draw.vrfKey[0] || proof.pk[1] != draw.vrfKey[1]) revert WrongVrfKey();
        (uint256 j,) = IRefinerSortition(draw.sortition).verifySeats(
            proof, s, draw.stakeUnits, draw.totalUnits, _config.committeeSize
        );
        if (j == 0) revert NotSelected();
        if (j != seats) revert WrongSeatCount(seats, j);
        _committee.push(msg.sender);
        _seat[msg.sender] = _committee.length | (j << WEIGHT_SHIFT);
        totalWeight += j;
        emit CommitteeMemberAdded(msg.sender, uint64(j), draw.stake);
    }

    // ------------------------------------------------------------------ workers

    /// @notice Joins the task as a worker (paper: SignUp()), paying the task's `signUpDeposit`. The deposit
    /// comes back with the worker's round-1 submission ({submitTrainingResults}), or through
    /// {refundDeposit} if the task ends before round 1; a worker that submits nothing in round 1 loses it
    /// to the requester's budget, so that holding a slot and not training costs the squatter.
    /// Requirements: status RECRUITING before its deadline; caller is a registered worker, not signed up;
    /// fewer than `maxWorkers` have signed up; `msg.value` is exactly `signUpDeposit`.
    /// Emits {WorkerSignedUp}.
    function signUp() external payable inStatus(TaskTypes.Status.RECRUITING) beforeDeadline {
        uint256 deposit = _signUpDeposit;
        if (msg.value != deposit) revert WrongDeposit(msg.value, deposit);
        if (!IRefinerRegistry(registry).isWorker(msg.sender)) revert NotRegisteredWorker(msg.sender);
        if (_workerNumber[msg.sender] != 0) revert AlreadySignedUp(msg.sender);
        if (_workers.length >= _config.maxWorkers) revert WorkersFull(_config.maxWorkers);
        _workers.push(msg.sender);
        _workerNumber[msg.sender] = _workers.length;
        emit WorkerSignedUp(msg.sender, _workers.length);
    }

    /// @notice Publishes the caller's local model for this round (paper: SubmitTrainingResults()): the
    /// handle of the encrypted model, the handle of the key envelope for the committee, and the number of
    /// training samples used (n_i, the FedAvg weight). The last submission moves the task to EVALUATING.
    /// `samples` is published in the event only (validators weight the update with it and put it in the
    /// worker's results leaf); the contract stores just that the caller submitted.
    /// A worker's round-1 submission pays its sign-up deposit back: its {TrainingResultsSubmitted} event of
    /// round 1 is the refund's record (no event of its own, and no reentrancy guard: the transfer is the
    /// call's last step, after every write; both would cost ~1_700 gas a worker against the 120k goal).
    /// Requirements: status TRAINING before its deadline; caller signed up and has not submitted this
    /// round; `samples` > 0. Emits {TrainingResultsSubmitted}.
    function submitTrainingResults(bytes calldata modelHandle, bytes calldata keysHandle, uint64 samples)
        external
        inStatus(TaskTypes.Status.TRAINING)
        beforeDeadline
    {
        uint256 number = uint32(_workerNumber[msg.sender]);
        if (number == 0) revert NotSignedUp(msg.sender);
        if (samples == 0) revert ZeroSamples();
        _checkHandle(modelHandle);
        _checkHandle(keysHandle);
        uint32 round = currentRound;
        (uint256 index, uint256 shift) = _bitOf(number);
        uint256 word = _submissions[round][index];
        if (word & (SUBMITTED << shift) != 0) revert AlreadySubmitted(msg.sender);
        _submissions[round][index] = word | (SUBMITTED << shift);
        TaskTypes.Round storage r = _rounds[round];
        r.submissions += 1;
        emit TrainingResultsSubmitted(round, msg.sender, samples, modelHandle, keysHandle);
        if (r.submissions == _workerCount) _enter(TaskTypes.Status.EVALUATING, _config.durations.evaluation);
        if (round == 1) {
            // no counter to update: {depositsHeld} follows from round 1's submissions
            uint256 deposit = _signUpDeposit;
            if (deposit != 0) Address.sendValue(payable(msg.sender), deposit);
        }
    }

    /// @notice Pays the caller its sign-up deposit back when the task terminated before round 1 started
    /// (no worker could have trained; not the worker's fault).
    /// Requirements: status TERMINATED with no round played; the caller signed up, the task takes a
    /// deposit and the caller has not taken it back yet. Emits {DepositRefunded}.
    function refundDeposit() external nonReentrant inStatus(TaskTypes.Status.TERMINATED) {
        uint256 deposit = _signUpDeposit;
        if (currentRound != 0 || deposit == 0 || _workerNumber[msg.sender] == 0 || _depositRefunded[msg.sender]) {
            revert DepositNotRefundable(msg.sender);
        }
        _depositRefunded[msg.sender] = true;
        _depositRefunds += 1;
        emit DepositRefunded(msg.sender, deposit);
        Address.sendValue(payable(msg.sender), deposit);
    }

    /// @notice Pays the caller what it has earned in the task and not been paid yet: `earned` (wei, the
    /// caller's earnings through `round`, see {TaskTypes-leafHash}) minus what earlier claims paid. The leaf
    /// (caller, accepted, samples, contribution, earned) is proven by a Merkle proof against the results
    /// root of `round`, a round finalized with consensus; the latest round a worker has a leaf in pays
    /// every earlier round too, so one claim per task is enough (claiming every round works as well).
    /// An earlier round's leaf than the last one claimed with, or one that adds nothing, is refused: no
    /// round is paid twice.
    /// `samples` is only part of the leaf: it is not compared with the submitted count, which is not
    /// stored. The amount does not depend on it, and the leaf is in a root that a committee majority
    /// agreed on, built from the submitted counts; a majority that lied about them could as well lie
    /// about the contributions, which decide the pay. Likewise `earned` is only as true as that majority:
    /// one that lied could credit a worker with any of the task's unclaimed worker rewards (claims are
    /// capped by {workerEscrow}); workers that claim as they go leave such a majority less to take.
    /// Requirements: the round was finalized with consensus; the claim window ({claimDeadline}) is not
    /// over; the caller signed up; `round` is later than the last round it claimed with and `earned`
    /// exceeds what it was paid; the leaf is in the round's results root; the worker escrow covers the
    /// amount. Emits {RewardClaimed}.
    function claimReward(
        uint32 round,
        bool accepted,
        uint64 samples,
        int256 contribution,
        uint256 earned,
        bytes32[] calldata proof
    ) external nonReentrant {
        bytes32 root = _rounds[round].resultsRoot; // set by a finalized round with consensus only
        if (root == bytes32(0)) _refuseClaim(round);
        uint256 slot = _workerNumber[msg.sender];
        if (slot == 0) revert NotSignedUp(msg.sender);
        uint256 paid = slot >> PAID_SHIFT;
        if (earned == 0) revert NoReward();
        if (round <= uint32(slot >> NUMBER_BITS) || earned <= paid) revert AlreadyClaimed(msg.sender, round);
        _checkClaimWindow();
        bytes32 leaf = TaskTypes.leafHash(msg.sender, accepted, samples, contribution, earned);
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert InvalidProof();
        uint256 amount = earned - paid;
        uint256 escrow = workerEscrow;
        if (amount > escrow) revert RewardExceedsEscrow(amount, escrow);
        workerEscrow = escrow - amount;
        // earned ≤ paid + escrow, far below 2^192 wei
        _workerNumber[msg.sender] = uint32(slot) | (uint256(round) << NUMBER_BITS) | (earned << PAID_SHIFT);
        emit RewardClaimed(round, msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ------------------------------------------------------------------ validators

    /// @notice Commits to a manifest (paper 2.3.6, commit phase). The commitment is
    /// {commitmentOf}(round, caller, {TaskTypes-manifestHash}(manifest), salt), so it binds this task,
    /// the round and the caller. The last commitment moves the task to REVEALING.
    /// Requirements: status EVALUATING before its deadline; caller on the committee, not committed yet;
    /// `commitment` non-zero. Emits {ManifestCommitted}.
    /// `memo` is not checked: it is an opaque note the validator leaves for itself in the event log.
    /// Refiner's validator agent puts there the handle of its stored manifest details, encrypted to its
    /// own key, so that after a crash it can rebuild and reveal the manifest from the chain and the store
    /// alone (and so can nobody else).
    function commitManifest(bytes32 commitment, bytes32 memo) external inStatus(TaskTypes.Status.EVALUATING) beforeDeadline {
        uint256 seat = _seat[msg.sender];
        if (uint16(seat) == 0) revert NotOnCommittee(msg.sender);
        if (commitment == bytes32(0)) revert EmptyCommitment();
        uint32 round = currentRound;
        uint256 last = uint32(seat >> BALLOT_ROUND_SHIFT);
        if (last == round) revert AlreadyCommitted(msg.sender);
        uint256 accrued = seat >> ACCRUED_SHIFT & type(uint128).max;
        // the last ballot's round was finalized before this one started: count it before rewriting it
        if (last != 0 && seat & FOLDED == 0) accrued += _voteWeight[last][_ballot[msg.sender]] >> UNIT_SHIFT;
        _ballot[msg.sender] = commitment | TaskTypes.COMMITTED;
        _seat[msg.sender] = uint80(seat) | (uint256(round) << BALLOT_ROUND_SHIFT) | (accrued << ACCRUED_SHIFT);
        TaskTypes.Round storage r = _rounds[round];
        r.commits += 1;
        emit ManifestCommitted(round, msg.sender, commitment, memo);
        if (r.commits == _committeeCount) _enter(TaskTypes.Status.REVEALING, _config.durations.reveal);
    }

    /// @notice Reveals the committed manifest and its salt; the deterministic part of the manifest is the
    /// caller's vote, weighted by its seat. When every committer has revealed, the task moves to REWARDING.
    /// The commitment is compared without its top bit (kept to mark the ballot as not revealed yet).
    /// Requirements: status REVEALING before its deadline; caller committed and has not revealed; the
    /// manifest and salt match the caller's commitment. Emits {ManifestRevealed} (with the salt, which
    /// opens the caller's stored details).
    function revealManifest(TaskTypes.Manifest calldata manifest, bytes32 salt)
        external
        inStatus(TaskTypes.Status.REVEALING)
        beforeDeadline
    {
        uint256 seat = _seat[msg.sender];
        if (uint16(seat) == 0) revert NotOnCommittee(msg.sender);
        uint32 round = currentRound;
        TaskTypes.Round storage r = _rounds[round];
        if (uint32(seat >> BALLOT_ROUND_SHIFT) != round) revert NotCommitted(msg.sender);
        bytes32 ballot = _ballot[msg.sender];
        if (ballot & TaskTypes.COMMITTED == 0) revert AlreadyRevealed(msg.sender);
        _checkHandle(manifest.aggregateHandle);
        _checkHandle(manifest.detailsHandle);
        if (commitmentOf(round, msg.sender, manifest.hash(), salt) | TaskTypes.COMMITTED != ballot) {
            revert CommitmentMismatch();
        }
        bytes32 key = manifest.voteKey();
        _ballot[msg.sender] = key;
        r.reveals += 1;
        uint256 weight = _voteWeight[round][key] + uint64(seat >> WEIGHT_SHIFT);
        _voteWeight[round][key] = weight;
        if (weight * 2 > r.totalWeight && r.consensusKey == bytes32(0)) r.consensusKey = key;
        emit ManifestRevealed(round, msg.sender, key, manifest, salt);
        if (r.reveals == r.commits) _enter(TaskTypes.Status.REWARDING, 0);
    }

    /// @notice Pays the caller its validator rewards of every finalized round not paid yet: in each round
    /// finalized with consensus whose consensus manifest the caller revealed, the round's reward per seat
    /// times its vote weight (agreeing validators share a round's reward in proportion to their weight).
    /// Rewards accrue over the rounds, so one claim per task is enough; its gas does not grow with them.
    /// Requirements: the caller is on the committee; the claim window ({claimDeadline}) is not over; some
    /// reward is due. Emits {RewardClaimed} with the last finalized round (the claim pays every round up
    /// to it).
    function claimValidatorReward() external nonReentrant {
        uint256 seat = _seat[msg.sender];
        if (uint16(seat) == 0) revert NotOnCommittee(msg.sender);
        _checkClaimWindow();
        uint32 settled = _lastFinalizedRound();
        uint256 units = seat >> ACCRUED_SHIFT & type(uint128).max;
        uint256 last = uint32(seat >> BALLOT_ROUND_SHIFT);
        uint256 folded = seat & FOLDED;
        if (last != 0 && folded == 0 && last <= settled) {
            units += _voteWeight[last][_ballot[msg.sender]] >> UNIT_SHIFT;
            folded = FOLDED;
        }
        if (units == 0) revert NoReward();
        uint256 amount = units * uint64(seat >> WEIGHT_SHIFT);
        uint256 escrow = validatorEscrow;
        if (amount > escrow) revert RewardExceedsEscrow(amount, escrow);
        validatorEscrow = escrow - amount;
        _seat[msg.sender] = uint112(seat) | folded;
        emit RewardClaimed(settled, msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ------------------------------------------------------------------ anyone

    /// @notice Ends the current timed phase once its deadline has passed, so that no participant (not even
    /// an absent requester) can stall a task: RECRUITING → PENDING, TRAINING → EVALUATING,
    /// EVALUATING → REVEALING, REVEALING → REWARDING, and an idle PENDING between rounds → TERMINATED.
    /// Ending round 1's training forfeits the deposits of the workers that did not submit to the budget.
    /// Requirements: the current phase is timed and its deadline has passed. Emits {StatusChanged},
    /// {DepositsForfeited} when deposits are forfeited.
    function advance() external {
        TaskTypes.Status s = status;
        bool timed = s == TaskTypes.Status.RECRUITING || s == TaskTypes.Status.TRAINING
            || s == TaskTypes.Status.EVALUATING || s == TaskTypes.Status.REVEALING
            || (s == TaskTypes.Status.PENDING && recruitmentClosed);
        if (!timed) revert WrongStatus(s);
        if (block.timestamp <= deadline) revert DeadlineNotReached(deadline);
        if (s == TaskTypes.Status.RECRUITING) _closeRecruitment();
        else if (s == TaskTypes.Status.TRAINING) _endTraining();
        else if (s == TaskTypes.Status.EVALUATING) _enter(TaskTypes.Status.REVEALING, _config.durations.reveal);
        else if (s == TaskTypes.Status.REVEALING) _enter(TaskTypes.Status.REWARDING, 0);
        else _terminate(TaskTypes.TerminationReason.Idle);
    }

    /// @notice Settles the round (paper 2.3.7): if a manifest holds more than half of the committee's vote
    /// weight, `manifest` must be it (its reveal is in the {ManifestRevealed} events); its results become
    /// claimable: the round's worker reward moves to {workerEscrow} (to the budget if the manifest pays
    /// nobody), its validator reward per agreeing seat to {validatorEscrow} and the rounding dust of that
    /// to the budget. Without consensus nobody is paid, the round's rewards return to the budget and the
    /// global model stays as it was (`manifest` is then ignored). The task then terminates (max rounds, or
    /// consensus accuracy ≥ target) or returns to PENDING.
    /// Requirements: status REWARDING. Emits {RoundFinalized} or {NoConsensus}, {StatusChanged}.
    function finalizeRound(TaskTypes.Manifest calldata manifest) external inStatus(TaskTypes.Status.REWARDING) {
        uint32 round = currentRound;
        TaskTypes.Round storage r = _rounds[round];
        r.finalized = true;
        bool targetReached;
        uint256 workerReward = _config.workerReward;
        uint256 validatorReward = _config.validatorReward;
        if (r.consensusKey == bytes32(0)) {
            uint256 refund = workerReward + validatorReward;
            budget += refund;
            emit NoConsensus(round, refund);
        } else {
            bytes32 key = manifest.voteKey();
            if (key != r.consensusKey) revert NotConsensusManifest(key, r.consensusKey);
            r.resultsRoot = manifest.resultsRoot;
            r.totalContribution = manifest.totalContribution;
            r.payees = manifest.payees;
            r.accuracy = manifest.accuracy;
            r.modelDigest = manifest.modelDigest;
            uint256 agreeing = _voteWeight[round][key]; // no unit above it yet
            uint256 unit = validatorReward / agreeing; // < 2^96 ({TaskTypes-validate})
            uint256 dust = validatorReward % agreeing; // what no seat's equal share can take
            _voteWeight[round][key] = agreeing | (unit << UNIT_SHIFT);
            validatorEscrow += validatorReward - dust;
            if (manifest.payees == 0 || manifest.totalContribution == 0) dust += workerReward;
            else workerEscrow += workerReward;
            if (dust != 0) {
                budget += dust;
                emit EscrowReleased(round, dust);
            }
            lastConsensusRound = round;
            targetReached = manifest.accuracy >= _config.targetAccuracy;
            emit RoundFinalized(round, key, agreeing, manifest.accuracy, manifest.modelDigest);
        }
        if (targetReached) _terminate(TaskTypes.TerminationReason.TargetReached);
        else if (round >= _config.maxRounds) _terminate(TaskTypes.TerminationReason.MaxRounds);
        else _enter(TaskTypes.Status.PENDING, _config.durations.idle);
    }

    /// @notice Returns the task's unclaimed rewards (and the rounding dust of the workers' shares) to the
    /// budget once the task has terminated and its claim window is over. Anybody may call it.
    /// Requirements: status TERMINATED; {claimDeadline} has passed; some escrow remains.
    /// Emits {EscrowReleased} (round 0: the whole task).
    function releaseUnclaimed() external inStatus(TaskTypes.Status.TERMINATED) {
        if (block.timestamp <= claimDeadline) revert ClaimWindowOpen(claimDeadline);
        uint256 amount = workerEscrow + validatorEscrow;
        if (amount == 0) revert NothingToRelease();
        workerEscrow = 0;
        validatorEscrow = 0;
        budget += amount;
        emit EscrowReleased(0, amount);
    }

    /// @dev Handles are only stored and emitted, never read on chain; bounding them keeps events readable.
    function _checkHandle(bytes calldata handle) private pure {
        if (!TaskTypes.isHandle(handle)) revert InvalidHandle(handle.length);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IRefinerTask
    function isNew() external view returns (bool) {
        return status == TaskTypes.Status.PENDING && !recruitmentOpened;
    }

    /// @notice The task's configuration.
    function config() external view returns (TaskTypes.Config memory) {
        return _config;
    }

    /// @notice Workers who signed up, in sign-up order.
    function workers() external view returns (address[] memory) {
        return _workers;
    }

    /// @inheritdoc IRefinerTask
    function committeeMembers() external view returns (address[] memory) {
        return _committee;
    }

    /// @notice Committee members and their vote weights, in seat order.
    function committee() external view returns (address[] memory members, uint64[] memory weights) {
        members = _committee;
        weights = new uint64[](members.length);
        for (uint256 i = 0; i < members.length; ++i) {
            weights[i] = uint64(_weightOf(members[i]));
        }
    }

    /// @notice A round's counters and (once finalized) consensus results.
    function roundInfo(uint32 round) external view returns (TaskTypes.Round memory) {
        return _rounds[round];
    }

    /// @notice Whether `account` signed up as a worker.
    function signedUp(address account) external view returns (bool) {
        return _workerNumber[account] != 0;
    }

    /// @notice Whether a worker submitted in a round. The samples it submitted are in its
    /// {TrainingResultsSubmitted} event.
    function submitted(uint32 round, address worker) external view returns (bool) {
        uint256 number = uint32(_workerNumber[worker]);
        if (number == 0) return false;
        (uint256 index, uint256 shift) = _bitOf(number);
        return (_submissions[round][index] >> shift) & SUBMITTED != 0;
    }

    /// @notice What a worker's claims have paid it in the task, and the round of its last claim (0: none).
    function workerClaims(address worker) external view returns (uint32 lastRound, uint256 paid) {
        uint256 slot = _workerNumber[worker];
        return (uint32(slot >> NUMBER_BITS), slot >> PAID_SHIFT);
    }

    /// @notice The validator rewards a committee member can claim now (wei): every finalized round's not
    /// paid yet.
    function validatorRewardOf(address validator) external view returns (uint256) {
        uint256 seat = _seat[validator];
        uint256 units = seat >> ACCRUED_SHIFT & type(uint128).max;
        uint256 last = uint32(seat >> BALLOT_ROUND_SHIFT);
        if (last != 0 && seat & FOLDED == 0 && last <= _lastFinalizedRound()) {
            units += _voteWeight[last][_ballot[validator]] >> UNIT_SHIFT;
        }
        return units * uint64(seat >> WEIGHT_SHIFT);
    }

    /// @notice A validator's ballot in its latest round: its commitment with the top bit set
    /// ({TaskTypes-COMMITTED}), its vote key (top bit clear) once it has revealed; 0 for any other round
    /// (earlier rounds' ballots are in their {ManifestCommitted} and {ManifestRevealed} events).
    function ballotOf(uint32 round, address validator) external view returns (bytes32) {
        if (round == 0 || uint32(_seat[validator] >> BALLOT_ROUND_SHIFT) != round) return bytes32(0);
        return _ballot[validator];
    }

    /// @notice Total vote weight revealed for `voteKey` in a round.
    function voteWeightOf(uint32 round, bytes32 voteKey) external view returns (uint256) {
        return uint128(_voteWeight[round][voteKey]);
    }

    /// @notice A finalized round's validator reward per seat of vote weight (0 without consensus).
    function validatorUnit(uint32 round) external view returns (uint256) {
        bytes32 key = _rounds[round].consensusKey;
        return key == bytes32(0) ? 0 : _voteWeight[round][key] >> UNIT_SHIFT;
    }

    /// @notice The commitment a validator must send for a manifest hash and salt in a round.
    function commitmentOf(uint32 round, address validator, bytes32 manifestHash, bytes32 salt)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(this), round, validator, manifestHash, salt));
    }

    /// @notice Sign-up deposits the contract holds for workers: all of them until round 1, then those of
    /// the workers that have not submitted yet while round 1 trains, and none afterwards (each was paid
    /// back with its round-1 submission or forfeited to the budget when round 1's training ended).
    function depositsHeld() public view returns (uint256) {
        uint256 deposit = _signUpDeposit;
        uint32 round = currentRound;
        if (round == 0) return deposit * (_workers.length - _depositRefunds);
        if (round == 1 && status == TaskTypes.Status.TRAINING) return deposit * (_workerCount - _rounds[1].submissions);
        return 0;
    }

    /// @notice Ether the contract must hold: the budget, the running round's rewards (escrowed from
    /// {startRound} to {finalizeRound}), the reward escrows and the deposits.
    function owed() external view returns (uint256 total) {
        total = budget + depositsHeld() + workerEscrow + validatorEscrow;
        uint32 round = currentRound;
        if (round != 0 && !_rounds[round].finalized) total += _config.workerReward + _config.validatorReward;
    }

    // ------------------------------------------------------------------ internal

    function _enter(TaskTypes.Status to, uint64 duration) private {
        TaskTypes.Status from = status;
        status = to;
        deadline = duration == 0 ? 0 : uint64(block.timestamp) + duration;
        emit StatusChanged(from, to, currentRound, deadline);
    }

    /// @dev Draws with the registry's next epoch (see {RefinerRegistry-nextSeedEpoch}).
    function _scheduleSeed() private {
        (uint64 epoch, uint64 seedBlock_, uint64 snapshotBlock_) = IRefinerRegistry(registry).nextSeedEpoch();
        seedEpoch = epoch;
        seedBlock = seedBlock_;
        snapshotBlock = snapshotBlock_;
        emit SeedScheduled(epoch, seedBlock_, snapshotBlock_);
    }

    function _closeRecruitment() private {
        recruitmentClosed = true;
        _workerCount = uint32(_workers.length); // ≤ maxWorkers
        _committeeCount = uint32(_committee.length); // ≤ MAX_COMMITTEE
        _enter(TaskTypes.Status.PENDING, _config.durations.idle);
    }

    function _endTraining() private {
        if (currentRound == 1) {
            uint256 absent = _workerCount - _rounds[1].submissions;
            uint256 forfeited = _signUpDeposit * absent;
            if (forfeited != 0) {
                budget += forfeited;
                emit DepositsForfeited(absent, forfeited, budget);
            }
        }
        _enter(TaskTypes.Status.EVALUATING, _config.durations.evaluation);
    }

    function _terminate(TaskTypes.TerminationReason reason) private {
        claimDeadline = uint64(block.timestamp) + _config.durations.claim;
        _enter(TaskTypes.Status.TERMINATED, 0);
        emit TaskTerminated(reason, currentRound);
        IRefinerRegistry reg = IRefinerRegistry(registry);
        if (reg.isActiveTask(address(this))) reg.onTaskTerminated();
    }

    /// @dev The caller's vote weight; reverts unless it is on the committee.
    function _weightOf(address account) private view returns (uint256) {
        uint256 seat = _seat[account];
        if (uint16(seat) == 0) revert NotOnCommittee(account);
        return uint64(seat >> WEIGHT_SHIFT);
    }

    /// @dev The last finalized round (0 if none): rounds finalize in order, and the current one is
    /// finalized once the task is PENDING again or TERMINATED.
    function _lastFinalizedRound() private view returns (uint32) {
        uint32 round = currentRound;
        TaskTypes.Status s = status;
        if (round == 0 || s == TaskTypes.Status.PENDING || s == TaskTypes.Status.TERMINATED) return round;
        return round - 1;
    }

    /// @dev Where the bit of the worker with sign-up `number` (index + 1) is in a round's submissions.
    function _bitOf(uint256 number) private pure returns (uint256 index, uint256 shift) {
        return ((number - 1) >> 8, (number - 1) & 255);
    }

    /// @dev Rewards stay claimable until the claim window after the task's termination closes.
    function _checkClaimWindow() private view {
        uint64 closes = claimDeadline;
        if (closes != 0 && block.timestamp > closes) revert ClaimWindowClosed(closes);
    }

    /// @dev Why a round with no results root pays nothing.
    function _refuseClaim(uint32 round) private view {
        if (!_rounds[round].finalized) revert RoundNotFinalized(round);
        revert NoReward();
    }
}
