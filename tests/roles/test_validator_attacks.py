"""Validator attacks against a whole task: the real embedded EVM, a directory store and real encryption;
logistic model, 300 MNIST images per worker (the third with shuffled labels, rejected by every honest
evaluation), 200 validation images, ε = 1.0. One task with five validators, each staking one unit with
τ = 5, so each holds exactly one seat; every test sets the committee's behaviours and plays one round of
that task (rounds are independent: each starts from a settled task).

With an honest majority the committee holds: consensus is the honest manifest, the attackers are not
paid, and honest validators and workers are paid exactly what the honest manifest entitles them to.
What the committee cannot stop is written as `test_limit_*`: a colluding *majority* pays whom it likes
(only an audit with the requester's key shows it), and a dishonest majority that does not agree on one
manifest denies consensus (the round's escrow returns to the requester, nobody is paid).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import pytest

from refiner.adversary import COLLUSION_CONTRIBUTION, with_behaviour
from refiner.audit import RoundAudit, Verdict, audit_task
from refiner.chain import Chain, ContractRevert, Durations, Status, TaskConfig, TxResult, demo_account
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist
from refiner.fl.models import model_digest
from refiner.roles import Administrator, Evaluated, Requester, Validator, ValidatorBehaviour, WorkerBehaviour
from refiner.simulation import Simulation
from refiner.sortition import expected_seats, seats_variance
from refiner.storage import DirectoryStore, Handle
from refiner.units import ETH
from refiner.wire.details import ManifestDetails, ProtocolError
from refiner.wire.memos import salt_for
from refiner.wire.reads import consensus_details

VB = ValidatorBehaviour
H, R, C, T, CC, N = VB.HONEST, VB.RANDOM, VB.COLLUDER, VB.THIEF, VB.COPYCAT, VB.NON_REVEALER
L, P, BA = VB.LAZY, VB.POISONER, VB.BAD_AGGREGATE
WORKER_REWARD = ETH
VALIDATOR_REWARD = 3 * ETH // 10
DURATIONS = Durations(recruitment=600, training=600, evaluation=600, reveal=600, idle=6000, claim=60000)

Data = tuple[Dataset, list[Dataset]]


@pytest.fixture(scope="module")
def mnist() -> Data:
    train, _ = load_mnist()
    validation, shards = split_mnist(train, [300, 300, 300], validation_size=200, seed=1)
    shards[2] = shuffle_labels(shards[2], seed=3)
    return validation, shards


@pytest.fixture(scope="module")
def sim(mnist: Data, tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    config = TaskConfig(
        description="",
        worker_reward=WORKER_REWARD,
        validator_reward=VALIDATOR_REWARD,
        target_accuracy=1.0,
        max_rounds=20,
        max_workers=3,
        committee_size=5,
        epsilon=1.0,
        durations=DURATIONS,
    )
    return Simulation.deploy(
        Chain.connect(),
        DirectoryStore(tmp_path_factory.mktemp("validator-attacks")),
        mnist[1],
        [WorkerBehaviour.HONEST, WorkerBehaviour.HONEST, WorkerBehaviour.SHUFFLED_LABELS],
        [H] * 5,
        config=config,
        model="logistic",
        lr=0.05,
        stake_unit=ETH,  # one unit each and τ = W = 5: every validator holds exactly one seat
        label="validator-attacks",
    )


def committee(sim: Simulation, behaviours: list[VB]) -> Simulation:
    """Give the committee (in seat order) these behaviours, after settling any round a failed test left
    open, so that the next round starts from PENDING."""
    task = sim.task
    while task.status() is not Status.PENDING:
        if task.status() is Status.REWARDING:
            sim.requester.finalize_round(task)
        else:
            sim.chain.increase_time(DURATIONS.reveal + 1)
            task.advance(sim.requester.account)
    assert len(sim.committee) == len(behaviours)
    for v, b in zip(sim.committee, behaviours, strict=True):
        i = next(i for i, x in enumerate(sim.validators) if x is v)
        sim.validators[i] = with_behaviour(v, b)  # the same member, now behaving as `b`
    return sim


@dataclass
class Played:
    sim: Simulation
    round: int
    work: dict[str, Evaluated]  # validator → what it committed to (validators that evaluate)
    refused: dict[str, str]  # validator → the error its reveal was refused with
    waited_for_deadline: bool  # someone committed and never revealed: the round ran to its deadline
    finalize: TxResult
    workers_paid: dict[str, int]
    validators_paid: dict[str, int]
    balance_before: int  # the task's balance before the round started
    funded: int  # what the requester added to start it

    def of(self, behaviour: VB) -> list[Validator]:
        return [v for v in self.sim.committee if v.behaviour is behaviour]

    @property
    def shuffled(self) -> str:
        return self.sim.workers[2].address


def play(sim: Simulation, validation: Dataset) -> Played:
    """One round, each validator acting out its behaviour: copycats and thieves commit after the others
    (they copy), thieves reveal last (they steal a reveal); a refused reveal is recorded, not raised.
    Then every worker and validator claims what the consensus gives it."""
    task, committee = sim.task, sim.committee
    balance = task.balance()
    funded = funds(sim.requester.start_round(task, sim.global_state, validation))
    round_ = task.current_round()
    for w in sim.workers:
        w.submit_training_results(task, w.train(task))
    copiers = (CC, T)
    work = {v.address: v.evaluate(task) for v in committee if v.behaviour not in copiers}
    for v in sorted(committee, key=lambda v: v.behaviour in copiers):
        v.commit_manifest(task, work.get(v.address))
    assert task.status() is Status.REVEALING
    refused: dict[str, str] = {}
    for v in sorted(committee, key=lambda v: v.behaviour is T):
        try:
            v.reveal_manifest(task, work.get(v.address))
        except ContractRevert as exc:
            refused[v.address] = exc.error
    waited = task.status() is Status.REVEALING
    if waited:
        with pytest.raises(ContractRevert, match="DeadlineNotReached"):
            task.advance(sim.requester.account)
        sim.chain.increase_time(DURATIONS.reveal + 1)
        task.advance(sim.requester.account)
    return settle(sim, round_, work, refused, waited, balance, funded)


def settle(
    sim: Simulation,
    round_: int,
    work: dict[str, Evaluated],
    refused: dict[str, str],
    waited: bool,
    balance: int,
    funded: int,
) -> Played:
    """Finalize the round and let every worker and validator claim what the consensus gives it."""
    task = sim.task
    fin = sim.requester.finalize_round(task)
    consensus = "RoundFinalized" in fin.names()
    workers_paid = {w.address: w.claim_reward(task, round_) if consensus else 0 for w in sim.workers}
    validators_paid = {v.address: v.claim_reward(task, round_) if consensus else 0 for v in sim.committee}
    return Played(sim, round_, work, refused, waited, fin, workers_paid, validators_paid, balance, funded)


def funds(start: TxResult) -> int:
    return sum(int(e["amount"]) for e in start.events if e.name == "Funded")


def assert_honest_consensus_pays_exactly(played: Played) -> None:
    """Consensus is the honest manifest; honest validators get the validator reward split over the
    agreeing weight, everyone else on the committee nothing; workers get workerReward · c / Σc of the
    honest manifest (the shuffled-label worker, rejected, nothing); Ether is conserved to the wei."""
    task, r = played.sim.task, played.round
    honest = played.of(H)
    votes = {played.work[v.address].manifest.vote_key() for v in honest}
    assert len(votes) == 1, "honest validators disagree"
    (honest_key,) = votes
    info = task.round_info(r)
    assert info.consensus_key == honest_key
    assert task.vote_weight_of(r, honest_key) == len(honest)
    for v in played.sim.committee:
        expected = VALIDATOR_REWARD // len(honest) if v.behaviour is H else 0
        assert played.validators_paid[v.address] == expected, v.behaviour
    details = played.work[honest[0].address].details
    total = sum(x["contribution"] for x in details.results if x["accepted"] and x["contribution"] > 0)
    assert total == info.total_contribution
    for x in details.results:
        paid = x["accepted"] and x["contribution"] > 0
        assert played.workers_paid[x["worker"]] == (WORKER_REWARD * x["contribution"] // total if paid else 0)
    assert played.workers_paid[played.shuffled] == 0
    assert_ether_conserved(played)


def assert_ether_conserved(played: Played) -> None:
    """What the task held before the round, plus what the requester added, less what was paid, is what
    it holds now, all of it refundable budget (the contract's `owed`)."""
    task = played.sim.task
    paid = sum(played.workers_paid.values()) + sum(played.validators_paid.values())
    assert played.balance_before + played.funded - paid == task.balance()
    # what is left in the escrows is the rounding dust of the workers' shares (a wei or so each)
    assert task.validator_escrow() == 0 and task.worker_escrow() <= len(played.sim.workers)
    assert task.balance() == task.owed() == task.budget() + task.worker_escrow()


def audit(played: Played, keys: bool = True) -> RoundAudit:
    """The round's audit, with the requester's key (the aggregates) and an honest committee member's
    (the workers' updates, to re-run the evaluation) or with no key."""
    sim = played.sim
    requester, evaluator = (sim.requester.account, played.of(H)[0].account) if keys else (None, None)
    task = sim.task.address
    found = audit_task(
        sim.chain, sim.store, task, rounds=[played.round], requester=requester, evaluator=evaluator
    )
    return found.round(played.round)


# ------------------------------------------------------------------------------ an honest majority holds


def test_a_random_minority_is_outvoted_and_unpaid(sim: Simulation, mnist: Data) -> None:
    played = play(committee(sim, [H, H, H, R, R]), mnist[0])
    made_up = [played.work[v.address] for v in played.of(R)]
    honest_key = played.work[played.of(H)[0].address].manifest.vote_key()
    keys = {w.manifest.vote_key() for w in made_up}
    assert len(keys) == 2 and honest_key not in keys  # two different random manifests
    for w in made_up:  # each consistent with its own stored details, just made up
        assert w.details.tree().root == w.manifest.results_root
        assert w.evaluation is None
    assert not played.refused and not played.waited_for_deadline
    assert_honest_consensus_pays_exactly(played)


def test_a_colluding_minority_cannot_pay_a_rejected_worker(sim: Simulation, mnist: Data) -> None:
    played = play(committee(sim, [H, H, H, C, C]), mnist[0])
    ring = [played.work[v.address] for v in played.of(C)]
    forged_keys = {w.manifest.vote_key() for w in ring}
    assert len(forged_keys) == 1  # the ring agrees: one forged vote
    (forged,) = forged_keys
    leaf = ring[0].details.tree().result_of(played.shuffled)
    assert leaf.accepted and leaf.contribution == COLLUSION_CONTRIBUTION  # the friend they would pay
    assert sim.task.vote_weight_of(played.round, forged) == 2
    assert_honest_consensus_pays_exactly(played)
    assert audit(played).verdict is Verdict.PASS, audit(played).checks


def test_a_manifest_thief_and_a_copycat_cannot_reveal_what_they_copied(sim: Simulation, mnist: Data) -> None:
    """The copycat copies a commitment; the thief too, then reveals another validator's manifest and salt
    read from its reveal transaction. The contract binds every commitment to its sender: whatever
    manifest and salt they try, before the victim reveals (front-running it from the mempool) or after,
    they are refused (CommitmentMismatch); the round waits for its reveal deadline and pays the honest."""
    task = committee(sim, [H, H, H, T, CC]).task
    balance = task.balance()
    funded = funds(sim.requester.start_round(task, sim.global_state, mnist[0]))
    round_ = task.current_round()
    for w in sim.workers:
        w.submit_training_results(task, w.train(task))
    honest = [v for v in sim.committee if v.behaviour is H]
    (thief,) = [v for v in sim.committee if v.behaviour is T]
    (copycat,) = [v for v in sim.committee if v.behaviour is CC]
    with pytest.raises(ProtocolError, match="needs someone else's commitment"):
        copycat.commit_manifest(task, None)  # nothing to copy yet
    work = {v.address: v.evaluate(task) for v in honest}
    for v in honest:
        v.commit_manifest(task, work[v.address])
    thief.commit_manifest(task, None)
    copycat.commit_manifest(task, None)
    victim = honest[0]
    commitments = {e["validator"]: e["commitment"] for e in task.round_events("ManifestCommitted", round_)}
    assert commitments[copycat.address] == commitments[thief.address] == commitments[victim.address]
    manifest = work[victim.address].manifest
    with pytest.raises(ProtocolError, match="nothing to steal yet"):
        thief.reveal_manifest(task, None)
    for attacker in (thief, copycat):
        for salt in (
            salt_for(victim.account, task.address, round_),
            salt_for(attacker.account, task.address, round_),
        ):
            with pytest.raises(ContractRevert, match="CommitmentMismatch"):
                task.reveal_manifest(attacker.account, manifest, salt)  # front-running the victim
    for v in honest:
        v.reveal_manifest(task, work[v.address])
    stolen = thief.stolen_reveal(task, round_)
    assert stolen == (manifest, salt_for(victim.account, task.address, round_))  # the victim's own reveal
    with pytest.raises(ContractRevert, match="CommitmentMismatch"):
        thief.reveal_manifest(task, None)  # its behaviour: reveal the stolen manifest and salt
    with pytest.raises(ContractRevert, match="CommitmentMismatch"):
        task.reveal_manifest(copycat.account, *stolen)
    assert copycat.reveal_manifest(task, None) is None  # a copycat knows it has nothing to reveal
    assert set(task.revealed_manifests(round_)) == {v.address for v in honest}
    assert task.status() is Status.REVEALING
    sim.chain.increase_time(DURATIONS.reveal + 1)
    task.advance(sim.requester.account)
    played = settle(sim, round_, work, {}, True, balance, funded)
    assert_honest_consensus_pays_exactly(played)


def test_a_non_revealer_delays_the_round_to_its_deadline_and_earns_nothing(
    sim: Simulation, mnist: Data
) -> None:
    """No slashing: the silent validators keep their stake; they lose only their share of the reward."""
    played = play(committee(sim, [H, H, H, N, N]), mnist[0])
    silent = played.of(N)
    assert played.waited_for_deadline and not played.refused
    assert not {v.address for v in silent} & set(sim.task.revealed_manifests(played.round))
    assert_honest_consensus_pays_exactly(played)
    assert {sim.registry.validator_info(v.address).stake for v in silent} == {ETH}


def test_a_lazy_member_finds_no_vote_to_copy_in_the_shared_store(sim: Simulation, mnist: Data) -> None:
    """Four members evaluate and commit, storing their details in the shared directory store; the fifth
    lists the directory before committing, to copy one of their votes. Every details file is ciphertext
    under a key derived from its author's commitment salt, secret until the reveal: the lazy member
    finds nothing readable, cannot commit a vote, and the round pays the four exactly."""
    task = committee(sim, [H, H, H, H, L]).task
    balance = task.balance()
    funded = funds(sim.requester.start_round(task, sim.global_state, mnist[0]))
    round_ = task.current_round()
    for w in sim.workers:
        w.submit_training_results(task, w.train(task))
    honest = [v for v in sim.committee if v.behaviour is H]
    (lazy,) = [v for v in sim.committee if v.behaviour is L]
    work = {v.address: v.evaluate(task) for v in honest}
    for v in honest:
        v.commit_manifest(task, work[v.address])
    with pytest.raises(ProtocolError, match="no readable details"):
        lazy.evaluate(task)
    assert isinstance(sim.store, DirectoryStore)
    for w in work.values():  # the files are there, but do not read as details
        stored = sim.store.path_of(Handle.from_bytes(w.manifest.details_handle)).read_bytes()
        with pytest.raises(ProtocolError):
            ManifestDetails.from_bytes(stored)
    assert task.ballot_of(round_, lazy.address) == bytes(32)
    sim.chain.increase_time(DURATIONS.evaluation + 1)
    task.advance(sim.requester.account)
    for v in honest:
        v.reveal_manifest(task, work[v.address])
    played = settle(sim, round_, work, {}, False, balance, funded)
    assert_honest_consensus_pays_exactly(played)
    # after the reveal, the salt in the event opens each agreeing member's details
    _, details = consensus_details(sim.store, task, round_)
    assert details.validator in {v.address for v in honest}


def test_poisoned_details_and_a_bad_aggregate_of_agreeing_members_block_no_claim(
    sim: Simulation, mnist: Data
) -> None:
    """The first two members to reveal agree with the honest vote (the vote key does not cover the
    files), one with details that parse but are malformed (a result that is not a record, a key handle
    that is not a handle), one with an aggregate nobody can open. Readers check every file and skip
    theirs: every worker claims what the honest manifest gives it, the requester retrieves the
    consensus model from an honest member, and the audit names the poisoned details."""
    played = play(committee(sim, [P, BA, H, H, H]), mnist[0])
    task, r = sim.task, played.round
    revealed = list(task.revealed_manifests(r))
    assert revealed[:2] == [v.address for v in sim.committee[:2]]  # the spoiled files come first
    honest = played.work[played.of(H)[0].address]
    assert task.round_info(r).consensus_key == honest.manifest.vote_key()
    assert task.vote_weight_of(r, honest.manifest.vote_key()) == 5  # they all agree
    _, details = consensus_details(sim.store, task, r)
    assert details.validator == sim.committee[1].address  # well-formed details, whatever its aggregate
    assert details.tree().root == honest.manifest.results_root
    total = task.round_info(r).total_contribution
    for x in honest.details.results:
        paid = x["accepted"] and x["contribution"] > 0
        assert played.workers_paid[x["worker"]] == (WORKER_REWARD * x["contribution"] // total if paid else 0)
    assert played.workers_paid[played.shuffled] == 0 < sum(played.workers_paid.values())
    assert set(played.validators_paid.values()) == {VALIDATOR_REWARD // 5}
    state = sim.requester.retrieve_model(task, r)
    assert model_digest(state) == honest.manifest.model_digest
    assert_ether_conserved(played)
    checked = audit(played).check("details")
    assert checked.ok is False and sim.committee[0].address[:6] in checked.detail


# ------------------------------------------------------------------------------ what a majority can do


def test_limit_a_colluding_majority_pays_a_rejected_worker_and_only_an_audit_shows_it(
    sim: Simulation, mnist: Data
) -> None:
    """Three colluders of five seats hold the majority: their forged manifest (the shuffled-label worker
    accepted with a contribution) is the consensus, pays that worker and them, and not the honest
    validators. Everything public is consistent with it; the requester's audit re-runs the evaluation
    and fails the round."""
    played = play(committee(sim, [H, H, C, C, C]), mnist[0])
    ring = played.of(C)
    forged = played.work[ring[0].address]
    r = played.round
    assert sim.task.round_info(r).consensus_key == forged.manifest.vote_key()
    _, details = consensus_details(sim.store, sim.task, r)
    assert details.tree().root == forged.manifest.results_root
    total = sim.task.round_info(r).total_contribution
    assert played.workers_paid[played.shuffled] == WORKER_REWARD * COLLUSION_CONTRIBUTION // total > 0
    assert {played.validators_paid[v.address] for v in ring} == {VALIDATOR_REWARD // 3}
    assert {played.validators_paid[v.address] for v in played.of(H)} == {0}  # they disagreed
    assert_ether_conserved(played)
    keyed = audit(played)
    evaluation = keyed.check("evaluation")
    assert evaluation.ok is False and played.shuffled[:6] in evaluation.detail
    assert keyed.verdict is Verdict.FAIL
    assert audit(played, keys=False).verdict is Verdict.INCOMPLETE


def test_limit_a_dishonest_majority_that_disagrees_denies_consensus(sim: Simulation, mnist: Data) -> None:
    """Three random validators of five agree with nobody, and two honest ones are no majority: no
    consensus, nobody paid, the round's escrow back in the requester's budget, the model unchanged.
    Liveness, not safety, is lost; the next round starts as if this one had not happened."""
    committee(sim, [H, H, R, R, R])
    budget, last = sim.task.budget(), sim.task.last_consensus_round()
    played = play(sim, mnist[0])
    assert "NoConsensus" in played.finalize.names()
    assert not sim.task.round_info(played.round).consensus
    assert set(played.workers_paid.values()) == set(played.validators_paid.values()) == {0}
    # start_round took the escrow out of the budget (topping it up first if needed); it came back whole
    assert sim.task.budget() == max(budget, WORKER_REWARD + VALIDATOR_REWARD)
    assert sim.task.last_consensus_round() == last
    assert sim.task.status() is Status.PENDING
    assert_ether_conserved(played)


# ------------------------------------------------------------------------------ Sybil


def test_a_sybils_aliases_win_no_more_expected_weight_than_one_identity_with_the_same_stake(
    tmp_path: Path,
) -> None:
    """Role-level: validators registered with their stakes on chain draw their sortition (`Validator.
    sortition`) for several tasks, each with its own seed. A Sybil splits 400 units over three aliases;
    an identity holds 400 units in one account. The aliases' stake units (read from the registry's
    checkpoints) add up to the identity's, so their expected seats are equal exactly, and an uneven
    split that leaves a fraction of a unit per alias is floored: splitting can only lose. Over the
    seeds, the seats drawn are within 4 standard errors of the same binomial mean, and the seats
    claimed on chain are the ones drawn. (2,000-seed statistics of the same seat function, bit for
    bit the contract's: tests/sortition/test_statistics.py::test_splitting_a_stake_over_aliases_leaves_
    the_seat_distribution_unchanged.)"""
    unit, seeds, tau = ETH // 1000, 8, 64
    chain = Chain.connect()
    store = DirectoryStore(tmp_path)
    admin, req = demo_account("sybil-admin"), demo_account("sybil-requester")
    stakes = {"honest": 190, "whole": 400, "alias-0": 100, "alias-1": 100, "alias-2": 200}
    uneven = {"uneven-0": 2.5, "uneven-1": 7.5}  # 10 units' worth, floored to 2 + 7
    accounts = {name: demo_account(f"sybil-{name}") for name in [*stakes, *uneven]}
    for account in [admin, req, *accounts.values()]:
        chain.fund(account.address, 10 * ETH)
    registry = Administrator.deploy_registry(chain, admin, min_stake=unit, stake_unit=unit)
    validators = {name: Validator(a, chain, store, registry) for name, a in accounts.items()}
    for name, units in stakes.items():
        validators[name].register(units * unit)
    for name, units_f in uneven.items():
        validators[name].register(int(units_f * unit))
    requester = Requester(req, chain, store, registry)
    config = TaskConfig(description="", worker_reward=1, validator_reward=1, committee_size=tau)
    aliases = [f"alias-{i}" for i in range(3)]
    whole_seats: list[int] = []
    sybil_seats: list[int] = []
    for i in range(seeds):
        task = requester.create_task(config)
        requester.open_recruitment(task)
        tickets = {name: validators[name].sortition(task) for name in ["whole", *aliases]}
        total = tickets["whole"].total_units
        assert total == 1000
        assert sum(tickets[a].stake_units for a in aliases) == tickets["whole"].stake_units == 400
        expected = expected_seats(400, total, tau)
        assert sum(expected_seats(tickets[a].stake_units, total, tau) for a in aliases) == expected
        whole_seats.append(tickets["whole"].seats)
        sybil_seats.append(sum(tickets[a].seats for a in aliases))
        if i == 0:
            split = [validators[n].sortition(task) for n in uneven]
            assert [t.stake_units for t in split] == [2, 7]  # 9 units of the 10 bonded
            assert sum(expected_seats(t.stake_units, total, tau) for t in split) < expected_seats(
                10, total, tau
            )
            for name in ["whole", *aliases]:
                if tickets[name].seats:
                    validators[name].claim_seat(task)
            weights = task.committee()
            assert weights.get(accounts["whole"].address, 0) == tickets["whole"].seats
            assert sum(weights.get(accounts[a].address, 0) for a in aliases) == sybil_seats[0]
    mean = expected_seats(400, 1000, tau)  # 25.6 seats
    se = math.sqrt(seats_variance(400, 1000, tau) / seeds)  # √(24/8) ≈ 1.7
    assert abs(statistics.fmean(whole_seats) - mean) <= 4 * se, whole_seats
    assert abs(statistics.fmean(sybil_seats) - mean) <= 4 * se, sybil_seats
    assert statistics.fmean(sybil_seats) - statistics.fmean(whole_seats) <= 4 * math.sqrt(2) * se
