"""Where the task's Ether goes, under random actors, random calls and random time jumps.

A Hypothesis state machine drives one fresh task per example over the real contracts on the embedded
EVM: the requester funds, withdraws and starts rounds (sometimes paying too little), random workers
sign up and submit, random validators claim committee seats by sortition (one of them, with more stake,
weighs more), commit and reveal one of a few candidate manifests (or a wrong salt, a copied
commitment...), anybody advances, finalizes and releases, and workers and validators claim rewards with
honest or forged leaves and proofs. Rewards accrue: a worker's leaf carries what it earned in the task
through its round, a validator's claim pays every finalized round not paid yet, so a claim may come after
any number of rounds (or once at the end), and what is left unclaimed is released after the task's claim
window. Workers pay the task's sign-up deposit (or try to pay another
amount), get it back with their round-1 submission or, if the task ends before round 1, by asking for it;
the deposits of round-1 absentees go to the budget. Calls the contract refuses are part of the walk. The
machine books what was paid in, what was paid out and what each address is entitled to, and after every
step checks that:

1. the contract holds exactly its budget plus the running round's rewards plus the reward escrows (what
   consensus rounds moved there, less the claims and releases) plus the deposits it holds for workers
   (and ``owed()``, ``depositsHeld()``, ``workerEscrow()`` and ``validatorEscrow()`` agree);
2. nobody was ever paid more than its entitlement: a worker exactly the earnings of its leaf in the
   round of its last claim, a validator at most its seats' share of every finalized round whose
   consensus it revealed; nor a worker more than its one deposit back;
3. rewards, refunds and withdrawals never exceed what was paid in (the balance is exactly their
   difference), and once round 1's training is over every deposit was either paid back or forfeited.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from refiner.chain import (
    ChainError,
    ContractRevert,
    Durations,
    Manifest,
    ResultsTree,
    Status,
    Task,
    TxResult,
    WorkerResult,
)
from refiner.chain.accounts import vrf_key_for
from refiner.chain.committee import draw
from refiner.chain.earnings import carried, with_earnings
from refiner.sortition import Proof, prove
from tests.helpers import STAKE, World, handle, new_task

WORKER_REWARD = 10**18 + 7  # odd amounts, so that shares and units leave rounding dust
VALIDATOR_REWARD = 3 * 10**17 + 1
NEEDED = WORKER_REWARD + VALIDATOR_REWARD
DEPOSIT = 10**16 + 3
TARGET = 0.95
DURATIONS = Durations(recruitment=200, training=200, evaluation=200, reveal=200, idle=1000, claim=100)
ZERO32 = b"\0" * 32
# Expected committee size: above the validators' total stake units (6 to 8), so every unit wins a seat
# whatever the sortition seed. (The seed comes from a block hash, which the embedded chain randomizes: a
# partial draw would make an example play differently from one run to the next.)
TAU = 64
AHEAD = 30 * 86400  # seconds the chain's clock is put ahead of the wall clock, per example

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[p for p in Phase if p != Phase.explain],  # explaining re-runs the EVM under a tracer: too slow
    suppress_health_check=list(HealthCheck),
)

# ---------------------------------------------------------------- the actions and their arguments

# An actor is `who` in a pool of accounts (the pool's last two have the wrong role); with `fit`, it is
# rather one of those the protocol expects next (e.g. a signed-up worker that has not submitted yet).
FIT = st.sampled_from([True, True, True, False])
WHO = st.integers(0, 7)
AS_REQUESTER = st.sampled_from([True, True, True, True, True, False])  # False: the outsider tries
ROUND_PICK = st.sampled_from([0, 0, 0, 1, 2, 3])  # 0: the latest settled (else current) round
CANDIDATE = st.sampled_from([0, 0, 0, 0, 0, 1, 2])

ACTIONS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    # 150 s outlasts a claim window, 250 s a timed phase, 1100 s even the idle wait between rounds
    "wait": {
        "seconds": st.sampled_from([150, 1, 30, 60, 250, 1100]),
        "poke": st.sampled_from([True, True, False]),
    },
    "advance": {},
    "fund": {"amount": st.sampled_from([0, 1, 10**17, NEEDED]), "as_requester": AS_REQUESTER},
    "withdraw": {
        "how": st.sampled_from(["all", "half", "one", "too_much", "zero"]),
        "as_requester": AS_REQUESTER,
    },
    "open_recruitment": {"as_requester": AS_REQUESTER},
    "sign_up": {"fit": FIT, "who": WHO, "pay": st.sampled_from(["exact"] * 5 + ["none", "less", "more"])},
    "refund_deposit": {"fit": FIT, "who": WHO},
    # a validator claims the seats its sortition won, or more, or with another validator's VRF proof
    "claim_seat": {
        "fit": FIT,
        "who": WHO,
        "forge": st.sampled_from(["honest"] * 4 + ["more_seats", "borrowed"]),
    },
    "close_recruitment": {"as_requester": AS_REQUESTER},
    "start_round": {
        "value": st.sampled_from(["enough", "enough", "none", "short", "plenty"]),
        "as_requester": AS_REQUESTER,
    },
    "stop_training": {"as_requester": AS_REQUESTER},
    "submit": {"fit": FIT, "who": WHO, "samples": st.sampled_from([1000, 1000, 700, 1, 0])},
    "commit": {
        "fit": FIT,
        "who": WHO,
        "choice": CANDIDATE,
        "contributions": st.lists(
            st.one_of(st.integers(1, 400), st.integers(-100, 0)), min_size=6, max_size=6
        ),
        "accepted": st.lists(st.sampled_from([True, True, True, False]), min_size=6, max_size=6),
        "variant": st.sampled_from(
            ["honest", "honest", "honest", "payees+1", "half_total", "wrong_samples", "rich"]
        ),
        "accuracy": st.sampled_from([900_000, 900_000, 960_000]),  # 960_000 reaches the target
        "mode": st.sampled_from(["own"] * 8 + ["copy", "zero", "other_round"]),
    },
    "reveal": {
        "fit": FIT,
        "who": WHO,
        "salt_ok": st.sampled_from([True] * 5 + [False]),
        "what": st.sampled_from(["committed"] * 6 + ["other_candidate", "other_handles"]),
    },
    "finalize": {
        "what": st.sampled_from(["consensus", "consensus", "consensus", "candidate", "empty", "tampered"]),
        "choice": CANDIDATE,
    },
    "claim_reward": {
        "fit": FIT,
        "who": WHO,
        "round_pick": ROUND_PICK,
        "forge": st.sampled_from(
            ["honest"] * 4 + ["again", "other_tree", "inflate", "steal", "bad_samples", "accept", "no_proof"]
        ),
    },
    "claim_validator_reward": {
        "fit": FIT,
        "who": WHO,
        "again": st.sampled_from([False, False, False, True]),  # True: one that has been paid claims again
    },
    "release_unclaimed": {},
}


@dataclass
class Commit:
    """What a validator committed to, as far as the machine knows."""

    commitment: bytes
    manifest: Manifest
    salt: bytes
    own: bool  # False: a copied commitment or one for another round, which it cannot open


@dataclass
class RoundModel:
    submitters: dict[str, int] = field(default_factory=dict)  # worker → samples
    candidates: dict[int, Manifest] = field(default_factory=dict)
    trees: dict[bytes, ResultsTree] = field(default_factory=dict)  # results root → tree
    commits: dict[str, Commit] = field(default_factory=dict)
    reveals: dict[str, bytes] = field(default_factory=dict)  # validator → vote key, in reveal order
    consensus_key: bytes | None = None
    finalized: bool = False
    consensus: Manifest | None = None  # the manifest the round was finalized with, if it had consensus
    agreeing: int = 0  # vote weight that revealed the consensus key


class MoneyMachine(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        w = self.world
        self.snapshot = w.chain.snapshot()
        self.worker_pool = [*w.workers, w.validators[0], w.outsider]
        self.validator_pool = [*w.validators, w.workers[0], w.outsider]
        self.accounts = {a.address: a for a in [*self.worker_pool, *self.validator_pool]}
        self.deposited = 0  # everything paid in: funding and sign-up deposits
        self.withdrawn = 0
        self.deposit = 0
        self.refunded: dict[str, int] = {}  # worker → deposit paid back
        self.forfeited = 0
        self.worker_paid: dict[str, tuple[int, int]] = {}  # worker → round of its last claim, wei paid
        self.validator_paid: dict[str, int] = {}  # validator → wei paid
        self.released = 0  # unclaimed rewards returned to the budget after the claim window
        self.rounds: dict[int, RoundModel] = {}
        self.claim_deadline = 0
        self.signed_up: list[str] = []
        self.committee: dict[str, int] = {}  # validator → vote weight
        self.opened = False
        self.status = Status.PENDING
        self.current_round = 0
        self.deadline = 0

    def teardown(self) -> None:
        try:
            if hasattr(self, "task"):
                task = self.task
                assert (task.status(), task.current_round(), task.deadline()) == (
                    self.status,
                    self.current_round,
                    self.deadline,
                )
        finally:
            self.world.chain.revert(self.snapshot)

    # ------------------------------------------------------------------ plumbing

    @property
    def outsider(self) -> LocalAccount:
        return self.world.outsider

    def _boss(self, as_requester: bool) -> LocalAccount:
        return self.world.requester if as_requester else self.outsider

    def _actor(self, pool: list[LocalAccount], expected: Sequence[str], fit: bool, who: int) -> LocalAccount:
        if fit and expected:
            return self.accounts[expected[who % len(expected)]]
        return pool[who]

    def _round(self, pick: int) -> int:
        """Round `pick`, or for 0 the latest settled round, preferably one with rewards left to claim."""
        return pick or max(self.rounds, key=self._claim_priority, default=self.current_round)

    def _claim_priority(self, r: int) -> tuple[bool, bool, int]:
        return self.rounds[r].finalized, any(self._unpaid(r)), r

    def _claims_open(self) -> bool:
        return not self.claim_deadline or self.world.chain.now() < self.claim_deadline

    def _unpaid(self, r: int) -> tuple[list[str], list[str]]:
        """Workers that can claim now with their leaf of round `r` (it adds to what they were paid, and
        the escrow left covers it), and validators with rewards left to claim."""
        if not self._claims_open():
            return [], []
        worker_left, validator_left = self._escrows()
        workers = [
            w
            for w in self._model(r).submitters
            if self.worker_paid.get(w, (0, 0))[0] < r and 0 < self._worker_due(r, w) <= worker_left
        ]
        validators = [v for v in self.committee if 0 < self._validator_due(v) <= validator_left]
        return workers, validators

    def _leaf(self, r: int, worker: str) -> WorkerResult | None:
        """The worker's leaf in round `r`'s consensus tree, if it has one."""
        rm = self._model(r)
        tree = rm.trees.get(rm.consensus.results_root) if rm.consensus else None
        if tree is None or not any(x.worker == worker for x in tree.results):
            return None
        return tree.result_of(worker)

    def _worker_due(self, r: int, worker: str) -> int:
        """What a claim with the worker's leaf of round `r` pays: its earnings less what it was paid."""
        leaf = self._leaf(r, worker)
        return max(0, leaf.earned - self.worker_paid.get(worker, (0, 0))[1]) if leaf else 0

    def _model(self, r: int) -> RoundModel:
        return self.rounds.get(r) or RoundModel()

    def _try(self, send: Callable[[], TxResult], kind: str = "", replay: bool = True) -> TxResult | None:
        """Send a transaction; a refusal is fine. Books the rewards and withdrawals it paid. An accepted
        one-shot call (all but funding and withdrawing) is replayed at once, and must be refused."""
        res = self._send(send, kind)
        if res is not None and replay:
            again = self._send(send, kind)
            if again is not None:
                raise AssertionError(f"a one-shot call was accepted twice, emitting {again.names()}")
        return res

    def _send(self, send: Callable[[], TxResult], kind: str) -> TxResult | None:
        try:
            res = send()
        except ContractRevert:
            return None
        except ChainError as exc:
            # The embedded chain simulates a call on the latest block but mines it in the next one, one
            # second later: at `now == deadline` the simulation passes and the transaction reverts on
            # chain. Nothing changed either way.
            if "reverted on chain" not in str(exc):
                raise
            return None
        for e in res.events:
            if e.name == "RewardClaimed":
                assert kind in ("worker", "validator"), f"RewardClaimed emitted by a {kind!r} call"
                who, amount = str(e["account"]), int(e["amount"])
                if kind == "worker":
                    self.worker_paid[who] = (int(e["round"]), self.worker_paid.get(who, (0, 0))[1] + amount)
                else:
                    self.validator_paid[who] = self.validator_paid.get(who, 0) + amount
            elif e.name == "EscrowReleased" and int(e["round"]) == 0:
                assert kind == "release", f"the escrows released by a {kind!r} call"
                self.released += int(e["amount"])
            elif e.name == "DepositRefunded":
                assert kind == "refund", f"DepositRefunded emitted by a {kind!r} call"
                worker = str(e["worker"])
                self.refunded[worker] = self.refunded.get(worker, 0) + int(e["amount"])
            elif e.name == "DepositsForfeited":
                assert kind == "" and self.status == Status.TRAINING and self.current_round == 1
                self.forfeited += int(e["amount"])
            elif e.name == "Withdrawn":
                assert kind == "withdraw", f"Withdrawn emitted by a {kind!r} call"
                self.withdrawn += int(e["amount"])
            elif e.name == "StatusChanged":  # followed from the events: cheaper than three calls
                self.status, self.current_round = Status(e["to"]), int(e["round"])
                self.deadline = int(e["deadline"])
                if self.status == Status.TERMINATED:
                    self.claim_deadline = self.task.claim_deadline()
        return res

    # ------------------------------------------------------------------ setup

    @initialize(
        value=st.sampled_from([0, 0, NEEDED, 2 * NEEDED + 1]),
        max_rounds=st.sampled_from([3, 2, 1]),
        members=st.sampled_from([3, 1, 4, 3]),
        bonus=st.sampled_from([0, 1, 2, 0]),
        max_workers=st.sampled_from([2, 4]),
        recruited=st.booleans(),
        eager=st.sampled_from(["every round", "every round", "at the end", "at the end", "never"]),
        workers=st.lists(st.integers(0, 5), min_size=1, max_size=4, unique=True),
        validators=st.permutations(range(6)),
        deposit=st.sampled_from([DEPOSIT, DEPOSIT, 0]),
        squat=st.booleans(),
        quitter=st.sampled_from([False] * 4 + [True]),
    )
    def deploy(
        self,
        value: int,
        max_rounds: int,
        members: int,
        bonus: int,
        max_workers: int,
        recruited: bool,
        eager: str,
        workers: list[int],
        validators: list[int],
        deposit: int,
        squat: bool,
        quitter: bool,
    ) -> None:
        # A new block's timestamp is max(parent + 1, wall clock). Running ahead of the wall clock makes it
        # parent + 1: the same in every run of an example, as Hypothesis needs (deadlines decide what
        # happens, and which steps the walk offers).
        self.world.chain.increase_time(AHEAD)
        heavy = validators[0]  # bonds more stake before recruitment opens: its seats weigh more
        if bonus:
            self.world.registry.bond(self.world.validators[heavy], bonus * STAKE)
        self.task: Task = new_task(
            self.world,
            value=value,
            worker_reward=WORKER_REWARD,
            validator_reward=VALIDATOR_REWARD,
            target_accuracy=TARGET,
            max_rounds=max_rounds,
            max_workers=max_workers,
            committee_size=TAU,
            durations=DURATIONS,
            sign_up_deposit=deposit,
        )
        self.deposited, self.deposit = value, deposit
        self.squat = squat  # the last of several workers squats its slot: it never submits in round 1
        self.quitter = quitter  # the requester stops the task before round 1: every deposit is refundable
        self.max_workers, self.members = max_workers, members  # members: committee members the walk seats
        self.stake_units = {
            v.address: 1 + (bonus if i == heavy else 0) for i, v in enumerate(self.world.validators)
        }
        # when participants claim their rewards first thing: after every round, once the task has ended
        # (one claim for the whole task), or never (some are left unclaimed, to be released)
        self.eager = eager
        if recruited:  # half the examples skip the recruitment walk, to get further into the rounds
            self.open_recruitment(True)
            for i in workers:
                self.sign_up(False, i, "exact")
            for i in validators[:members]:
                self.claim_seat(False, i, "honest")
            self.close_recruitment(True)

    # ------------------------------------------------------------------ the walk

    def _next_step(self) -> str:
        """The action that moves the protocol on from here (the walk's most likely pick)."""
        s, rm = self.status, self._model(self.current_round)
        claim_now = {"every round": (Status.PENDING, Status.TERMINATED), "at the end": (Status.TERMINATED,)}
        if s in claim_now.get(self.eager, ()) and self.current_round:  # claim first
            workers, validators = self._unpaid(self._round(0))
            if workers or self._awake(validators):
                return "claim_reward" if workers else "claim_validator_reward"
        timed = (Status.RECRUITING, Status.TRAINING, Status.EVALUATING, Status.REVEALING)
        if s in timed and self.world.chain.now() >= self.deadline:
            return "wait"  # the phase is over: time to `advance`
        if s == Status.PENDING:
            if not self.opened:
                return "open_recruitment"
            if self.quitter and not self.current_round:
                return "stop_training"
            return "start_round" if self.signed_up and self.committee else "wait"  # else: idle until stopped
        if s == Status.RECRUITING:
            if len(self.committee) < self.members:
                return "claim_seat"
            return "sign_up" if len(self.signed_up) < min(2, self.max_workers) else "close_recruitment"
        if s == Status.TRAINING and self._to_submit(rm):
            return "submit"
        if s == Status.EVALUATING and any(v not in rm.commits for v in self.committee):
            return "commit"
        if s == Status.REVEALING and any(c.own and v not in rm.reveals for v, c in rm.commits.items()):
            return "reveal"
        if s == Status.REWARDING:
            return "finalize"
        if s == Status.TERMINATED:
            if self._refundable():
                return "refund_deposit"
            if self._releasable():
                return "release_unclaimed"
            return "wait" if sum(self._escrows()) else "withdraw"
        return "wait"

    def _menu(self) -> list[str]:
        """Actions to pick from now, repeated to weigh them: mostly the protocol's next step (by whoever,
        with whatever arguments), then the status's other steps, time, money and, once a round is
        settled, claims; and now and then any action at all."""
        s = self.status
        steps = [self._next_step()] * 3
        if s == Status.RECRUITING:
            steps += ["sign_up", "claim_seat", "close_recruitment"]
        elif s == Status.PENDING and self.opened:  # before round 1 too: the deposits are then refundable
            steps += ["start_round", "stop_training"]
        elif s in (Status.TRAINING, Status.EVALUATING, Status.REVEALING):
            steps += [{Status.TRAINING: "submit", Status.EVALUATING: "commit", Status.REVEALING: "reveal"}[s]]
        elif s == Status.TERMINATED:
            steps += ["refund_deposit"]
        steps += ["wait", "fund", "withdraw", "anything"]
        if self.settled():  # claims, honest or forged
            steps += ["claim_reward", "claim_reward", "claim_validator_reward", "release_unclaimed"]
        return steps

    def settled(self) -> bool:
        return any(m.finalized for m in self.rounds.values())

    @rule(data=st.data())
    def act(self, data: st.DataObject) -> None:
        """One step of the walk. (A single rule, rather than one per action, keeps Hypothesis's swarm
        testing from switching off the steps that every deeper state depends on.)"""
        name = data.draw(st.sampled_from(self._menu()), label="action")
        if name == "anything":  # any action whatever the status: mostly a refusal, sometimes a success
            name = data.draw(st.sampled_from(sorted(ACTIONS)), label="any action")
        kwargs = {k: data.draw(s, label=k) for k, s in ACTIONS[name].items()}
        getattr(self, name)(**kwargs)

    # ------------------------------------------------------------------ anyone

    def wait(self, seconds: int, poke: bool) -> None:
        """Time passes; then, maybe, the outsider pokes `advance`."""
        self.world.chain.increase_time(seconds)
        if poke:
            self.advance()

    def advance(self) -> None:
        self._try(lambda: self.task.advance(self.outsider))

    # ------------------------------------------------------------------ requester

    def fund(self, amount: int, as_requester: bool) -> None:
        before = self.status
        if self._try(lambda: self.task.fund(self._boss(as_requester), amount), replay=False):
            assert as_requester and amount > 0 and before != Status.TERMINATED
            self.deposited += amount

    def withdraw(self, how: str, as_requester: bool) -> None:
        budget = self.task.budget()
        amount = {"all": budget, "half": budget // 2, "one": 1, "too_much": budget + 1, "zero": 0}[how]
        res = self._try(
            lambda: self.task.withdraw(self._boss(as_requester), amount), "withdraw", replay=False
        )
        if res:
            assert as_requester and 0 < amount <= budget
            assert res.event("Withdrawn")["amount"] == amount

    def open_recruitment(self, as_requester: bool) -> None:
        if self._try(lambda: self.task.open_recruitment(self._boss(as_requester))):
            assert as_requester and not self.opened
            self.opened = True

    def sign_up(self, fit: bool, who: int, pay: str) -> None:
        expected = [w.address for w in self.world.workers if w.address not in self.signed_up]
        worker = self._actor(self.worker_pool, expected, fit, who)
        amount = {
            "exact": self.deposit,
            "none": 0,
            "less": max(0, self.deposit - 1),
            "more": self.deposit + 1,
        }
        if self._try(lambda: self.task.sign_up(worker, deposit=amount[pay])):
            assert worker.address in expected and len(self.signed_up) < self.max_workers
            assert amount[pay] == self.deposit
            self.signed_up.append(worker.address)
            self.deposited += self.deposit

    def _refundable(self) -> list[str]:
        """Workers that may take their deposit back now: the task ended before round 1."""
        if self.status != Status.TERMINATED or self.current_round or not self.deposit:
            return []
        return [w for w in self.signed_up if w not in self.refunded]

    def refund_deposit(self, fit: bool, who: int) -> None:
        expected = self._refundable()
        worker = self._actor(self.worker_pool, expected, fit, who)
        if self._try(lambda: self.task.refund_deposit(worker), "refund"):
            assert worker.address in expected

    def claim_seat(self, fit: bool, who: int, forge: str) -> None:
        expected = [v.address for v in self.world.validators if v.address not in self.committee]
        validator = self._actor(self.validator_pool, expected, fit, who)
        proof, seats = self._ticket(validator)
        if forge == "more_seats":
            seats += 1
        elif forge == "borrowed":
            proof = self._ticket(next(v for v in self.world.validators if v.address != validator.address))[0]
        res = self._try(lambda: self.task.claim_seat(validator, proof, seats))
        if res:
            assert forge == "honest" and validator.address in expected
            weight = int(res.event("CommitteeMemberAdded")["weight"])
            assert weight == seats == self.stake_units[validator.address]
            self.committee[validator.address] = weight

    def _ticket(self, account: LocalAccount) -> tuple[Proof, int]:
        """`account`'s VRF proof for the task's sortition seed and the seats it wins (mining the seed block
        if need be); when there is no seed to prove for (before recruitment), a proof for a made-up one."""
        recruiting = self.status == Status.RECRUITING
        if not recruiting and self.task.sortition_seed() is None:
            return prove(vrf_key_for(account), 1), 1
        sender = self.outsider if recruiting else None  # re-schedules a seed whose block hash aged out
        ticket = draw(self.task, self.world.registry, account.address, vrf_key_for(account), sender=sender)
        return ticket.proof, ticket.seats

    def close_recruitment(self, as_requester: bool) -> None:
        if self._try(lambda: self.task.close_recruitment(self._boss(as_requester))):
            assert as_requester

    def start_round(self, value: str, as_requester: bool) -> None:
        r = self.current_round + 1
        budget = self.task.budget()
        shortfall = max(0, NEEDED - budget)
        amount = {"none": 0, "short": max(0, shortfall - 1), "enough": shortfall, "plenty": NEEDED}[value]
        res = self._try(
            lambda: self.task.start_round(
                self._boss(as_requester),
                handle(f"model-{r}"),
                handle(f"model-keys-{r}"),
                handle(f"validation-{r}"),
                handle(f"validation-keys-{r}"),
                value=amount,
            )
        )
        if res:
            assert as_requester and budget + amount >= NEEDED and self.signed_up and self.committee
            assert self.current_round == r and r not in self.rounds
            self.deposited += amount
            self.rounds[r] = RoundModel()

    def stop_training(self, as_requester: bool) -> None:
        if self._try(lambda: self.task.stop_training(self._boss(as_requester))):
            assert as_requester

    # ------------------------------------------------------------------ workers

    def _to_submit(self, rm: RoundModel) -> list[str]:
        """Signed-up workers that have not submitted this round, but the squatter in round 1."""
        squatter = (
            self.signed_up[-1] if self.squat and len(self.signed_up) > 1 and self.current_round == 1 else ""
        )
        return [w for w in self.signed_up if w not in rm.submitters and w != squatter]

    def submit(self, fit: bool, who: int, samples: int) -> None:
        r = self.current_round
        rm = self._model(r)
        worker = self._actor(self.worker_pool, self._to_submit(rm), fit, who)
        res = self._try(
            lambda: self.task.submit_training_results(
                worker, handle(f"update-{r}-{worker.address}"), handle(f"keys-{r}-{worker.address}"), samples
            ),
            "submit",
        )
        if res:
            assert worker.address in self.signed_up and worker.address not in rm.submitters and samples > 0
            rm.submitters[worker.address] = samples
            if r == 1 and self.deposit:  # the round-1 submission pays the deposit back (no event)
                self.refunded[worker.address] = self.deposit

    def claim_reward(self, fit: bool, who: int, round_pick: int, forge: str) -> None:
        r = self._round(round_pick)
        rm = self._model(r)
        consensus = rm.trees.get(rm.consensus.results_root) if rm.consensus else None
        paid = [w for w, (last, _) in self.worker_paid.items() if last >= r]
        if forge == "again" and paid:  # a worker paid with this round's leaf (or a later one) claims again
            worker = self.accounts[paid[who % len(paid)]]
        else:
            worker = self._actor(self.worker_pool, self._unpaid(r)[0] or list(rm.submitters), fit, who)
        others = [t for t in rm.trees.values() if t is not consensus]
        tree = consensus or (others[0] if others else None)
        if forge == "other_tree" and others:
            tree = others[-1]
        if tree is not None and any(x.worker == worker.address for x in tree.results):
            result, proof = tree.result_of(worker.address), tree.proof(worker.address)
        else:
            result = WorkerResult(
                worker.address, True, rm.submitters.get(worker.address, 1), 100, WORKER_REWARD
            )
            proof = []
        if forge == "inflate":
            result = replace(result, contribution=2 * result.contribution + 1, earned=2 * result.earned + 1)
        elif forge == "steal" and tree is not None:
            victims = [x for x in tree.results if x.worker != worker.address]
            if victims:
                result, proof = victims[0], tree.proof(victims[0].worker)
        elif forge == "bad_samples":
            result = replace(result, samples=result.samples + 1)
        elif forge == "accept":
            result = replace(result, accepted=True, contribution=max(result.contribution, 1))
        elif forge == "no_proof":
            proof = []
        due = self._worker_due(r, worker.address)
        res = self._try(lambda: self.task.claim_reward(worker, r, result, proof), "worker")
        if res:  # an accepted claim pays what the leaf adds exactly (the invariants check it is not more)
            assert res.event("RewardClaimed")["amount"] == due > 0
            assert result == self._leaf(r, worker.address)

    # ------------------------------------------------------------------ validators

    def _candidate(
        self,
        rm: RoundModel,
        choice: int,
        contributions: list[int],
        accepted: list[bool],
        variant: str,
        acc: int,
    ) -> Manifest:
        """Candidate manifest `choice` of the round, made up by the first validator that picks it: a results
        tree over the round's submitters, sometimes with a lying total, payee count or sample count."""
        if choice not in rm.candidates:
            results = [
                WorkerResult(w, accepted[i], n + (variant == "wrong_samples"), contributions[i])
                for i, (w, n) in enumerate(sorted(rm.submitters.items()))
            ]
            # a lying committee may credit anything: "rich" doubles every worker's earnings
            earned = with_earnings(results, WORKER_REWARD, self._earned_before(self.current_round))
            if variant == "rich":
                earned = [replace(x, earned=2 * x.earned + 1) for x in earned]
            tree = ResultsTree(earned)
            m = tree.manifest(
                acc,
                hashlib.sha256(f"model-{choice}-{variant}".encode()).digest(),
                handle("agg"),
                handle("det"),
            )
            if variant == "payees+1":
                m = replace(m, payees=m.payees + 1)
            elif variant == "half_total":
                m = replace(m, total_contribution=(m.total_contribution + 1) // 2)
            rm.candidates[choice] = m
            rm.trees[tree.root] = tree
        return rm.candidates[choice]

    def commit(
        self,
        fit: bool,
        who: int,
        choice: int,
        contributions: list[int],
        accepted: list[bool],
        variant: str,
        accuracy: int,
        mode: str,
    ) -> None:
        r = self.current_round
        rm = self._model(r)
        validator = self._actor(
            self.validator_pool, [v for v in self.committee if v not in rm.commits], fit, who
        )
        v = validator.address
        base = self._candidate(rm, choice, contributions, accepted, variant, accuracy)
        # each validator names its own copies of the model and details: same vote, different commitment
        manifest = replace(
            base, aggregate_handle=handle(f"agg-{v}-{r}"), details_handle=handle(f"det-{v}-{r}")
        )
        salt = hashlib.sha256(f"salt-{v}-{r}".encode()).digest()
        copied = [c for a, c in rm.commits.items() if a != v]
        if mode == "copy" and copied:
            c = replace(copied[0], own=False)
        elif mode == "other_round":
            c = Commit(self.task.commitment_for(v, r + 1, manifest, salt), manifest, salt, False)
        elif mode == "zero":
            c = Commit(ZERO32, manifest, salt, False)
        else:
            c = Commit(self.task.commitment_for(v, r, manifest, salt), manifest, salt, True)
        if self._try(lambda: self.task.commit_manifest(validator, c.commitment)):
            assert v in self.committee and v not in rm.commits and c.commitment != ZERO32
            rm.commits[v] = c

    def reveal(self, fit: bool, who: int, salt_ok: bool, what: str) -> None:
        r = self.current_round
        rm = self._model(r)
        expected = [v for v in rm.commits if v not in rm.reveals]
        validator = self._actor(self.validator_pool, expected, fit, who)
        v = validator.address
        c = rm.commits.get(v)
        manifest, salt = (c.manifest, c.salt) if c else (rm.candidates.get(0, Manifest.empty()), ZERO32)
        if what == "other_candidate":
            manifest = next(
                (m for m in rm.candidates.values() if m.vote_key() != manifest.vote_key()), manifest
            )
        elif what == "other_handles":
            manifest = replace(manifest, aggregate_handle=handle(f"stolen-{r}"))
        if not salt_ok:
            salt = bytes([salt[0] ^ 1]) + salt[1:]
        if self._try(lambda: self.task.reveal_manifest(validator, manifest, salt)):
            # only a validator's own commitment opens, and only with its manifest and salt
            assert c is not None and c.own and salt == c.salt and manifest == c.manifest
            assert v not in rm.reveals
            key = manifest.vote_key()
            rm.reveals[v] = key
            if rm.consensus_key is None and 2 * self._votes(rm, key) > sum(self.committee.values()):
                rm.consensus_key = key

    def _awake(self, validators: list[str]) -> list[str]:
        """All but the last member of a committee of three or more, who oversleeps its claims (so that
        some rewards are left for `release_unclaimed`)."""
        sleeper = list(self.committee)[-1] if len(self.committee) >= 3 else None
        return [v for v in validators if v != sleeper]

    def _votes(self, rm: RoundModel, key: bytes) -> int:
        """Vote weight revealed for `key`."""
        return sum(self.committee[v] for v, k in rm.reveals.items() if k == key)

    def claim_validator_reward(self, fit: bool, who: int, again: bool) -> None:
        unpaid = self._unpaid(self._round(0))[1]
        paid = list(self.validator_paid)
        if again and paid:
            validator = self.accounts[paid[who % len(paid)]]
        else:
            expected = self._awake(unpaid) or self._awake(list(self.committee))
            validator = self._actor(self.validator_pool, expected, fit, who)
        due = self._validator_due(validator.address)
        res = self._try(lambda: self.task.claim_validator_reward(validator), "validator")
        if res:
            event = res.event("RewardClaimed")
            assert event["amount"] == due > 0
            assert event["round"] == max((r for r, m in self.rounds.items() if m.finalized), default=0)

    # ------------------------------------------------------------------ settlement

    def finalize(self, what: str, choice: int) -> None:
        r = self.current_round
        rm = self._model(r)
        agreed = [rm.commits[v].manifest for v, key in rm.reveals.items() if key == rm.consensus_key]
        if what == "consensus" and agreed:
            manifest = agreed[-1]
        elif what == "tampered" and agreed:
            manifest = replace(agreed[0], accuracy=agreed[0].accuracy + 1)
        elif what == "candidate" and rm.candidates:
            manifest = rm.candidates.get(choice, next(iter(rm.candidates.values())))
        else:
            manifest = Manifest.empty()
        res = self._try(lambda: self.task.finalize_round(self.outsider, manifest))
        if res is None:
            return
        assert r in self.rounds and not rm.finalized
        rm.finalized = True
        if rm.consensus_key is None:
            res.event("NoConsensus")
        else:
            assert res.event("RoundFinalized")["voteKey"] == rm.consensus_key == manifest.vote_key()
            rm.consensus = manifest
            rm.agreeing = self._votes(rm, rm.consensus_key)

    def _releasable(self) -> bool:
        """Whether the task's unclaimed rewards can go back to the budget: it terminated, its claim
        window has closed and some escrow is left."""
        closed = self.status == Status.TERMINATED and self.world.chain.now() > self.claim_deadline
        return closed and sum(self._escrows()) > 0

    def release_unclaimed(self) -> None:
        releasable = self._releasable()
        if self._try(lambda: self.task.release_unclaimed(self.outsider), "release"):
            assert releasable

    # ------------------------------------------------------------------ invariants

    def _earned_before(self, r: int) -> dict[str, int]:
        """Each worker's earnings through the consensus rounds before `r` (what honest leaves carry)."""
        earned: dict[str, int] = {}
        for k in sorted(k for k in self.rounds if k < r):
            rm = self.rounds[k]
            tree = rm.trees.get(rm.consensus.results_root) if rm.consensus else None
            if tree is not None:
                earned = carried(earned, tree.results)
        return earned

    def _validator_entitlement(self, validator: str) -> int:
        """validatorUnit × weight over the finalized rounds whose consensus vote key the validator revealed
        (validatorUnit: the validator reward over the round's agreeing weight)."""
        return sum(
            VALIDATOR_REWARD // rm.agreeing * self.committee[validator]
            for rm in self.rounds.values()
            if rm.consensus is not None and rm.reveals.get(validator) == rm.consensus_key
        )

    def _validator_due(self, validator: str) -> int:
        if validator not in self.committee:
            return 0
        return self._validator_entitlement(validator) - self.validator_paid.get(validator, 0)

    def _escrows(self) -> tuple[int, int]:
        """The worker and validator reward escrows: what finalized consensus rounds moved there, less the
        claims; both emptied by the release."""
        if self.released:
            return 0, 0
        worker = validator = 0
        for rm in self.rounds.values():
            m = rm.consensus
            if m is None:
                continue
            if m.payees and m.total_contribution:
                worker += WORKER_REWARD
            validator += VALIDATOR_REWARD // rm.agreeing * rm.agreeing
        worker -= sum(paid for _, paid in self.worker_paid.values())
        validator -= sum(self.validator_paid.values())
        return worker, validator

    @invariant()
    def balance_is_budget_plus_escrow(self) -> None:
        running = self.rounds.get(self.current_round)
        in_flight = NEEDED if running is not None and not running.finalized else 0
        worker, validator = self._escrows()
        assert (self.task.worker_escrow(), self.task.validator_escrow()) == (worker, validator)
        budget, balance, held = self.task.budget(), self.task.balance(), self._deposits_held()
        assert balance == budget + in_flight + worker + validator + held, (balance, budget, in_flight, held)
        assert balance == self.task.owed()
        assert held == self.task.deposits_held()

    def _deposits_held(self) -> int:
        """All deposits before round 1 (less those paid back), the round-1 absentees' while round 1
        trains, none afterwards."""
        if self.current_round == 0:
            return self.deposit * len(self.signed_up) - sum(self.refunded.values())
        if self.current_round == 1 and self.status == Status.TRAINING:
            return self.deposit * (len(self.signed_up) - len(self._model(1).submitters))
        return 0

    @invariant()
    def deposits_are_paid_back_or_forfeited(self) -> None:
        assert all(amount == self.deposit for amount in self.refunded.values()), self.refunded
        assert set(self.refunded) <= set(self.signed_up)
        paid_in = self.deposit * len(self.signed_up)
        assert sum(self.refunded.values()) + self.forfeited + self._deposits_held() == paid_in
        if self.deposit and self.current_round and not self._deposits_held():  # round 1's training is over
            absent = len(self.signed_up) - len(self._model(1).submitters)
            assert self.forfeited == self.deposit * absent
            assert set(self.refunded) == set(self._model(1).submitters)

    @invariant()
    def nobody_paid_beyond_entitlement(self) -> None:
        for worker, (last, amount) in self.worker_paid.items():
            leaf = self._leaf(last, worker)
            assert leaf is not None and amount == leaf.earned, ("worker", last, worker, amount)
        for validator, amount in self.validator_paid.items():
            assert amount <= self._validator_entitlement(validator), ("validator", validator, amount)

    @invariant()
    def paid_out_within_deposits(self) -> None:
        paid_out = self.withdrawn + sum(paid for _, paid in self.worker_paid.values())
        paid_out += sum(self.validator_paid.values())
        paid_out += sum(self.refunded.values())
        assert paid_out <= self.deposited
        assert self.task.balance() == self.deposited - paid_out


def test_money_is_conserved_under_random_play(world: World) -> None:
    machine = type("TaskMoneyMachine", (MoneyMachine,), {"world": world})
    # Run in a fresh thread, whose Python stack starts empty: under pytest's deeper stack, CPython 3.11's
    # frame stack crosses a chunk boundary inside the EVM's hot loop and maps and unmaps memory millions of
    # times, which makes this test 2-3 times slower.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run_state_machine_as_test, machine, settings=SETTINGS).result()
