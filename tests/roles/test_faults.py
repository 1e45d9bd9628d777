"""Faults and bad files in a whole task: the real embedded EVM, a directory store and real encryption;
logistic model, 300 MNIST images per honest worker, 200 validation images, ε = 1.0, every validator one
seat.

* Participants that die mid-round (stop acting): the phase deadlines pass, anybody `advance`s, and the
  round completes and pays the others; when too much of the committee is gone the round ends without
  consensus and its escrow goes back to the requester (`test_limit_*`).
* Bad files, each crafted as a malicious worker's submission (valid encryption around a bad plaintext,
  or bad storage, handles or key envelopes): every validator rejects that update with a clear reason,
  the manifest lists it as rejected, the honest workers are paid exactly and no process crashes.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from refiner.chain import Chain, Durations, Status, TaskConfig, TxResult, public_key_bytes
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist, subset
from refiner.fl.models import State, model_digest, serialize
from refiner.roles import Evaluated, Validator, ValidatorBehaviour, Worker, WorkerBehaviour
from refiner.roles.validator import MAX_REASON
from refiner.safejson import MAX_DEPTH as MAX_JSON_DEPTH
from refiner.safejson import depth as json_depth
from refiner.sharing import Context, encrypt, make_envelope, share
from refiner.simulation import Simulation
from refiner.storage import DirectoryStore, Handle
from refiner.units import ETH, MAX_PPM
from refiner.wire.details import ManifestDetails
from refiner.wire.reads import consensus_details

WORKER_REWARD = ETH
VALIDATOR_REWARD = 3 * ETH // 10
DURATIONS = Durations(recruitment=600, training=600, evaluation=600, reveal=600, idle=6000, claim=60000)

Data = tuple[Dataset, list[Dataset]]


@pytest.fixture(scope="module")
def mnist() -> Data:
    train, _ = load_mnist()
    validation, shards = split_mnist(train, [300, 300, 300], validation_size=200, seed=1)
    return validation, shards


def deploy(shards: list[Dataset], validators: int, store: Path, label: str) -> Simulation:
    config = TaskConfig(
        description="",
        worker_reward=WORKER_REWARD,
        validator_reward=VALIDATOR_REWARD,
        target_accuracy=1.0,
        max_rounds=20,
        max_workers=len(shards),
        committee_size=validators,
        epsilon=1.0,
        durations=DURATIONS,
    )
    return Simulation.deploy(
        Chain.connect(),
        DirectoryStore(store),
        shards,
        [WorkerBehaviour.HONEST] * len(shards),
        [ValidatorBehaviour.HONEST] * validators,
        config=config,
        model="logistic",
        lr=0.05,
        stake_unit=ETH,  # one unit each and τ = W: every validator holds exactly one seat
        label=label,
    )


@dataclass
class Round:
    round: int
    work: dict[str, Evaluated]
    finalize: TxResult
    workers_paid: dict[str, int]
    validators_paid: dict[str, int]


def pass_deadline(sim: Simulation, expected: Status) -> None:
    """Nobody else will act: wait out the phase and move the task on (anybody may; here a worker)."""
    task, anybody = sim.task, sim.workers[0].account
    with pytest.raises(Exception, match="DeadlineNotReached"):
        task.advance(anybody)
    sim.chain.increase_time(max(DURATIONS.training, DURATIONS.evaluation, DURATIONS.reveal) + 1)
    task.advance(anybody)
    assert task.status() is expected


def settle(sim: Simulation, round_: int, work: dict[str, Evaluated], balance: int, funded: int) -> Round:
    """Finalize, let everybody claim, check Ether is conserved to the wei."""
    task = sim.task
    fin = sim.requester.finalize_round(task)
    consensus = "RoundFinalized" in fin.names()
    workers_paid = {w.address: w.claim_reward(task, round_) if consensus else 0 for w in sim.workers}
    validators_paid = {v.address: v.claim_reward(task, round_) if consensus else 0 for v in sim.committee}
    paid = sum(workers_paid.values()) + sum(validators_paid.values())
    # what is left in the escrows is the rounding dust of the workers' shares (a wei or so each)
    assert task.validator_escrow() == 0 and task.worker_escrow() <= len(sim.workers)
    assert balance + funded - paid == task.balance() == task.owed() == task.budget() + task.worker_escrow()
    return Round(round_, work, fin, workers_paid, validators_paid)


def funds(start: TxResult) -> int:
    return sum(int(e["amount"]) for e in start.events if e.name == "Funded")


def assert_paid_exactly(sim: Simulation, played: Round, validators: list[Validator]) -> None:
    """Workers get workerReward · c / Σc of the consensus manifest (nothing if rejected, absent or not
    positive); the given validators share the validator reward, the rest of the committee gets 0."""
    _, details = consensus_details(sim.store, sim.task, played.round)
    total = sim.task.round_info(played.round).total_contribution
    results = {r["worker"]: r for r in details.results}
    for w in sim.workers:
        r = results.get(w.address, {"accepted": False, "contribution": 0})
        paid = r["accepted"] and r["contribution"] > 0
        assert played.workers_paid[w.address] == (WORKER_REWARD * r["contribution"] // total if paid else 0)
    for v in sim.committee:
        share_ = VALIDATOR_REWARD // len(validators) if v in validators else 0
        assert played.validators_paid[v.address] == share_


# ---------------------------------------------------------------------------------- dying participants


@pytest.fixture(scope="module")
def alive(mnist: Data, tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    """Three honest workers and four validators; each test plays one round of this task."""
    return deploy(mnist[1], 4, tmp_path_factory.mktemp("faults-dying"), "faults-dying")


def play(
    sim: Simulation,
    validation: Dataset,
    dead_workers: frozenset[int] = frozenset(),
    dead_before_commit: frozenset[int] = frozenset(),
    dead_after_commit: frozenset[int] = frozenset(),
) -> Round:
    """One round in which the given workers and committee members (by index) stop acting: a dead worker
    trains but never submits; a validator dies before committing or after committing (never reveals)."""
    task, committee = sim.task, sim.committee
    assert task.status() is Status.PENDING
    balance = task.balance()
    funded = funds(sim.requester.start_round(task, sim.global_state, validation))
    round_ = task.current_round()
    for i, w in enumerate(sim.workers):
        update = w.train(task)
        if i not in dead_workers:
            w.submit_training_results(task, update)
    if dead_workers:
        pass_deadline(sim, Status.EVALUATING)
    live = [v for i, v in enumerate(committee) if i not in dead_before_commit]
    work = {v.address: v.evaluate(task) for v in live}
    for v in live:
        v.commit_manifest(task, work[v.address])
    if dead_before_commit:
        pass_deadline(sim, Status.REVEALING)
    for i, v in enumerate(committee):
        if v in live and i not in dead_after_commit:
            v.reveal_manifest(task, work[v.address])
    if dead_after_commit:
        pass_deadline(sim, Status.REWARDING)
    assert task.status() is Status.REWARDING
    return settle(sim, round_, work, balance, funded)


def test_a_worker_that_dies_mid_round_is_left_out_and_the_others_are_paid(
    alive: Simulation, mnist: Data
) -> None:
    played = play(alive, mnist[0], dead_workers=frozenset({2}))
    dead = alive.workers[2].address
    for work in played.work.values():
        assert dead not in {r["worker"] for r in work.details.results}  # not even as rejected
    assert alive.task.submitted_samples(played.round, dead) == 0 and alive.task.worker_claims(dead) == (0, 0)
    assert played.workers_paid[dead] == 0
    assert all(played.workers_paid[w.address] > 0 for w in alive.workers[:2])
    assert_paid_exactly(alive, played, alive.committee)


def test_a_validator_that_dies_before_committing_does_not_stop_the_round(
    alive: Simulation, mnist: Data
) -> None:
    played = play(alive, mnist[0], dead_before_commit=frozenset({3}))
    dead = alive.committee[3]
    assert alive.task.ballot_of(played.round, dead.address) == bytes(32)
    assert "RoundFinalized" in played.finalize.names()
    assert_paid_exactly(alive, played, alive.committee[:3])


def test_a_validator_that_dies_after_committing_does_not_stop_the_round(
    alive: Simulation, mnist: Data
) -> None:
    played = play(alive, mnist[0], dead_after_commit=frozenset({0}))
    assert alive.committee[0].address not in alive.task.revealed_manifests(played.round)
    assert "RoundFinalized" in played.finalize.names()
    assert_paid_exactly(alive, played, alive.committee[1:])


def test_limit_half_the_committee_dead_means_no_consensus_and_a_refund(
    alive: Simulation, mnist: Data
) -> None:
    """Two of four seats are no majority: the round ends without consensus; nobody is paid, the escrow
    returns to the requester's budget and the global model stays. The next round is unaffected."""
    last = alive.task.last_consensus_round()
    played = play(alive, mnist[0], dead_before_commit=frozenset({0}), dead_after_commit=frozenset({1}))
    assert "NoConsensus" in played.finalize.names()
    assert set(played.workers_paid.values()) == set(played.validators_paid.values()) == {0}
    assert alive.task.last_consensus_round() == last
    assert alive.task.budget() >= WORKER_REWARD + VALIDATOR_REWARD
    again = play(alive, mnist[0])
    assert "RoundFinalized" in again.finalize.names()
    assert_paid_exactly(alive, again, alive.committee)


# ---------------------------------------------------------------------------------------- bad files

#: What each malicious worker submits → what every validator must say about it.
Craft = Callable[["Bad", Worker], tuple[bytes, bytes, int]]
BAD: dict[str, tuple[Craft, str]] = {}


def bad(reason: str) -> Callable[[Craft], Craft]:
    def register(craft: Craft) -> Craft:
        BAD[craft.__name__.removeprefix("craft_").replace("_", "-")] = (craft, reason)
        return craft

    return register


@dataclass
class Bad:
    """What a malicious worker crafting its submission knows: the task, the round's global model, the
    committee's and the requester's keys, and the store."""

    sim: Simulation
    global_state: State

    def context(self, worker: Worker) -> Context:
        return Context(self.sim.task.address, self.sim.task.current_round(), worker.address, "update")

    def recipients(self) -> dict[str, bytes]:
        task, reg = self.sim.task, self.sim.registry
        keys = {v: reg.validator_key(v) for v in task.committee()}
        keys[task.requester()] = public_key_bytes(self.sim.requester.account)
        return keys

    def shared(self, worker: Worker, plaintext: bytes, samples: int = 300) -> tuple[bytes, bytes, int]:
        """`plaintext` encrypted correctly to the committee and the requester, as an honest worker would."""
        model, keys = share(self.sim.store, plaintext, self.context(worker), self.recipients())
        return bytes(model), bytes(keys), samples

    def enveloped(self, worker: Worker, envelope: bytes) -> tuple[bytes, bytes, int]:
        """A correct ciphertext of the global model with the given key envelope."""
        _, sealed = encrypt(serialize(self.global_state), self.context(worker))
        return bytes(self.sim.store.put(sealed)), bytes(self.sim.store.put(envelope)), 300

    def state(self, **changes: torch.Tensor) -> State:
        return {**{k: v.clone() for k, v in self.global_state.items()}, **changes}


@bad("integrity check failed")
def craft_tampered_in_storage(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    """Storage returns wrong bytes: the stored ciphertext is overwritten after the handle was computed."""
    model, keys, n = b.shared(w, serialize(b.global_state))
    store = b.sim.store
    assert isinstance(store, DirectoryStore)
    path = store.path_of(Handle.from_bytes(model))
    path.write_bytes(bytes(x ^ 1 for x in path.read_bytes()))
    return model, keys, n


@bad("no object")
def craft_handle_that_does_not_resolve(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    _, keys, n = b.shared(w, serialize(b.global_state))
    return bytes(Handle.of(b"never stored anywhere")), keys, n


@bad("malformed binary handle")
def craft_empty_handle(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    """An empty handle is refused by the contract (InvalidHandle); a one-byte one passes it, not a reader."""
    _, keys, n = b.shared(w, serialize(b.global_state))
    return b"\x00", keys, n


@bad("malformed binary handle")
def craft_oversized_handle(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    model, _, n = b.shared(w, serialize(b.global_state))
    return model, b"\x12\x20" + bytes(62), n  # 64 bytes: the longest the contract lets through


@bad("cannot unwrap the key")
def craft_key_wrapped_for_someone_else(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    """Every committee member's entry holds the key wrapped to the worker's own public key."""
    key, sealed = encrypt(serialize(b.global_state), b.context(w))
    own = public_key_bytes(w.account)
    envelope = make_envelope(key, b.context(w), dict.fromkeys(b.recipients(), own))
    return bytes(b.sim.store.put(sealed)), bytes(b.sim.store.put(envelope)), 300


@bad("is not a recipient")
def craft_committee_not_a_recipient(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    key, sealed = encrypt(serialize(b.global_state), b.context(w))
    requester = b.sim.requester.account
    envelope = make_envelope(key, b.context(w), {requester.address: public_key_bytes(requester)})
    return bytes(b.sim.store.put(sealed)), bytes(b.sim.store.put(envelope)), 300


@bad("key envelope is for")
def craft_replay_of_another_workers_handles(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    """Bound to the honest worker that submitted first: another sender in the envelope's context."""
    first = b.sim.task.round_events("TrainingResultsSubmitted", b.sim.task.current_round())[0]
    return bytes(first["modelHandle"]), bytes(first["keysHandle"]), 300


@bad("key envelope is malformed")
def craft_envelope_with_a_list_of_keys(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    body = json.loads(make_envelope(b"\0" * 32, b.context(w), b.recipients()))
    body["keys"] = [body["keys"]]  # the right context, keys in a list instead of a mapping
    return b.enveloped(w, json.dumps(body).encode())


@bad("key envelope nests JSON")
def craft_envelope_json_bomb(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    return b.enveloped(w, b"[" * 100_000 + b"]" * 100_000)  # 200 kB, under the 1 MiB envelope limit


@bad("does not authenticate")
def craft_ciphertext_not_from_this_key(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    _, keys, n = b.shared(w, serialize(b.global_state))
    _, other = encrypt(serialize(b.global_state), b.context(w))  # sealed under another key
    return bytes(b.sim.store.put(other)), keys, n


@bad("truncated")
def craft_truncated_model(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    return b.shared(w, serialize(b.global_state)[:-1000])


@bad("contains NaN values")
def craft_nan_weights(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    weight = b.global_state["fc.weight"].clone()
    weight[0, 0] = float("nan")
    return b.shared(w, serialize(b.state(**{"fc.weight": weight})))


@bad("has shape (784, 10), expected (10, 784)")
def craft_wrong_shape(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    return b.shared(w, serialize(b.state(**{"fc.weight": b.global_state["fc.weight"].T.contiguous()})))


@bad("has dtype float64, expected float32")
def craft_wrong_dtype(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    return b.shared(w, serialize(b.state(**{"fc.bias": b.global_state["fc.bias"].double()})))


@bad("unexpected parameter(s) 'extra'")
def craft_extra_tensor(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    return b.shared(w, serialize(b.state(extra=torch.zeros(3))))


@bad("over the limit")
def craft_oversized_model(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    limit = 64 << 20  # the description's max_model_bytes (default)
    return b.shared(w, serialize(b.global_state) + bytes(limit))


@bad("looks like a pickle (torch.save), not safetensors; never unpickled")
def craft_pickle(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    buffer = io.BytesIO()
    torch.save(b.global_state, buffer)
    return b.shared(w, buffer.getvalue())


@bad("safetensors header nests JSON")
def craft_header_json_bomb(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    header = b'{"fc.weight":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return b.shared(w, struct.pack("<Q", len(header)) + header)


@bad(f"claims {2**64 - 1} samples")
def craft_huge_sample_count(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    """A well-trained update claiming the largest uint64 sample count (the contract accepts it): FedAvg's
    weight sum would overflow torch, so validators reject the claim instead of crashing on it."""
    model, keys, _ = b.shared(w, serialize(w.train(b.sim.task)))
    return model, keys, 2**64 - 1


@bad("")  # not a file error: it opens, is evaluated and fails ε (its loss is not even finite)
def craft_huge_finite_weights(b: Bad, w: Worker) -> tuple[bytes, bytes, int]:
    return b.shared(w, serialize(b.state(**{"fc.weight": torch.full((10, 784), 3e38)})))


@dataclass
class BadRound:
    sim: Simulation
    played: Round
    attackers: dict[str, Worker]  # kind → its worker
    honest: list[Worker]


@pytest.fixture(scope="module")
def bad_round(mnist: Data, tmp_path_factory: pytest.TempPathFactory) -> BadRound:
    """Two honest workers and one malicious worker per kind of bad file, three validators; one round."""
    validation, shards = mnist
    kinds = list(BAD)
    spare = shuffle_labels(subset(shards[2], 10), seed=5)  # data the file crafters never train on
    own = {"huge-sample-count": shards[2]}
    sim = deploy(
        [shards[0], shards[1], *[own.get(k, spare) for k in kinds]],
        3,
        tmp_path_factory.mktemp("faults-bad-files"),
        "faults-bad",
    )
    task = sim.task
    balance = task.balance()
    funded = funds(sim.requester.start_round(task, sim.global_state, validation))
    honest = sim.workers[:2]
    for w in honest:
        w.submit_training_results(task, w.train(task))
    attackers = dict(zip(kinds, sim.workers[2:], strict=True))
    crafter = Bad(sim, sim.global_state)
    for kind, w in attackers.items():
        model, keys, samples = BAD[kind][0](crafter, w)
        task.submit_training_results(w.account, model, keys, samples)
    assert task.status() is Status.EVALUATING
    # none of them raises; the unresolvable handle is waited for until the fetch cut-off, then rejected
    work = {v.address: sim.evaluate(v) for v in sim.committee}
    for v in sim.committee:
        v.commit_manifest(task, work[v.address])
    for v in sim.committee:
        v.reveal_manifest(task, work[v.address])
    return BadRound(sim, settle(sim, task.current_round(), work, balance, funded), attackers, honest)


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_file_is_rejected_with_a_clear_reason(bad_round: BadRound, kind: str) -> None:
    sim, played = bad_round.sim, bad_round.played
    worker = bad_round.attackers[kind].address
    reason = BAD[kind][1]
    _, details = consensus_details(sim.store, sim.task, played.round)
    (result,) = [r for r in details.results if r["worker"] == worker]
    assert result["accepted"] is False and result["contribution"] == 0
    for work in played.work.values():
        if reason:
            assert reason in work.rejected_files[worker], work.rejected_files.get(worker)
            assert len(work.rejected_files[worker]) <= MAX_REASON
        else:
            assert worker not in work.rejected_files
            assert result["loss"] == MAX_PPM  # opened and evaluated: a non-finite loss, over ε
    assert played.workers_paid[worker] == 0


def test_bad_files_cost_the_honest_nothing(bad_round: BadRound) -> None:
    """Consensus on the same manifest, the honest workers accepted and paid exactly, every validator paid,
    the requester gets the consensus model (Ether conservation is checked in `settle`)."""
    sim, played = bad_round.sim, bad_round.played
    assert "RoundFinalized" in played.finalize.names()
    assert len({w.manifest.vote_key() for w in played.work.values()}) == 1
    _, details = consensus_details(sim.store, sim.task, played.round)
    accepted = {r["worker"] for r in details.results if r["accepted"]}
    assert accepted == {w.address for w in bad_round.honest}
    assert all(played.workers_paid[w.address] > 0 for w in bad_round.honest)
    assert_paid_exactly(sim, played, sim.committee)
    model = sim.requester.retrieve_model(sim.task, played.round)
    assert model_digest(model) == sim.task.round_info(played.round).model_digest


# ------------------------------------------------------------------ JSON bombs in the other readers

BOMB = b"[" * 100_000 + b"]" * 100_000


def test_json_depth_counts_only_structural_brackets_without_recursion() -> None:
    assert json_depth(b'{"v":1,"keys":{"0xabc":"00ff"}}') == 2
    assert json_depth(BOMB) == 100_000
    nested_in_strings = b'["]",' * 40 + b"0" + b"]" * 40  # each level hides a "]" in a string
    assert json_depth(nested_in_strings) == 40 > MAX_JSON_DEPTH
    escaped = b'{"k":"\\\\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"}'
    assert json_depth(escaped) == 1


def _read_bomb(reader: str) -> None:
    """In a forked child (it inherits py_ecc's recursion limit of 100,000): read BOMB as `reader` does;
    exit 0 on a clean refusal, 1 on any other exception; a C stack overflow kills it with SIGSEGV."""
    import faulthandler
    import os

    from refiner.chain import demo_account
    from refiner.fl.models import ModelValidationError, deserialize, logistic, spec_of
    from refiner.sharing import SharingError, open_envelope
    from refiner.wire.details import ProtocolError

    faulthandler.disable()  # the crash is expected: no traceback dump in the test output
    try:
        if reader == "details":
            ManifestDetails.from_bytes(BOMB)
        elif reader == "envelope":
            account = demo_account("bomb")
            open_envelope(BOMB, Context(account.address, 1, account.address, "update"), account)
        else:
            spec = spec_of(logistic(), max_bytes=64 << 20)  # a task description's default limit
            deserialize(struct.pack("<Q", len(BOMB)) + BOMB, spec)
    except (ProtocolError, SharingError, ModelValidationError):
        os._exit(0)
    except BaseException:
        os._exit(1)
    os._exit(2)


@pytest.mark.parametrize("reader", ["details", "envelope", "model"])
def test_a_json_bomb_from_a_peer_is_refused_not_fatal(reader: str) -> None:
    """~100k nested brackets used to overflow the C stack (SIGSEGV) in every JSON reader of peer data:
    manifest details, key envelopes, safetensors headers now refuse deep nesting first (safejson)."""
    child = multiprocessing.get_context("fork").Process(target=_read_bomb, args=(reader,))
    child.start()
    child.join(120)
    assert child.exitcode == 0, f"the {reader} reader exited with {child.exitcode} (-11: SIGSEGV)"
