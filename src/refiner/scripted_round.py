"""A scripted Refiner round on the embedded chain, with synthetic manifests (no learning yet).

Deploys the registry and a task, recruits three workers and a four-validator committee, runs one
round in which one worker's update is rejected and one validator dissents, shows the contract refusing
cheating calls, pays everyone by pull payments and prints the gas of every call.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.table import Table

from refiner.chain import (
    Chain,
    ContractRevert,
    Durations,
    Registry,
    ResultsTree,
    Task,
    TaskConfig,
    TxResult,
    WorkerResult,
    demo_account,
)
from refiner.chain.accounts import vrf_key_for
from refiner.chain.committee import draw
from refiner.chain.earnings import with_earnings
from refiner.protocol import Role, Step, why_not
from refiner.units import ETH

console = Console(width=110)


def _handle(label: str) -> bytes:
    """A stand-in content handle until the storage layer exists: sha256 of a label, CIDv1-shaped."""
    return b"\x01\x55\x12\x20" + hashlib.sha256(label.encode()).digest()


def _eth(wei: int) -> str:
    return f"{wei / ETH:.6f} ETH"


class GasLog:
    def __init__(self) -> None:
        self.calls: dict[str, list[int]] = defaultdict(list)

    def __call__(self, function: str, result: TxResult) -> TxResult:
        self.calls[function].append(result.gas_used)
        return result

    def table(self) -> Table:
        table = Table(title="Gas per call")
        for col in ("function", "calls", "min", "max"):
            table.add_column(col, justify="right" if col != "function" else "left")
        for name, gas in self.calls.items():
            table.add_row(name, str(len(gas)), f"{min(gas):,}", f"{max(gas):,}")
        return table


def _refused(what: str, action: Callable[[], object]) -> None:
    """Run a cheating call and show the contract's refusal; a call that goes through is a bug."""
    try:
        action()
    except ContractRevert as exc:
        console.print(f"  [red]refused[/]  {what}: [bold]{exc}[/]")
        return
    raise RuntimeError(f"the contract accepted a cheating call: {what}")


def _due(task: Task, account: LocalAccount, role: Role, step: Step) -> None:
    """Check that the protocol module lists `step` as due before the script takes it (the script and
    `refiner.protocol` must agree on the order)."""
    refused = why_not(task, account.address, role, step)
    if refused is not None:
        raise RuntimeError(f"the script takes {step.value} out of order: {refused.reason}")


def main() -> int:
    chain = Chain.connect()
    gas = GasLog()
    admin, requester = demo_account("admin"), demo_account("requester")
    workers = [demo_account(f"worker-{i}") for i in range(3)]
    validators = [demo_account(f"validator-{i}") for i in range(4)]
    for account in [admin, requester, *workers, *validators]:
        chain.fund(account.address, 100 * ETH)

    console.rule("[bold]Refiner: one scripted round on the embedded EVM")
    # one stake unit per ETH and τ = 4 seats for 4 validators of 1 ETH: sortition seats all of them
    registry = Registry.deploy(chain, admin, min_stake=ETH // 10, unbonding_delay=7 * 86400, stake_unit=ETH)
    console.print(f"administrator deployed the registry at {registry.address}")
    config = TaskConfig(
        description="MNIST digits, 28x28 grayscale, labels 0-9 (synthetic round)",
        worker_reward=ETH,
        validator_reward=ETH * 4 // 10,
        max_rounds=1,
        max_workers=3,
        committee_size=4,
        durations=Durations(
            recruitment=600, training=600, evaluation=600, reveal=600, idle=3600, claim=86400
        ),
        sign_up_deposit=ETH // 100,
    )
    task = Task.deploy(chain, requester, registry.address, config)
    gas("registerTask", registry.register_task(requester, task.address))
    console.print(f"requester deployed task {task.address} and registered it: status {task.status().name}")

    for w in workers:
        gas("registerWorker", registry.register_worker(w))
    for v in validators:
        gas("registerValidator", registry.register_validator(v, ETH))
    console.print(f"{len(workers)} workers and {len(validators)} validators (1 ETH stake each) registered")
    _refused("a validator registers as a worker too", lambda: registry.register_worker(validators[0]))

    _due(task, requester, Role.REQUESTER, Step.OPEN_RECRUITMENT)
    gas("openRecruitment", task.open_recruitment(requester))
    for w in workers:
        _due(task, w, Role.WORKER, Step.SIGN_UP)
        gas("signUp", task.sign_up(w))
    for v in validators:
        ticket = draw(task, registry, v.address, vrf_key_for(v))  # waits for the seed block
        _due(task, v, Role.VALIDATOR, Step.CLAIM_SEAT)
        gas("claimSeat", task.claim_seat(v, ticket.proof, ticket.seats))
    _due(task, requester, Role.REQUESTER, Step.CLOSE_RECRUITMENT)
    gas("closeRecruitment", task.close_recruitment(requester))
    console.print(
        f"recruited {len(task.workers())} workers (each paid a {config.sign_up_deposit / ETH:g} ETH deposit, "
        f"back with its submission) and a committee of {len(task.committee())} (VRF sortition, weight 1 each)"
    )

    _due(task, requester, Role.REQUESTER, Step.START_ROUND)
    gas(
        "startRound",
        task.start_round(
            requester, *(_handle(x) for x in "mMvV"), value=config.worker_reward + config.validator_reward
        ),
    )
    console.print(f"round 1 started: {_eth(task.balance())} in escrow, status {task.status().name}")
    _refused("the requester takes the round's escrow back", lambda: task.withdraw(requester, 1))

    samples = [6000, 12000, 8000]
    for w, n in zip(workers, samples, strict=True):
        _due(task, w, Role.WORKER, Step.SUBMIT_TRAINING_RESULTS)
        gas(
            "submitTrainingResults",
            task.submit_training_results(w, _handle(f"u{w.address}"), _handle("k"), n),
        )
    console.print(f"3 workers submitted their updates: status {task.status().name}")

    # synthetic evaluation: worker 2 trained on shuffled labels, its loss exceeds ε and it is rejected
    # each leaf carries what its worker earned in the task so far (here: in round 1)
    tree = ResultsTree(
        with_earnings(
            [
                WorkerResult(workers[0].address, True, samples[0], 1_200),
                WorkerResult(workers[1].address, True, samples[1], 3_600),
                WorkerResult(workers[2].address, False, samples[2], -41_000),
            ],
            config.worker_reward,
            {},
        )
    )
    honest = tree.manifest(952_000, hashlib.sha256(b"aggregate-1").digest(), _handle("agg"), _handle("det"))
    dissent = replace(honest, accuracy=951_000)
    manifests = [honest, honest, honest, dissent]
    salts = [hashlib.sha256(f"salt-{v.address}".encode()).digest() for v in validators]
    for v, m, s in zip(validators[:3], manifests, salts, strict=False):
        _due(task, v, Role.VALIDATOR, Step.COMMIT_MANIFEST)
        gas("commitManifest", task.commit_manifest(v, task.commitment_for(v.address, 1, m, s)))
    # the fourth validator is a thief: it copies validator 0's commitment...
    stolen = task.ballot_of(1, validators[0].address)
    gas("commitManifest", task.commit_manifest(validators[3], stolen))
    console.print(f"committee committed: status {task.status().name}")
    for v, m, s in zip(validators[:3], manifests, salts, strict=False):
        _due(task, v, Role.VALIDATOR, Step.REVEAL_MANIFEST)
        gas("revealManifest", task.reveal_manifest(v, m, s))
    # ...but the commitment binds the committer's address, so it cannot reveal it as its own
    _refused(
        "a validator reveals a copied commitment",
        lambda: task.reveal_manifest(validators[3], honest, salts[0]),
    )
    chain.increase_time(601)
    _due(task, validators[3], Role.VALIDATOR, Step.ADVANCE)
    gas("advance", task.advance(validators[3]))
    _due(task, requester, Role.REQUESTER, Step.FINALIZE_ROUND)
    fin = gas("finalizeRound", task.finalize_round(requester))
    console.print(
        f"consensus: weight {fin.event('RoundFinalized')['agreeingWeight']} of {task.total_weight()}, "
        f"accuracy {honest.accuracy / 10_000:.2f}%; status {task.status().name}"
    )

    table = Table(title="Round 1 payments (pull: each claims its own)")
    for col in ("participant", "verdict", "paid"):
        table.add_column(col)
    for i, w in enumerate(workers):
        result = tree.result_of(w.address)
        if result.paid:
            _due(task, w, Role.WORKER, Step.CLAIM_REWARD)
            res = gas("claimReward", task.claim_reward(w, 1, result, tree.proof(w.address)))
            table.add_row(
                f"worker {i}",
                f"accepted, contribution {result.contribution}",
                _eth(res.event("RewardClaimed")["amount"]),
            )
        else:
            _refused(
                f"worker {i} (rejected) claims a reward",
                partial(task.claim_reward, w, 1, result, tree.proof(w.address)),
            )
            table.add_row(f"worker {i}", "rejected (loss > ε)", _eth(0))
    _refused(
        "worker 0 claims twice",
        lambda: task.claim_reward(
            workers[0], 1, tree.result_of(workers[0].address), tree.proof(workers[0].address)
        ),
    )
    for i, v in enumerate(validators):
        paid = _claim_validator(task, v, gas)
        table.add_row(f"validator {i}", "agreed" if paid else "did not reveal the consensus", _eth(paid))
    console.print(table)
    console.print(
        f"requester's refundable budget (dust): {task.budget()} wei; contract holds "
        f"{task.balance()} wei = owed {task.owed()} wei"
    )
    console.print(gas.table())
    return 0


def _claim_validator(task: Task, validator: LocalAccount, gas: GasLog) -> int:
    try:
        res = gas("claimValidatorReward", task.claim_validator_reward(validator))
    except ContractRevert as exc:
        console.print(f"  [red]refused[/]  validator {validator.address[:10]}… claims: [bold]{exc}[/]")
        return 0
    return int(res.event("RewardClaimed")["amount"])


if __name__ == "__main__":
    raise SystemExit(main())
