// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IRefinerRegistry} from "./interfaces/IRefinerRegistry.sol";
import {IRefinerTask} from "./interfaces/IRefinerTask.sol";
import {IRefinerSortition} from "./interfaces/IRefinerSortition.sol";
import {VRF} from "@chainlink/contracts/src/v0.8/vrf/VRF.sol";

/// @title Refiner registry: the catalogue of workers, validators and active tasks (paper 2.1, 2.3).
/// @notice Deployed once by the administrator. An address registers as a worker or as a validator, never
/// both. Validators bond stake, which locks while they sit on the committee of a task that has not
/// terminated, but never longer than {maxSeatLock} after their last seat, and leaves only after an
/// unbonding delay. Only task contracts whose runtime code the
/// administrator approved can be listed, so no contract of unknown code can lock a validator's stake.
contract RefinerRegistry is IRefinerRegistry, Ownable, ReentrancyGuardTransient {
    using Checkpoints for Checkpoints.Trace208;
    struct Validator {
        uint256 stake;
        uint256 unbonding;
        uint64 unbondingEnds;
        uint32 activeSeats;
        bool registered;
        uint64 lockedUntil; // the latest seat's time + maxSeatLock: no seat locks the stake longer
    }

    /// @notice Smallest stake a validator must keep bonded to register and to take a committee seat.
    uint256 public immutable minStake;
    /// @notice Seconds between asking to unbond stake and being able to withdraw it.
    uint64 public immutable unbondingDelay;
    /// @notice Longest a committee seat locks a validator's stake: from then on it may unbond even if the
    /// task has not terminated (a task can last for years; a validator's stake must not).
    uint64 public immutable maxSeatLock;
    /// @notice Upper bound on {maxSeatLock} (so the lock's end never overflows, and stays sane).
    uint64 public constant MAX_SEAT_LOCK = 365 days;
    /// @notice Wei per unit of sortition weight: a validator's weight is floor(stake / stakeUnit).
    uint256 public immutable stakeUnit;
    /// @notice The contract that verifies VRF proofs and computes sortition seats for every task.
    address public immutable sortition;
    /// @notice Blocks per sortition epoch: epoch e is blocks [e·epochLength, (e+1)·epochLength).
    uint64 public immutable epochLength;

    mapping(bytes32 codehash => bool) public approvedTaskCode;

    mapping(address => bytes) private _workerKeys;
    mapping(address => bytes) private _validatorKeys;
    mapping(address => Validator) private _validators;
    mapping(address => uint256[2]) private _vrfKeys;
    mapping(bytes32 vrfKeyHash => address) private _vrfKeyOwner;
    mapping(address => Checkpoints.Trace208) private _stakeHistory;
    Checkpoints.Trace208 private _totalStakeHistory;
    /// @notice The sortition seed of each epoch (0 until fixed by {fixEpochSeed}).
    mapping(uint256 epoch => uint256) public epochSeed;

    address[] private _activeTasks;
    mapping(address task => uint256 indexPlusOne) private _taskIndex;

    event TaskCodeApproval(bytes32 indexed codehash, bool approved);
    event WorkerRegistered(address indexed worker, bytes publicKey);
    event ValidatorRegistered(address indexed validator, bytes publicKey, uint256[2] vrfKey, uint256 stake);
    event StakeBonded(address indexed validator, uint256 amount, uint256 totalStake);
    event UnbondingRequested(address indexed validator, uint256 amount, uint64 unlocksAt);
    event StakeWithdrawn(address indexed validator, uint256 amount);
    event TaskRegistered(address indexed task, address indexed requester);
    event TaskRemoved(address indexed task);
    event SeatTaken(address indexed task, address indexed validator, uint256 stake);
    event EpochSeedFixed(uint256 indexed epoch, uint256 seed);

    error InvalidPublicKey(uint256 length);
    error InvalidVrfKey();
    error VrfKeyTaken(address owner);
    error ZeroSortition();
    error InvalidStakeUnit();
    error InvalidEpochLength();
    error EpochSeedNotReady(uint256 epoch, uint256 seedBlock);
    error PublicKeyNotOfSender(address keyAddress, address sender);
    error AlreadyRegistered(address account);
    error NotValidator(address account);
    error StakeTooLow(uint256 stake, uint256 minimum);
    error AmountExceedsStake(uint256 amount, uint256 stake);
    error ZeroAmount();
    error NothingUnbonding();
    error UnbondingNotOver(uint64 unlocksAt);
    error SeatedOnActiveTask(uint32 seats, uint64 lockedUntil);
    error InvalidSeatLock();
    error UnapprovedTaskCode(bytes32 codehash);
    error NotTaskRequester(address requester, address sender);
    error WrongRegistry(address taskRegistry);
    error TaskNotNew(address task);
    error TaskAlreadyRegistered(address task);
    error NotActiveTask(address caller);

    /// @param admin The administrator, who approves task contract code.
    /// @param minStake_ Minimum bonded stake of a validator, in wei.
    /// @param unbondingDelay_ Seconds a validator waits between `requestUnbond` and `withdrawStake`.
    /// @param stakeUnit_ Wei per unit of sortition weight (> 0); stake below one unit never wins a seat.
    /// @param sortition_ The deployed RefinerSortition (VRF verification and seat computation).
    /// @param taskCodehash keccak256 of the approved task contract's runtime code.
    /// @param epochLength_ Blocks per sortition epoch (> 0): every task that opens recruitment in an epoch
    /// draws its committee from the next epoch's seed, so a requester can re-draw only once per epoch.
    /// @param maxSeatLock_ Seconds (0 < s ≤ {MAX_SEAT_LOCK}) a committee seat locks its validator's stake at most.
    constructor(
        address admin,
        uint256 minStake_,
        uint64 unbondingDelay_,
        uint256 stakeUnit_,
        address sortition_,
        bytes32 taskCodehash,
        uint64 epochLength_,
        uint64 maxSeatLock_
    ) Ownable(admin) {
        if (stakeUnit_ == 0) revert InvalidStakeUnit();
        if (maxSeatLock_ == 0 || maxSeatLock_ > MAX_SEAT_LOCK) revert InvalidSeatLock();
        maxSeatLock = maxSeatLock_;
        if (sortition_ == address(0)) revert ZeroSortition();
        if (epochLength_ == 0) revert InvalidEpochLength();
        epochLength = epochLength_;
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
        stakeUnit = stakeUnit_;
        sortition = sortition_;
        approvedTaskCode[taskCodehash] = true;
        emit TaskCodeApproval(taskCodehash, true);
    }

    // ------------------------------------------------------------------ administrator

    /// @notice Approves or revokes a task contract's runtime code for listing.
    /// Requirements: caller is the administrator. Emits {TaskCodeApproval}.
    function setTaskCodeApproval(bytes32 codehash, bool approved) external onlyOwner {
        approvedTaskCode[codehash] = approved;
        emit TaskCodeApproval(codehash, approved);
    }

    // ------------------------------------------------------------------ participants

    /// @notice Registers the caller as a worker with the secp256k1 public key others encrypt to.
    /// Requirements: `publicKey` is 64 bytes (x ‖ y) and hashes to the caller's address; the caller holds
    /// no role yet. Emits {WorkerRegistered}.
    function registerWorker(bytes calldata publicKey) external {
        _checkNewAccount(publicKey);
        _workerKeys[msg.sender] = publicKey;
        emit WorkerRegistered(msg.sender, publicKey);
    }

    /// @notice Registers the caller as a validator with its account key (for encryption) and its VRF
    /// public key (for sortition), and bonds `msg.value` as stake. `possession` is a VRF proof under the
    /// new key for the seed {possessionSeed}(caller): only the key's holder can register it, so nobody
    /// can squat another validator's key or register one that cannot prove. The key is fixed for good: a
    /// validator cannot pick a new key after seeing a task's seed.
    /// Requirements: as {registerWorker}; the key (`possession.pk`) non-zero and used by no other
    /// validator; `possession` verifies; `msg.value` ≥ {minStake}. Emits {ValidatorRegistered}.
    function registerValidator(bytes calldata publicKey, VRF.Proof calldata possession) external payable {
        _checkNewAccount(publicKey);
        uint256[2] calldata vrfKey = possession.pk;
        if (vrfKey[0] == 0 && vrfKey[1] == 0) revert InvalidVrfKey();
        bytes32 keyHash = keccak256(abi.encode(vrfKey));
        address holder = _vrfKeyOwner[keyHash];
        if (holder != address(0)) revert VrfKeyTaken(holder);
        if (msg.value < minStake) revert StakeTooLow(msg.value, minStake);
        IRefinerSortition(sortition).randomness(possession, possessionSeed(msg.sender));
        _validatorKeys[msg.sender] = publicKey;
        _vrfKeys[msg.sender] = vrfKey;
        _vrfKeyOwner[keyHash] = msg.sender;
        Validator storage v = _validators[msg.sender];
        v.registered = true;
        _setStake(msg.sender, v, msg.value);
        emit ValidatorRegistered(msg.sender, publicKey, vrfKey, msg.value);
    }

    /// @notice The seed a validator proves its VRF key with at registration (bound to chain, registry
    /// and account, so a possession proof cannot be replayed elsewhere).
    function possessionSeed(address validator) public view returns (uint256) {
        return uint256(keccak256(abi.encode("refiner-vrf-possession", block.chainid, address(this), validator)));
    }

    /// @notice Adds `msg.value` to the caller's bonded stake.
    /// Requirements: caller is a validator; `msg.value` > 0. Emits {StakeBonded}.
    function bond() external payable {
        Validator storage v = _registeredValidator(msg.sender);
        if (msg.value == 0) revert ZeroAmount();
        _setStake(msg.sender, v, v.stake + msg.value);
        emit StakeBonded(msg.sender, msg.value, v.stake);
    }

    /// @notice Starts unbonding `amount` of the caller's stake; it can be withdrawn after {unbondingDelay}.
    /// Unbonding stake no longer counts as stake: not for committee seats, and no seat taken later
    /// locks it. A new request restarts the delay.
    /// Requirements: caller is a validator; it sits on no active committee or its seats' lock is over
    /// (`lockedUntil`, {maxSeatLock} after its latest seat); 0 < `amount` ≤ stake.
    /// Emits {UnbondingRequested}.
    function requestUnbond(uint256 amount) external {
        Validator storage v = _registeredValidator(msg.sender);
        if (amount == 0) revert ZeroAmount();
        if (v.activeSeats != 0 && block.timestamp < v.lockedUntil) {
            revert SeatedOnActiveTask(v.activeSeats, v.lockedUntil);
        }
        if (amount > v.stake) revert AmountExceedsStake(amount, v.stake);
        _setStake(msg.sender, v, v.stake - amount);
        v.unbonding += amount;
        v.unbondingEnds = uint64(block.timestamp) + unbondingDelay;
        emit UnbondingRequested(msg.sender, amount, v.unbondingEnds);
    }

    /// @notice Pays the caller its unbonded stake. Seats do not matter here: they lock bonded stake only,
    /// and {requestUnbond} checked the lock when the stake left it.
    /// Requirements: something is unbonding and its delay is over. Emits {StakeWithdrawn}.
    function withdrawStake() external nonReentrant {
        Validator storage v = _registeredValidator(msg.sender);
        uint256 amount = v.unbonding;
        if (amount == 0) revert NothingUnbonding();
        if (block.timestamp < v.unbondingEnds) revert UnbondingNotOver(v.unbondingEnds);
        v.unbonding = 0;
        emit StakeWithdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ------------------------------------------------------------------ sortition epochs

    /// @notice The epoch whose seed a task opening recruitment now draws its committee with (the next
    /// one: its seed block, the epoch's first, is not mined yet), that seed block, and the snapshot
    /// block (the one before it) at whose end stakes are counted. Every task opening in the same epoch
    /// gets the same three, so the same committee: redeploying a task cannot re-draw it.
    function nextSeedEpoch() external view returns (uint64 epoch, uint64 seedBlock, uint64 snapshotBlock) {
        epoch = uint64(block.number / epochLength + 1);
        seedBlock = epoch * epochLength;
        snapshotBlock = seedBlock - 1;
    }

    /// @notice Fixes and returns the seed of `epoch`: keccak256(blockhash(epoch · epochLength), this
    /// registry, epoch). Returns 0 (and fixes nothing) when the seed block's hash is gone (more than 256
    /// blocks old) and nobody fixed it in time; a task then moves to a later epoch. Anybody may call it.
    /// Requirements: the epoch's seed block has been mined. Emits {EpochSeedFixed} when it fixes the seed.
    function fixEpochSeed(uint256 epoch) external returns (uint256 seed) {
        seed = epochSeed[epoch];
        if (seed != 0) return seed;
        uint256 seedBlock = epoch * epochLength;
        if (block.number <= seedBlock) revert EpochSeedNotReady(epoch, seedBlock);
        bytes32 hash = blockhash(seedBlock);
        if (hash == bytes32(0)) return 0;
        seed = uint256(keccak256(abi.encode(hash, address(this), epoch)));
        epochSeed[epoch] = seed;
        emit EpochSeedFixed(epoch, seed);
    }

    // ------------------------------------------------------------------ tasks

    /// @notice Lists `task` (paper: RegisterTask(addr)).
    /// Requirements: the caller is the task's requester; the task's code is approved, it names this
    /// registry and it is new (PENDING, never recruited); not listed already. Emits {TaskRegistered}.
    function registerTask(address task) external {
        bytes32 codehash = task.codehash;
        if (!approvedTaskCode[codehash]) revert UnapprovedTaskCode(codehash);
        if (_taskIndex[task] != 0) revert TaskAlreadyRegistered(task);
        IRefinerTask t = IRefinerTask(task);
        if (t.registry() != address(this)) revert WrongRegistry(t.registry());
        address requester = t.requester();
        if (requester != msg.sender) revert NotTaskRequester(requester, msg.sender);
        if (!t.isNew()) revert TaskNotNew(task);
        _activeTasks.push(task);
        _taskIndex[task] = _activeTasks.length;
        emit TaskRegistered(task, requester);
    }

    /// @inheritdoc IRefinerRegistry
    /// @dev One call gives the task everything sortition needs (keeps a seat claim under 300k gas).
    /// Requirements: the caller is an active task; `validator` is registered and still has at least the
    /// stake it had at `snapshotBlock` and {minStake} bonded. The task (approved code) seats each
    /// validator once. Emits {SeatTaken}.
    function takeSeat(address validator, uint256 snapshotBlock) external returns (SeatDraw memory draw) {
        if (_taskIndex[msg.sender] == 0) revert NotActiveTask(msg.sender);
        Validator storage v = _registeredValidator(validator);
        uint48 at = SafeCast.toUint48(snapshotBlock);
        draw.stake = _stakeHistory[validator].upperLookupRecent(at);
        uint256 needed = draw.stake > minStake ? draw.stake : minStake;
        if (v.stake < needed) revert StakeTooLow(v.stake, needed);
        draw.vrfKey = _vrfKeys[validator];
        draw.stakeUnits = draw.stake / stakeUnit;
        draw.totalUnits = _totalStakeHistory.upperLookupRecent(at) / stakeUnit;
        draw.sortition = sortition;
        v.activeSeats += 1;
        uint64 until = uint64(block.timestamp) + maxSeatLock;
        if (until > v.lockedUntil) v.lockedUntil = until;
        emit SeatTaken(msg.sender, validator, v.stake);
    }

    /// @inheritdoc IRefinerRegistry
    /// @dev Requirements: the caller is an active task. Emits {TaskRemoved}. Removal is O(1) in the
    /// number of tasks (swap with the last); the loop is bounded by the task's committee size.
    function onTaskTerminated() external {
        uint256 indexPlusOne = _taskIndex[msg.sender];
        if (indexPlusOne == 0) revert NotActiveTask(msg.sender);
        address last = _activeTasks[_activeTasks.length - 1];
        _activeTasks[indexPlusOne - 1] = last;
        _taskIndex[last] = indexPlusOne;
        _activeTasks.pop();
        delete _taskIndex[msg.sender];
        // the task is approved code: its committee is exactly the validators it seated through takeSeat
        address[] memory seats = IRefinerTask(msg.sender).committeeMembers();
        for (uint256 i = 0; i < seats.length; ++i) {
            _validators[seats[i]].activeSeats -= 1;
        }
        emit TaskRemoved(msg.sender);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IRefinerRegistry
    function isWorker(address account) external view returns (bool) {
        return _workerKeys[account].length != 0;
    }

    /// @inheritdoc IRefinerRegistry
    function isValidator(address account) external view returns (bool) {
        return _validators[account].registered;
    }

    /// @inheritdoc IRefinerRegistry
    function isActiveTask(address task) external view returns (bool) {
        return _taskIndex[task] != 0;
    }

    /// @notice The public key a worker registered (empty if none).
    function workerKey(address worker) external view returns (bytes memory) {
        return _workerKeys[worker];
    }

    /// @notice The public key a validator registered (empty if none).
    function validatorKey(address validator) external view returns (bytes memory) {
        return _validatorKeys[validator];
    }

    /// @notice A validator's VRF public key (x, y), fixed at registration.
    function vrfKey(address validator) external view returns (uint256[2] memory) {
        return _vrfKeys[validator];
    }

    /// @inheritdoc IRefinerRegistry
    function stakeAt(address validator, uint256 blockNumber) external view returns (uint256) {
        return _stakeHistory[validator].upperLookupRecent(SafeCast.toUint48(blockNumber));
    }

    /// @inheritdoc IRefinerRegistry
    function totalStakeAt(uint256 blockNumber) external view returns (uint256) {
        return _totalStakeHistory.upperLookupRecent(SafeCast.toUint48(blockNumber));
    }

    /// @notice A validator's stake, unbonding amount and time, number of active committee seats, and until
    /// when those seats lock its stake.
    function validatorInfo(address validator) external view returns (Validator memory) {
        return _validators[validator];
    }

    /// @notice Number of active (registered, not terminated) tasks.
    function activeTaskCount() external view returns (uint256) {
        return _activeTasks.length;
    }

    /// @notice Active tasks in [`start`, `start` + `count`), clipped to the list's end.
    function activeTasks(uint256 start, uint256 count) external view returns (address[] memory page) {
        uint256 n = _activeTasks.length;
        if (start >= n) return new address[](0);
        uint256 end = count > n - start ? n : start + count;
        page = new address[](end - start);
        for (uint256 i = start; i < end; ++i) {
            page[i - start] = _activeTasks[i];
        }
    }

    /// @notice Validators seated on `task`'s committee while it is active (their stake is locked).
    function seatsOf(address task) external view returns (address[] memory) {
        if (_taskIndex[task] == 0) return new address[](0);
        return IRefinerTask(task).committeeMembers();
    }

    // ------------------------------------------------------------------ internal

    function _checkNewAccount(bytes calldata publicKey) private view {
        if (publicKey.length != 64) revert InvalidPublicKey(publicKey.length);
        address keyAddress = address(uint160(uint256(keccak256(publicKey))));
        if (keyAddress != msg.sender) revert PublicKeyNotOfSender(keyAddress, msg.sender);
        if (_workerKeys[msg.sender].length != 0 || _validators[msg.sender].registered) {
            revert AlreadyRegistered(msg.sender);
        }
    }

    /// @dev Every stake change is checkpointed by block, so a task can count the stake bonded before its
    /// recruitment opened.
    function _setStake(address validator, Validator storage v, uint256 stake) private {
        uint256 total = _totalStakeHistory.latest() - v.stake + stake;
        v.stake = stake;
        _stakeHistory[validator].push(SafeCast.toUint48(block.number), SafeCast.toUint208(stake));
        _totalStakeHistory.push(SafeCast.toUint48(block.number), SafeCast.toUint208(total));
    }

    function _registeredValidator(address account) private view returns (Validator storage v) {
        v = _validators[account];
        if (!v.registered) revert NotValidator(account);
    }
}
