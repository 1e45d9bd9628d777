"""One worker must not deny consensus through availability: its update reaching some validators and not
others (or only after some have looked) must not split the committee.

Honest validators retry an update they cannot fetch until a cut-off in chain time every one of them reads
from the contract (`fetch_cutoff`: the EVALUATING phase's start plus half the phase, at most 10 minutes);
what they have by then is what they evaluate. Real embedded EVM, one directory store whose file of
worker 2's update is moved out (not yet uploaded, or not served to this validator) and back; logistic
model on 300 MNIST images per worker, two validators with one seat each, so that a split is no majority.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from refiner.agents import ValidatorAgent
from refiner.chain import Chain, Durations, Status, Task, TaskConfig
from refiner.fl.data import Dataset, load_mnist, split_mnist
from refiner.roles import Evaluated, ProtocolError, Validator, ValidatorBehaviour, WorkerBehaviour
from refiner.simulation import Simulation
from refiner.storage import DirectoryStore, Handle
from refiner.units import ETH
from refiner.wire.reads import consensus_details

EVALUATION = 600
DURATIONS = Durations(
    recruitment=600, training=600, evaluation=EVALUATION, reveal=600, idle=6000, claim=60000
)
WINDOW = EVALUATION // 2  # the fetch window this phase length gives

Data = tuple[Dataset, list[Dataset]]


@pytest.fixture(scope="module")
def mnist() -> Data:
    train, _ = load_mnist()
    validation, shards = split_mnist(train, [300, 300, 300], validation_size=200, seed=3)
    return validation, shards


def deploy(shards: list[Dataset], store: Path, label: str) -> Simulation:
    config = TaskConfig(
        description="",
        worker_reward=ETH,
        validator_reward=3 * ETH // 10,
        target_accuracy=1.0,
        max_rounds=20,
        max_workers=len(shards),
        committee_size=2,
        epsilon=2.0,
        durations=DURATIONS,
    )
    sim = Simulation.deploy(
        Chain.connect(),
        DirectoryStore(store),
        shards,
        [WorkerBehaviour.HONEST] * len(shards),
        [ValidatorBehaviour.HONEST] * 2,
        config=config,
        model="logistic",
        lr=0.05,
        stake_unit=ETH,  # one seat each
        label=label,
    )
    assert len(sim.committee) == 2
    return sim


@pytest.fixture(scope="module")
def sim(mnist: Data, tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    return deploy(mnist[1], tmp_path_factory.mktemp("availability"), "availability")


@contextmanager
def withheld(sim: Simulation, validation: Dataset, worker: int) -> Iterator[None]:
    """Start a round; every worker trains and submits; worker `worker`'s file is out of the store until
    the block ends (its author has not uploaded it yet, or does not serve it to whoever asks now)."""
    task = sim.task
    sim.requester.start_round(task, sim.global_state, validation)
    for w in sim.workers:
        w.submit_training_results(task, w.train(task))
    assert task.status() is Status.EVALUATING
    store = sim.store
    assert isinstance(store, DirectoryStore)
    (e,) = [
        e
        for e in task.round_events("TrainingResultsSubmitted", task.current_round())
        if e["worker"] == sim.workers[worker].address
    ]
    path = store.path_of(Handle.from_bytes(e["modelHandle"]))
    aside = path.with_name(path.name + ".withheld")
    shutil.move(path, aside)
    try:
        yield
    finally:
        shutil.move(aside, path)


def attempt(v: Validator, task: Task) -> Evaluated | None:
    """A validator's try at evaluating the round; None when it waits for updates it cannot fetch yet."""
    try:
        return v.evaluate(task)
    except ProtocolError:
        return None


def settle(sim: Simulation, work: list[Evaluated]) -> dict[str, bool]:
    """Commit, reveal, finalize and claim; asserts consensus and that exactly the workers the consensus
    accepted with a positive contribution are paid. Returns whom the consensus accepted."""
    task, round_ = sim.task, sim.task.current_round()
    for v, w in zip(sim.committee, work, strict=True):
        v.commit_manifest(task, w)
    for v, w in zip(sim.committee, work, strict=True):
        v.reveal_manifest(task, w)
    assert "RoundFinalized" in sim.requester.finalize_round(task).names(), "no consensus"
    _, details = consensus_details(sim.store, task, round_)
    results = {r["worker"]: r for r in details.results}
    for w in sim.workers:
        paid = w.claim_reward(task, round_) > 0
        assert paid == (results[w.address]["accepted"] and results[w.address]["contribution"] > 0)
    assert task.balance() == task.owed()
    return {worker: r["accepted"] for worker, r in results.items()}


def test_an_update_that_reaches_one_validator_late_but_before_the_cut_off_is_accepted_by_all(
    sim: Simulation, mnist: Data
) -> None:
    """Validator 0 looks while worker 2's file is missing; it appears 100 s into the phase (the cut-off
    is at 300 s); validator 1 looks after that. Before the fix validator 0 rejected it at once, validator
    1 accepted it: one vote each, no consensus, nobody paid."""
    first, second = sim.committee
    with withheld(sim, mnist[0], 2):
        early = attempt(first, sim.task)
        sim.chain.increase_time(100)
    late = attempt(second, sim.task)
    work = [early or attempt(first, sim.task), late]
    assert all(w is not None for w in work)
    accepted = settle(sim, [w for w in work if w is not None])
    assert all(accepted[w.address] for w in sim.workers)  # worker 2's late update included


def test_an_update_missing_at_the_cut_off_is_rejected_by_all(sim: Simulation, mnist: Data) -> None:
    """Worker 2's file is missing when both validators look and still at the cut-off: both wait, then
    both reject it as unavailable; it appears only afterwards. Consensus, the others are paid."""
    task = sim.task
    with withheld(sim, mnist[0], 2):
        start = sim.chain.now()
        for v in sim.committee:
            with pytest.raises(ProtocolError, match=r"cannot be fetched yet.*until the fetch cut-off"):
                v.evaluate(task)
        sim.chain.increase_time(WINDOW)  # ≥ the cut-off: the phase began at or before `start`
        assert sim.chain.now() >= start + WINDOW
        work = [v.evaluate(task) for v in sim.committee]
    absent = sim.workers[2].address
    for w in work:
        assert "unavailable by the fetch cut-off" in w.rejected_files[absent]
    accepted = settle(sim, work)
    assert not accepted[absent] and all(accepted[w.address] for w in sim.workers[:2])


def test_nothing_waits_when_every_file_is_there(sim: Simulation, mnist: Data) -> None:
    task = sim.task
    sim.requester.start_round(task, sim.global_state, mnist[0])
    for w in sim.workers:
        w.submit_training_results(task, w.train(task))
    before = sim.chain.now()
    work = [sim.evaluate(v) for v in sim.committee]
    assert sim.chain.now() == before
    assert all(settle(sim, work).values())


def test_the_agent_waits_for_a_late_update_in_later_ticks(
    sim: Simulation, mnist: Data, caplog: pytest.LogCaptureFixture
) -> None:
    """Validator agents: a tick that cannot fetch worker 2's update commits nothing and returns (the
    agent's other tasks go on); it tries again after a backoff in chain time, and commits once it has the
    file. Both agents accept worker 2 and the round reaches consensus."""
    caplog.set_level(logging.INFO, logger="refiner.agent")
    task = sim.task
    agents = [
        ValidatorAgent(v.account, sim.registry, only_task=task.address, validator=v, stake=ETH)
        for v in sim.committee
    ]
    round_ = task.current_round() + 1
    with withheld(sim, mnist[0], 2):
        agents[0].tick()  # it also claims its earlier rewards: blocks, so the chain's clock moves
        agents[0].tick()
        attempts = caplog.text.count("cannot be fetched yet")
        agents[0].tick()  # the same chain time: not due again yet
        assert caplog.text.count("cannot be fetched yet") == attempts >= 1
        assert task.ballot_of(round_, agents[0].address) == bytes(32)
        sim.chain.increase_time(30)
    for _ in range(4):
        for agent in agents:
            agent.tick()
        if task.status() is Status.PENDING:
            break
    info = task.round_info(round_)
    assert info.finalized and info.consensus_key != bytes(32)
    _, details = consensus_details(sim.store, task, round_)
    assert all(r["accepted"] for r in details.results)  # worker 2's late update included
