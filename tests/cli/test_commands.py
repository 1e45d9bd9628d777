"""The `refiner` command groups (account, chain, admin, requester, tasks, task, data) run in-process with
typer's CliRunner against one real anvil: what they print, what they do on chain, and how they fail."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from typer.testing import CliRunner, Result

from refiner.chain import Chain, Registry, Status, Task, public_key_bytes
from refiner.chain.accounts import load_keystore
from refiner.chain.anvil import Anvil, find_anvil, start_anvil
from refiner.chain.types import NO_EPSILON, Aggregation, Durations
from refiner.cli import app
from refiner.roles import Administrator
from refiner.units import ETH
from refiner.wire.datasets import dataset_from_bytes
from refiner.wire.spec import TaskDescription

PASSWORD = "correct horse battery staple"
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "task.toml"
UNREACHABLE = "http://127.0.0.1:9"
NOWHERE = "0x" + "12" * 20  # an address without code on the test chain
BAD_CHECKSUM = "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's 0x5aAeb6… with one case flipped
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
anvil_test = pytest.mark.anvil


# ---------------------------------------------------------------------------------------------- helpers


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: object) -> str:
    """Run a command that must succeed; its stdout."""
    result = invoke(*args)
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    return result.stdout


def one_line_error(result: Result, *fragments: str) -> str:
    """The command failed with a nonzero code and one `error: …` line on stderr, without a traceback."""
    assert result.exit_code != 0, result.output
    # any other exception than the exit would have been a crash (a traceback in a real terminal)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


def write_keystore(path: Path) -> LocalAccount:
    """A keystore as `account new` writes it, but with a cheap KDF (scrypt costs ~0.5 s per command)."""
    account: LocalAccount = Account.create()
    path.write_text(json.dumps(Account.encrypt(account.key, PASSWORD, kdf="pbkdf2", iterations=2)))
    return account


def balance(chain: Chain, address: str) -> int:
    return chain.w3.eth.get_balance(to_checksum_address(address))


def nonce(chain: Chain, address: str) -> int:
    """How many transactions `address` has sent."""
    return chain.w3.eth.get_transaction_count(to_checksum_address(address))


def fee_of_last_transaction(chain: Chain) -> int:
    """The fee of the only transaction of the latest block (anvil mines one block per transaction)."""
    (tx_hash,) = chain.w3.eth.get_block("latest")["transactions"]
    assert isinstance(tx_hash, bytes)
    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The password in the environment, no $REFINER_CONFIG, and a directory without a refiner.toml."""
    monkeypatch.setenv("REFINER_PASSWORD", PASSWORD)
    monkeypatch.delenv("REFINER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    if find_anvil() is None:
        pytest.skip("anvil is not installed (npm @foundry-rs/anvil); run `make setup`")
    with start_anvil(block_time=None) as anvil:
        yield anvil


@pytest.fixture(scope="module")
def chain(node: Anvil) -> Chain:
    return Chain.connect(node.url)


@dataclass(frozen=True)
class Requester:
    account: LocalAccount
    keystore: Path

    @property
    def address(self) -> str:
        return self.account.address


@pytest.fixture(scope="module")
def requester(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Requester:
    keystore = tmp_path_factory.mktemp("keys") / "requester.json"
    account = write_keystore(keystore)
    chain.fund(account.address, 1000 * ETH)
    return Requester(account, keystore)


@pytest.fixture(scope="module")
def registry(chain: Chain, requester: Requester) -> str:
    return Administrator.deploy_registry(
        chain, requester.account, min_stake=ETH, stake_unit=ETH // 10
    ).address


@pytest.fixture
def signer_args(node: Anvil, requester: Requester) -> list[str]:
    """--chain and --keystore of the requester."""
    return ["--chain", node.url, "--keystore", str(requester.keystore)]


@pytest.fixture
def key_args(signer_args: list[str], registry: str) -> list[str]:
    """--chain, --keystore and --registry of the requester."""
    return [*signer_args, "--registry", registry]


@pytest.fixture
def task(key_args: list[str]) -> str:
    """A fresh task from docs/examples/task.toml, created with the CLI."""
    return ok("requester", "create-task", EXAMPLE, *key_args).strip()


# ------------------------------------------------------------------------------------------------ account


def test_account_new_prints_the_address_and_refuses_to_overwrite(tmp_path: Path) -> None:
    keystore = tmp_path / "keys" / "me.json"
    printed = ok("account", "new", "--keystore", keystore).strip()
    assert ADDRESS.fullmatch(printed)
    assert load_keystore(keystore, PASSWORD).address == printed
    body = keystore.read_bytes()

    one_line_error(invoke("account", "new", "--keystore", keystore), "exists", "refusing to overwrite")
    assert keystore.read_bytes() == body


@anvil_test
def test_account_show_prints_address_public_key_and_balance(
    node: Anvil, chain: Chain, tmp_path: Path
) -> None:
    account = write_keystore(tmp_path / "me.json")
    chain.fund(account.address, 3 * ETH + 7)
    shown = ok("account", "show", "--keystore", tmp_path / "me.json", "--chain", node.url)
    assert shown.splitlines() == [
        f"address     {account.address}",
        f"public key  {public_key_bytes(account).hex()}",
        "balance     3 ETH",  # for people, to 6 decimals
    ]
    exact = ok("account", "show", "--keystore", tmp_path / "me.json", "--chain", node.url, "--wei")
    assert exact.splitlines()[-1] == f"balance     {3 * ETH + 7} wei"


def test_a_wrong_password_is_one_line_with_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_keystore(tmp_path / "me.json")
    monkeypatch.setenv("REFINER_PASSWORD", "wrong")
    result = invoke("account", "show", "--keystore", tmp_path / "me.json", "--chain", UNREACHABLE)
    assert result.exit_code == 1
    one_line_error(result, "cannot open keystore", "me.json")


def test_a_missing_password_without_a_terminal_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_keystore(tmp_path / "me.json")
    monkeypatch.delenv("REFINER_PASSWORD")
    expected = ("$REFINER_PASSWORD", "no terminal")
    one_line_error(invoke("account", "show", "--keystore", tmp_path / "me.json"), *expected)
    one_line_error(invoke("account", "new", "--keystore", tmp_path / "new.json"), *expected)
    assert not (tmp_path / "new.json").exists()


# -------------------------------------------------------------------------------------- chain and admin


@anvil_test
def test_chain_fund_gives_exactly_the_amount(node: Anvil, chain: Chain) -> None:
    address = Account.create().address
    printed = ok("chain", "fund", address, "--amount", "5 ether", "--chain", node.url)
    assert balance(chain, address) == 5 * ETH
    assert printed.strip() == f"{address} now holds 5 ETH"
    printed = ok("chain", "fund", address, "--amount", "1.5 ether", "--chain", node.url, "--wei")
    assert printed.strip() == f"{address} now holds {65 * ETH // 10} wei"


@anvil_test
def test_deploy_registry_prints_the_registry_address(node: Anvil, chain: Chain, requester: Requester) -> None:
    args = ["--chain", node.url, "--keystore", requester.keystore, "--unbonding-delay", "1d"]
    printed = ok("admin", "deploy-registry", *args, "--epoch-length", "32").strip()
    assert ADDRESS.fullmatch(printed)
    registry = Registry(chain, printed)
    assert registry.owner() == requester.address
    assert (registry.min_stake(), registry.stake_unit(), registry.unbonding_delay()) == (
        ETH,
        ETH // 10,
        86400,
    )
    assert registry.epoch_length() == 32


# ---------------------------------------------------------------------------------------------- requester


@anvil_test
def test_create_task_deploys_registers_and_funds_the_task_file(
    chain: Chain, requester: Requester, registry: str, task: str
) -> None:
    assert ADDRESS.fullmatch(task)
    t = Task(chain, task)
    assert t.requester() == requester.address
    assert t.registry() == registry
    assert Registry(chain, registry).is_active_task(task)
    assert t.status() == Status.PENDING
    assert t.budget() == balance(chain, t.address) == 26 * ETH // 10

    cfg = t.config()
    assert (cfg.worker_reward, cfg.validator_reward) == (ETH, 3 * ETH // 10)
    assert (cfg.max_rounds, cfg.max_workers, cfg.committee_size) == (2, 5, 4)
    # the example leaves ε unset: trusted-data's screen alone qualifies updates
    assert (cfg.epsilon, cfg.target_accuracy, cfg.aggregation, cfg.mu) == (
        NO_EPSILON,
        0.99,
        Aggregation.FedAvg,
        0,
    )
    assert cfg.durations == Durations(
        recruitment=600, training=600, evaluation=600, reveal=120, idle=3600, claim=7 * 86400
    )
    description = TaskDescription.from_json(cfg.description)
    assert (description.model, description.epochs, description.batch_size, description.lr) == (
        "small_cnn",
        1,
        32,
        0.1,
    )
    assert description.requester_key(requester.address) == public_key_bytes(requester.account)


@anvil_test
def test_tasks_and_task_show_follow_recruitment(
    node: Anvil, chain: Chain, key_args: list[str], registry: str, task: str
) -> None:
    url = node.url
    listed = ok("tasks", "--chain", url, "--registry", registry)
    row = next(line for line in listed.splitlines() if task in line)  # the whole address, not cut short
    assert "PENDING" in row and "2.6 ETH" in row
    exact = ok("tasks", "--chain", url, "--registry", registry, "--wei")
    assert str(26 * ETH // 10) in next(line for line in exact.splitlines() if task in line)

    shown = ok("task", "show", task, "--chain", url)
    assert f"status {Status.PENDING.name}, round 0 of 2" in shown and "budget 2.6 ETH" in shown
    assert f"budget {26 * ETH // 10} wei" in ok("task", "show", task, "--chain", url, "--wei")
    opened = ok("requester", "open-recruitment", task, *key_args)
    assert opened.startswith("open-recruitment: ") and "StatusChanged" in opened
    assert f"status {Status.RECRUITING.name}" in ok("task", "show", task, "--chain", url)
    row = next(
        line for line in ok("tasks", "--chain", url, "--registry", registry).splitlines() if task in line
    )
    assert "RECRUITING" in row

    assert ok("requester", "close-recruitment", task, *key_args).startswith("close-recruitment: ")
    assert Task(chain, task).recruitment_closed()
    # once more, in the wrong phase: the contract's custom error, by name
    one_line_error(invoke("requester", "close-recruitment", task, *key_args), "WrongStatus")


@anvil_test
def test_fund_and_withdraw_move_exact_wei(
    chain: Chain, requester: Requester, signer_args: list[str], task: str
) -> None:
    budget = 26 * ETH // 10
    before = balance(chain, requester.address)

    printed = ok("requester", "fund", task, "0.5 ether", *signer_args, "--wei")
    assert printed.strip() == f"budget: {budget + ETH // 2} wei"
    assert Task(chain, task).budget() == balance(chain, task) == budget + ETH // 2
    after_fund = balance(chain, requester.address)
    assert before - after_fund == ETH // 2 + fee_of_last_transaction(chain)

    assert ok("requester", "withdraw", task, *signer_args).strip() == "withdrew 3.1 ETH"
    assert Task(chain, task).budget() == balance(chain, task) == 0
    gained = balance(chain, requester.address) - after_fund
    assert gained == budget + ETH // 2 - fee_of_last_transaction(chain)

    assert (
        ok("requester", "withdraw", task, *signer_args).strip() == "nothing to withdraw: the budget is empty"
    )


# ------------------------------------------------------------------------------------ refiner.toml defaults


def write_settings(path: Path, chain: str, registry: str, keystore: str | None = None) -> Path:
    lines = [f'chain = "{chain}"', f'registry = "{registry}"']
    lines += [f'keystore = "{keystore}"'] if keystore else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@anvil_test
def test_refiner_toml_via_config_option_and_env_var(
    node: Anvil,
    requester: Requester,
    registry: str,
    task: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a relative keystore is resolved against the file's directory, not the current one
    config = write_settings(tmp_path / "conf" / "refiner.toml", node.url, registry, "requester.json")
    (tmp_path / "conf" / "requester.json").write_bytes(requester.keystore.read_bytes())

    assert task in ok("tasks", "--config", config)
    assert f"address     {requester.address}" in ok("account", "show", "--config", config)

    monkeypatch.setenv("REFINER_CONFIG", str(config))
    assert task in ok("tasks")
    assert "status PENDING" in ok("task", "show", task)

    monkeypatch.setenv("REFINER_CONFIG", str(tmp_path / "missing.toml"))
    one_line_error(invoke("tasks"), "missing.toml", "cannot read it")


@anvil_test
def test_refiner_toml_in_the_current_directory_is_the_default(node: Anvil, registry: str, task: str) -> None:
    write_settings(Path("refiner.toml"), node.url, registry)  # the autouse fixture's tmp_path is the cwd
    assert task in ok("tasks")


@anvil_test
def test_flags_override_refiner_toml(node: Anvil, registry: str, task: str, tmp_path: Path) -> None:
    config = write_settings(tmp_path / "refiner.toml", UNREACHABLE, NOWHERE)
    one_line_error(
        invoke("task", "show", task, "--config", config),
        f"no Ethereum JSON-RPC node answers at {UNREACHABLE}",
    )
    assert "status PENDING" in ok("task", "show", task, "--config", config, "--chain", node.url)

    one_line_error(
        invoke("tasks", "--config", config, "--chain", node.url), "no Refiner registry at", NOWHERE
    )
    assert task in ok("tasks", "--config", config, "--chain", node.url, "--registry", registry)


# ------------------------------------------------------------------------------------------------- errors


@anvil_test
@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ('[task]\nworker_reward = "1 bananas"\n', ["task.worker_reward", "cannot read '1 bananas'"]),
        ('[task.durations]\ntraining = "ten minutes"\n', ["task.durations.training", "'ten minutes'"]),
        ("[task]\nmax_workers = 0\n", ["task.max_workers", "greater than or equal to 1"]),
        ('[task]\nmodle = "small_cnn"\n', ["task.modle", "unknown key 'modle'"]),
        ('model = "small_cnn"\n[task]\n', ["model: unknown key 'model'"]),
        ("[task]\nepochs = \n", ["invalid TOML"]),
        ("", ["task: required but missing (add a [task] table)"]),
    ],
    ids=["amount", "duration", "range", "unknown-key", "top-level-key", "syntax", "no-task-table"],
)
def test_a_bad_task_file_names_the_field_and_sends_nothing(
    chain: Chain,
    requester: Requester,
    key_args: list[str],
    tmp_path: Path,
    content: str,
    fragments: list[str],
) -> None:
    task_file = tmp_path / "task.toml"
    task_file.write_text(content)
    sent = nonce(chain, requester.address)
    result = invoke("requester", "create-task", task_file, *key_args)
    one_line_error(result, f"{task_file}: ", *fragments)
    assert nonce(chain, requester.address) == sent


@anvil_test
def test_unknown_addresses_are_refused_before_anything_is_sent(
    node: Anvil, chain: Chain, requester: Requester, signer_args: list[str], registry: str
) -> None:
    url = node.url
    sent = nonce(chain, requester.address)
    one_line_error(
        invoke("tasks", "--chain", url, "--registry", NOWHERE), f"no Refiner registry at {NOWHERE}"
    )
    unknown_registry = [*signer_args, "--registry", NOWHERE]
    one_line_error(invoke("requester", "create-task", EXAMPLE, *unknown_registry), "no Refiner registry at")

    one_line_error(invoke("task", "show", NOWHERE, "--chain", url), f"no Refiner task at {NOWHERE}")
    one_line_error(invoke("task", "show", registry, "--chain", url), f"no Refiner task at {registry}")
    # funding a typo would send the Ether to an account nobody controls
    one_line_error(invoke("requester", "fund", NOWHERE, "1 ether", *signer_args), "no Refiner task at")
    one_line_error(invoke("requester", "open-recruitment", NOWHERE, *signer_args), "no Refiner task at")
    assert balance(chain, NOWHERE) == 0
    assert nonce(chain, requester.address) == sent

    one_line_error(invoke("task", "show", "0xbad", "--chain", url), "not an Ethereum address", "'0xbad'")
    one_line_error(invoke("chain", "fund", "0xnothex", "--chain", url), "not an Ethereum address")
    one_line_error(invoke("task", "show", BAD_CHECKSUM, "--chain", url), "not an Ethereum address")


def test_an_unreachable_node_is_one_line() -> None:
    expected = f"no Ethereum JSON-RPC node answers at {UNREACHABLE}"
    one_line_error(invoke("task", "show", NOWHERE, "--chain", UNREACHABLE), expected)
    one_line_error(invoke("tasks", "--chain", UNREACHABLE, "--registry", NOWHERE), expected)
    one_line_error(invoke("chain", "fund", NOWHERE, "--chain", UNREACHABLE), expected)
    one_line_error(invoke("tasks", "--chain", "ftp://example.org"), "unsupported chain 'ftp://example.org'")


@anvil_test
def test_start_round_without_a_store_asks_for_storage(key_args: list[str], task: str, tmp_path: Path) -> None:
    result = invoke("requester", "start-round", task, "--validation", tmp_path / "v.safetensors", *key_args)
    one_line_error(result, "no store: pass --storage")


# --------------------------------------------------------------------------------------------------- data


def test_data_mnist_writes_loadable_shards_and_validation_set(tmp_path: Path) -> None:
    args = ["--workers", "2", "--size", "50", "--validation", "40"]
    printed = ok("data", "mnist", tmp_path / "out", *args, "--shuffled", "1")
    assert "2 worker shards of 50 images (1 shuffled) and 40 validation images" in printed
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["validation.safetensors", "worker-0.safetensors", "worker-1.safetensors"]
    loaded = {name: dataset_from_bytes((tmp_path / "out" / name).read_bytes()) for name in files}
    assert [len(loaded[name]) for name in files] == [40, 50, 50]

    # the same split without shuffling: same images and validation set, only the last shard's labels differ
    ok("data", "mnist", tmp_path / "plain", *args)
    plain = {name: dataset_from_bytes((tmp_path / "plain" / name).read_bytes()) for name in files}
    for name in files:
        assert bool((plain[name].x == loaded[name].x).all())
    assert bool((plain["worker-0.safetensors"].y == loaded["worker-0.safetensors"].y).all())
    assert bool((plain["validation.safetensors"].y == loaded["validation.safetensors"].y).all())
    assert not bool((plain["worker-1.safetensors"].y == loaded["worker-1.safetensors"].y).all())


@pytest.mark.parametrize(
    ("numbers", "fragment"),
    [
        (["--workers", "0"], "need workers ≥ 1"),
        (["--size", "0"], "size ≥ 1"),
        (["--validation", "0"], "validation ≥ 1"),
        (["--workers", "2", "--shuffled", "3"], "0 ≤ shuffled ≤ workers"),
        (["--shuffled", "-1"], "0 ≤ shuffled ≤ workers"),
        (["--workers", "2", "--size", "40000"], "exceed the 60000 training samples"),
    ],
    ids=["no-workers", "empty-shards", "no-validation", "too-many-shuffled", "negative", "too-large"],
)
def test_data_mnist_refuses_bad_numbers(tmp_path: Path, numbers: list[str], fragment: str) -> None:
    one_line_error(invoke("data", "mnist", tmp_path / "out", *numbers), fragment)
    assert not any((tmp_path / "out").glob("*.safetensors"))


def test_requester_status_is_task_show(node: Anvil, task: str) -> None:
    shown = ok("task", "show", task, "--chain", node.url)
    status = ok("requester", "status", task, "--chain", node.url)
    assert "status PENDING" in status
    assert status == shown


@anvil_test
def test_a_budget_short_of_its_rounds_is_said_when_the_task_is_created(
    chain: Chain, key_args: list[str], tmp_path: Path
) -> None:
    task_file = tmp_path / "task.toml"
    task_file.write_text(EXAMPLE.read_text().replace('budget = "2.6 ether"', 'budget = "1.5 ether"'))
    result = invoke("requester", "create-task", task_file, *key_args)
    assert result.exit_code == 0, result.output
    address = result.stdout.strip()  # stdout stays the address alone, for scripts
    assert Task(chain, address).budget() == 15 * ETH // 10
    assert result.stderr.strip() == (
        "note: 2 rounds × 1.3 ETH = 2.6 ETH; the budget of 1.5 ETH pays for 1 of them: each later round "
        "takes what is missing from this account when it starts (`refiner requester fund` adds to the budget)"
    )
    assert ok("requester", "create-task", EXAMPLE, *key_args).strip().startswith("0x")  # 2.6 ETH: no note


def test_chain_wait_gives_up_after_its_timeout_with_one_line() -> None:
    result = invoke("chain", "wait", "--chain", UNREACHABLE, "--timeout", "0.5")
    one_line_error(result, "no Ethereum JSON-RPC node answers", "after 0.5 s")


@anvil_test
def test_chain_wait_returns_once_the_node_answers(node: Anvil) -> None:
    assert ok("chain", "wait", "--chain", node.url).strip() == f"{node.url} answers"
