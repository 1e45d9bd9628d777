"""What a task will cost before it is posted: gas and Ether for the requester, a worker and a validator.

Gas is measured, not tabulated: `measure` deploys the task's own configuration on a fresh embedded chain
(py-evm, the gas rules of the cancun EVM the contracts target) and plays rounds with stand-in storage
handles (gas does not depend on the files), with a few workers and validators. Rewards accrue over the
rounds and each worker and validator claims once per task. No call's gas grows with the number of workers
but a worker's claim, whose Merkle proof has ⌈log2 N⌉ siblings, and none with the rounds: `measure`
plays two tasks, one of two rounds (round 2's calls cost less than round 1's) with a results tree of 4
leaves, one of one round with 64, and takes the gas per sibling from the difference of their claims.
`estimate` scales that to N workers and R rounds; bench/gas.py measures the same calls at N up to 1000
and over a 10-round task, and tests/test_cost.py checks the estimate against it within 5 %."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from eth_account.signers.local import LocalAccount

from refiner.chain import Chain, Registry, ResultsTree, Task, TaskConfig, WorkerResult, demo_account
from refiner.chain.accounts import vrf_key_for
from refiner.chain.build import Artifact, load_artifact
from refiner.chain.committee import draw
from refiner.chain.earnings import carried, with_earnings
from refiner.units import ETH

#: The requester's calls once per task (startRound and finalizeRound come once per round).
REQUESTER_CALLS = ("deploy", "registerTask", "fund", "openRecruitment", "closeRecruitment")

#: The measured round's size: workers that sign up and submit, validators seated (one seat each). The
#: first and the last caller of a phase pay more (fresh storage words, the phase change, the reveal that
#: reaches consensus), once a phase whatever the number of callers, so a round's total is the measured
#: callers' total plus a plain call (the cheapest measured) per caller more (or fewer).
MEASURED_WORKERS = 4
MEASURED_VALIDATORS = 5
#: The results trees' sizes the claim is measured with (stand-in leaves fill them up).
SHALLOW, DEEP = 4, 64


@dataclass(frozen=True)
class Measured:
    """Gas of the measured rounds: per call its callers' total, their number and the plain (cheapest)
    call, which each further caller pays, in round 1 and (`later`) in round 2, whose calls differ (a
    round-1 submission pays the deposit back; a member's ballot word is fresh in round 1 only); and a
    worker claim's gas per Merkle-proof sibling beyond `claim_depth`."""

    total: dict[str, int]
    count: dict[str, int]
    typical: dict[str, int]
    claim_depth: int
    per_sibling: int
    later: Measured | None = None

    def sum_for(self, call: str, callers: int) -> int:
        """The gas of `callers` calls of `call` in one phase (of round 1)."""
        return self.total[call] + (callers - self.count[call]) * self.typical[call]

    def mean_phase(self, call: str, callers: int, rounds: int) -> int:
        """The gas of one phase of `call`, averaged over `rounds` rounds."""
        later = self.later.sum_for(call, callers) if self.later is not None else self.sum_for(call, callers)
        return round((self.sum_for(call, callers) + (rounds - 1) * later) / rounds)


@dataclass(frozen=True)
class Estimate:
    workers: int
    rounds: int
    #: Committee members: each holds one seat or more, so at most the task's committee size (τ).
    validators: int
    requester_gas: int
    #: What a worker / a validator pays over the task, on average over them.
    worker_gas: int
    validator_gas: int
    #: One round, every participant: start, N submissions, the committee's commits and reveals, the
    #: finalization, and the round's share of the task's claims (each worker and member claims once).
    round_gas: int
    #: Ether the requester escrows over the task (the rewards; unspent rewards come back).
    escrow_wei: int
    #: Ether a worker holds in the contract from sign-up until its first submission (returned).
    deposit_wei: int
    #: Per call, its gas over one phase of the task's callers (one for the requester's calls).
    phase_gas: dict[str, int] = field(default_factory=dict)

    @property
    def task_gas(self) -> int:
        """Every participant's gas over the task."""
        return self.requester_gas + self.workers * self.worker_gas + self.validators * self.validator_gas


def claims_gas(measured: Measured, workers: int) -> int:
    """The worker claims of a task of `workers` results a round (one claim each; each proof has
    ⌈log2 N⌉ siblings)."""
    deeper = measured.per_sibling * (depth(workers) - measured.claim_depth)
    return measured.sum_for("claimReward", workers) + workers * deeper


def depth(leaves: int) -> int:
    """The siblings in a Merkle proof of a tree of `leaves` results."""
    return math.ceil(math.log2(leaves)) if leaves > 1 else 0


def estimate(measured: Measured, config: TaskConfig, workers: int, rounds: int) -> Estimate:
    """The task's cost with `workers` workers over `rounds` rounds (at most its max_rounds)."""
    if workers < 1 or rounds < 1:
        raise ValueError("a task needs at least one worker and one round")
    t, n, c = measured.total, workers, config.committee_size
    phase = {"signUp": measured.sum_for("signUp", n)}
    phase["submitTrainingResults"] = measured.mean_phase("submitTrainingResults", n, rounds)
    phase["claimReward"] = claims_gas(measured, n)
    for call in ("claimSeat", "claimValidatorReward"):
        phase[call] = measured.sum_for(call, c)
    for call in ("commitManifest", "revealManifest"):
        phase[call] = measured.mean_phase(call, c, rounds)
    for call in REQUESTER_CALLS:
        phase[call] = t[call]
    for call in ("startRound", "finalizeRound"):
        phase[call] = measured.mean_phase(call, 1, rounds)
    once = sum(t[call] for call in REQUESTER_CALLS)
    requester = once + rounds * (phase["startRound"] + phase["finalizeRound"])
    worker_task = phase["signUp"] + rounds * phase["submitTrainingResults"] + phase["claimReward"]
    validator_rounds = phase["commitManifest"] + phase["revealManifest"]
    validator_task = phase["claimSeat"] + rounds * validator_rounds + phase["claimValidatorReward"]
    claims = phase["claimReward"] + phase["claimValidatorReward"]
    per_round = (
        phase["startRound"] + phase["finalizeRound"] + phase["submitTrainingResults"] + validator_rounds
    ) + round(claims / rounds)
    return Estimate(
        workers=n,
        rounds=rounds,
        validators=c,
        requester_gas=requester,
        worker_gas=round(worker_task / n),
        validator_gas=round(validator_task / c),
        round_gas=per_round,
        escrow_wei=rounds * (config.worker_reward + config.validator_reward),
        deposit_wei=config.sign_up_deposit,
        phase_gas=phase,
    )


def measure(config: TaskConfig) -> Measured:
    """Play `config`'s task (its description, rewards and deposit; a few members) on a fresh embedded
    chain: a task of two rounds with results trees of 4 leaves, one of one round with 64; the gas of
    every call (of the first round, and the claims after the last)."""
    chain = Chain.connect()
    admin, requester = demo_account("cost-admin"), demo_account("cost-requester")
    workers = [demo_account(f"cost-worker-{i}") for i in range(MEASURED_WORKERS)]
    validators = [demo_account(f"cost-validator-{i}") for i in range(MEASURED_VALIDATORS)]
    rewards = config.worker_reward + config.validator_reward
    for account in [admin, requester, *workers, *validators]:
        chain.fund(account.address, 10 * rewards + config.sign_up_deposit + 1000 * ETH)
    registry = Registry.deploy(chain, admin, min_stake=ETH, stake_unit=ETH)
    for w in workers:
        registry.register_worker(w)
    for v in validators:
        registry.register_validator(v, ETH)
    # τ = the validators' stake units: every validator wins exactly one seat
    cfg = replace(config, max_workers=MEASURED_WORKERS, committee_size=MEASURED_VALIDATORS, max_rounds=2)
    gas: dict[str, list[int]] = defaultdict(list)
    for leaves, rounds in ((SHALLOW, 2), (DEEP, 1)):
        _play(chain, registry, requester, workers, validators, cfg, leaves, rounds, gas)
    shallow = gas.pop(f"claimReward@{SHALLOW}")
    deep = gas.pop(f"claimReward@{DEEP}")
    per_sibling = round(
        (statistics.median(deep) - statistics.median(shallow)) / (depth(DEEP) - depth(SHALLOW))
    )
    later = {call.removesuffix("@round2"): v for call, v in gas.items() if call.endswith("@round2")}
    # the requester's calls, the seat claims and round 1's calls were made twice (two tasks): one's worth
    once = {call: values[: len(values) // 2] for call, values in gas.items() if "@" not in call}
    once["claimReward"] = shallow
    once["claimValidatorReward"] = gas["claimValidatorReward@claims"][: len(validators)]
    return Measured(
        total={call: sum(v) for call, v in once.items()},
        count={call: len(v) for call, v in once.items()},
        typical={call: min(v) for call, v in once.items()},
        claim_depth=depth(SHALLOW),
        per_sibling=per_sibling,
        later=Measured(
            total={call: sum(v) for call, v in later.items()},
            count={call: len(v) for call, v in later.items()},
            typical={call: min(v) for call, v in later.items()},
            claim_depth=depth(SHALLOW),
            per_sibling=per_sibling,
        ),
    )


def _play(
    chain: Chain,
    registry: Registry,
    requester: LocalAccount,
    workers: Sequence[LocalAccount],
    validators: Sequence[LocalAccount],
    cfg: TaskConfig,
    leaves: int,
    rounds: int,
    gas: dict[str, list[int]],
) -> None:
    """A task of `rounds` rounds, every worker submitting; round 1's calls recorded by name, later ones
    as `call@roundR`, the claims after the last round (once per task) as `claimReward@leaves` and
    `claimValidatorReward@claims`."""
    address, receipt = chain.deploy(requester, _task_artifact(), registry.address, cfg.as_tuple(), value=0)
    gas["deploy"].append(int(receipt["gasUsed"]))
    task = Task(chain, address, from_block=receipt["blockNumber"])
    gas["registerTask"].append(registry.register_task(requester, task.address).gas_used)
    gas["fund"].append(task.fund(requester, rounds * (cfg.worker_reward + cfg.validator_reward)).gas_used)
    gas["openRecruitment"].append(task.open_recruitment(requester).gas_used)
    for w in workers:
        gas["signUp"].append(task.sign_up(w).gas_used)
    for v in validators:
        ticket = draw(task, registry, v.address, vrf_key_for(v), sender=v)
        gas["claimSeat"].append(task.claim_seat(v, ticket.proof, ticket.seats).gas_used)
    gas["closeRecruitment"].append(task.close_recruitment(requester).gas_used)
    earned: dict[str, int] = {}
    tree = ResultsTree([])
    for r in range(1, rounds + 1):
        at = "" if r == 1 else f"@round{r}"
        stand_in = [_handle(f"round-{leaves}-{r}-{k}") for k in range(4)]
        gas[f"startRound{at}"].append(task.start_round(requester, *stand_in).gas_used)
        samples = [1000 * (i + 1) for i in range(len(workers))]
        for w, n in zip(workers, samples, strict=True):
            update = task.submit_training_results(
                w, _handle(f"u-{w.address}-{r}"), _handle(f"k-{w.address}"), n
            )
            gas[f"submitTrainingResults{at}"].append(update.gas_used)
        # contributions that do not divide the reward: the round leaves dust, as almost every real one does
        results = [
            WorkerResult(w.address, True, n, 100 * i + 1)
            for i, (w, n) in enumerate(zip(workers, samples, strict=True))
        ]
        # stand-in leaves fill the tree to `leaves`: they are never claimed
        results += [
            WorkerResult(demo_account(f"cost-absent-{i}").address, True, 1000, 100)
            for i in range(leaves - len(results))
        ]
        tree = ResultsTree(with_earnings(results, cfg.worker_reward, earned))
        earned = carried(earned, tree.results)
        manifest = tree.manifest(900_000, hashlib.sha256(b"model").digest(), _handle("agg"), _handle("det"))
        salts = {
            v.address: hashlib.sha256(f"cost-salt-{v.address}-{leaves}-{r}".encode()).digest()
            for v in validators
        }
        for v in validators:
            commitment = task.commitment_for(v.address, r, manifest, salts[v.address])
            gas[f"commitManifest{at}"].append(task.commit_manifest(v, commitment).gas_used)
        for v in validators:
            gas[f"revealManifest{at}"].append(task.reveal_manifest(v, manifest, salts[v.address]).gas_used)
        gas[f"finalizeRound{at}"].append(task.finalize_round(requester, manifest).gas_used)
    for w in workers:
        claimed = task.claim_reward(w, rounds, tree.result_of(w.address), tree.proof(w.address))
        gas[f"claimReward@{leaves}"].append(claimed.gas_used)
    for v in validators:
        gas["claimValidatorReward@claims"].append(task.claim_validator_reward(v).gas_used)


def _handle(label: str) -> bytes:
    """A stand-in storage handle, CIDv1-sized (a raw sha2-256 CID's bytes)."""
    return b"\x01\x55\x12\x20" + hashlib.sha256(label.encode()).digest()


def _task_artifact() -> Artifact:
    return load_artifact(Task.ARTIFACT)
