"""Task files and client settings (refiner.config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from refiner.chain.types import NO_EPSILON, Aggregation, Durations, TaskConfig, epsilon_text
from refiner.config import AgentSection, ClientSettings, ConfigError, load_settings, load_task_file, parse_wei
from refiner.units import to_fixed
from refiner.wire.spec import TaskDescription

FULL = """
[task]
model = "small_cnn"
epochs = 2
batch_size = 16
lr = 0.05
max_model_bytes = "64 MiB"
aggregation = "fedprox"
mu = 0.01
epsilon = 1.5
target_accuracy = 0.9
max_rounds = 3
max_workers = 4
committee_size = 7
worker_reward = "0.1 ether"
validator_reward = "2000 gwei"
budget = "3.000000000000000001 ether"
sign_up_deposit = "0.01 ether"

[task.durations]
recruitment = "10m"
training = 600
evaluation = "1h30m"
reveal = "45s"
idle = "1d"
claim = "30d"
"""
KEY = "ab" * 64
ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def write(tmp_path: Path, text: str, name: str = "task.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def task_error(tmp_path: Path, body: str, durations: str = "") -> str:
    text = f"[task]\n{body}\n" + (f"[task.durations]\n{durations}\n" if durations else "")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_task_file(path)
    message = str(info.value)
    assert "{'type'" not in message and "errors.pydantic.dev" not in message
    assert all(line.startswith(f"{path}: ") for line in message.splitlines())
    return message


def test_full_task_file_round_trips(tmp_path: Path) -> None:
    tf = load_task_file(write(tmp_path, FULL))
    assert tf.task.budget == 3 * 10**18 + 1
    desc = tf.description(KEY)
    assert desc == TaskDescription(
        KEY, model="small_cnn", epochs=2, batch_size=16, lr=0.05, max_model_bytes=64 << 20
    )
    config = tf.task_config(desc.to_json())
    assert config == TaskConfig(
        description=desc.to_json(),
        worker_reward=10**17,
        validator_reward=2000 * 10**9,
        target_accuracy=0.9,
        max_rounds=3,
        max_workers=4,
        committee_size=7,
        epsilon=1.5,
        aggregation=Aggregation.FedProx,
        mu=0.01,
        durations=Durations(600, 600, 5400, 45, 86400, 30 * 86400),
        sign_up_deposit=10**16,
    )
    assert TaskDescription.from_json(config.description) == desc
    assert type(config.worker_reward) is int


def test_empty_task_table_uses_dataclass_defaults(tmp_path: Path) -> None:
    tf = load_task_file(write(tmp_path, "[task]\n"))
    config = tf.task_config("{}")
    assert config.durations == Durations()
    assert (config.max_rounds, config.aggregation, config.mu) == (10, Aggregation.FedAvg, 0.0)
    assert tf.description(KEY) == TaskDescription(KEY)
    with pytest.raises(ValueError, match="64-byte public key"):
        tf.description("abcd")
    with pytest.raises(ValueError, match="empty"):
        tf.task_config("")


@pytest.mark.parametrize(
    ("body", "epsilon"),
    [
        ("", NO_EPSILON),  # trusted-data, the default: its screen qualifies, no absolute bound
        ('contribution = "trusted-data"\nepsilon = 2.5', 2.5),
        ('contribution = "leave-one-out"', 1.0),
        ('contribution = "gtg-shapley"\nepsilon = 0.5', 0.5),
    ],
)
def test_epsilon_is_optional_and_its_default_follows_the_measure(
    tmp_path: Path, body: str, epsilon: float
) -> None:
    tf = load_task_file(write(tmp_path, f"[task]\n{body}\n"))
    config = tf.task_config("{}")
    assert config.epsilon == epsilon
    assert epsilon_text(config.epsilon) == ("none" if epsilon == NO_EPSILON else f"{epsilon:g}")
    assert 0 < to_fixed(config.epsilon) < 2**64  # the contract keeps it as a uint64


@pytest.mark.parametrize(
    ("text", "wei"),
    [
        ("0.1 ether", 10**17),
        ("1 ETHER", 10**18),
        ("0.000000000000000001 ether", 1),
        ("1.000000000000000000000 ether", 10**18),
        ("2000 gwei", 2 * 10**12),
        ("123 wei", 123),
        (123, 123),
        ("123456789012345678.123456789012345678 ether", 123456789012345678123456789012345678),
    ],
)
def test_ether_amounts_are_exact(text: str | int, wei: int) -> None:
    assert parse_wei(text) == wei


def test_missing_task_table_and_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"task: required but missing"):
        load_task_file(write(tmp_path, "[other]\n"))
    message = task_error(tmp_path, "epoch = 3", "train = '1m'")
    assert "task.epoch: unknown key 'epoch' (allowed: model, data_format, epochs," in message
    assert "task.durations.train: unknown key 'train' (allowed: recruitment, training," in message
    assert len(message.splitlines()) == 2


@pytest.mark.parametrize(
    ("body", "durations", "field", "words"),
    [
        ("", "training = '10 minutes'", "task.durations.training", "cannot read duration"),
        ("", "training = 0", "task.durations.training", "greater than 0"),
        ("", "idle = 1.5", "task.durations.idle", "expected an integer"),
        ("worker_reward = 'one ether'", "", "task.worker_reward", "cannot read 'one ether'"),
        ("worker_reward = '5'", "", "task.worker_reward", "cannot read '5'"),
        ("worker_reward = 0.5", "", "task.worker_reward", "expected an integer or a string"),
        ("worker_reward = 0", "", "task.worker_reward", "greater than 0"),
        (
            "validator_reward = '0.0000000000000000001 ether'",
            "",
            "task.validator_reward",
            "more than 18 decimals",
        ),
        ("budget = '-1 ether'", "", "task.budget", "must not be negative"),
        ("budget = -5", "", "task.budget", "must not be negative"),
        ("sign_up_deposit = '-0.01 ether'", "", "task.sign_up_deposit", "must not be negative"),
        ("", "claim = '31d'", "task.durations.claim", "less than or equal to 2592000"),
        ("model = 'resnet9000'", "", "task.model", "unknown model 'resnet9000'"),
        ("model = 'no_such_module_xyz:build'", "", "task.model", "names code to import"),
        ("model = 'os:abort'", "", "task.model", "'os:abort' names code to import"),
        ("epochs = 101", "", "task.epochs", "less than or equal to 100"),
        ("batch_size = 1", "", "task.batch_size", "greater than or equal to 8"),
        ("lr = 11.0", "", "task.lr", "less than or equal to 10"),
        ("max_model_bytes = '2 GiB'", "", "task.max_model_bytes", "less than or equal to 1073741824"),
        ("data_format = '" + "x" * 1025 + "'", "", "task.data_format", "at most 1024 characters"),
        ("aggregation = 'fedsgd'", "", "task.aggregation", "'fedavg' or 'fedprox' (got 'fedsgd')"),
        ("aggregation = 'fedprox'", "", "task.mu", "FedProx needs mu > 0"),
        ("mu = 0.1", "", "task.mu", "FedAvg takes no mu"),
        ("epsilon = 0.0000001", "", "task.epsilon", "epsilon must be between"),
        ("target_accuracy = 1.5", "", "task.target_accuracy", "less than or equal to 1"),
        ("max_rounds = 0", "", "task.max_rounds", "greater than or equal to 1"),
        ("epochs = '3'", "", "task.epochs", "valid integer (got '3')"),
        ("max_model_bytes = '1.5 B'", "", "task.max_model_bytes", "not a whole number of bytes"),
        ("lr = nan", "", "task.lr", "finite number"),
        ("durations = 5", "", "task.durations", "got 5"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, body: str, durations: str, field: str, words: str) -> None:
    message = task_error(tmp_path, body, durations)
    assert f": {field}: " in message
    assert words in message


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[task]\nepochs = 1\nlr = = 0.1\n")
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 3") as info:
        load_task_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="no such file"):
        load_task_file(tmp_path / "missing.toml")


def test_settings_defaults_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REFINER_CONFIG", raising=False)
    assert load_settings(None) == ClientSettings()
    assert ClientSettings().chain == "http://127.0.0.1:8545"
    assert ClientSettings().password_env == "REFINER_PASSWORD"

    write(
        tmp_path, f'chain = "embedded"\nregistry = "{ADDRESS.lower()}"\nstorage = "store"\n', "refiner.toml"
    )
    settings = load_settings(None)  # ./refiner.toml
    assert (settings.chain, settings.registry, settings.storage) == (
        "embedded",
        ADDRESS,
        str(tmp_path / "store"),
    )
    merged = settings.merged(chain="http://node:8545", registry=None, keystore="k.json")
    assert (merged.chain, merged.registry, merged.keystore) == ("http://node:8545", ADDRESS, Path("k.json"))
    assert settings.chain == "embedded"  # the original is unchanged
    with pytest.raises(ConfigError, match="command line: registry: not an Ethereum address"):
        settings.merged(registry="0x1234")

    other = tmp_path / "elsewhere"
    other.mkdir()
    write(other, 'chain = "https://rpc.example"\n', "custom.toml")
    monkeypatch.setenv("REFINER_CONFIG", str(other / "custom.toml"))
    assert load_settings(None).chain == "https://rpc.example"  # $REFINER_CONFIG beats ./refiner.toml
    assert load_settings(tmp_path / "refiner.toml").chain == "embedded"  # an explicit path beats both
    monkeypatch.setenv("REFINER_CONFIG", str(other / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone\.toml: cannot read it: no such file"):
        load_settings(None)
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.toml")


def test_settings_relative_paths_resolve_against_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    monkeypatch.chdir(tmp_path)
    text = 'keystore = "keys/me.json"\nstorage = "ipfs:repo?timeout=5"\n'
    settings = load_settings(write(conf, text, "refiner.toml"))
    assert settings.keystore == conf / "keys" / "me.json"
    assert settings.storage == f"ipfs://{(conf / 'repo').as_posix()}?timeout=5"
    text = f'keystore = "/abs/key.json"\nstorage = "dir:///srv/store"\nregistry = "{ADDRESS}"\n'
    settings = load_settings(write(conf, text, "abs.toml"))
    assert (settings.keystore, settings.storage) == (Path("/abs/key.json"), "dir:///srv/store")
    settings = load_settings(write(conf, 'keystore = "~/k.json"\n', "home.toml"))
    assert settings.keystore == Path.home() / "k.json"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('registry = "0x1234"', "registry: not an Ethereum address"),
        (f'registry = "{ADDRESS[:-1]}D"', "registry: not an Ethereum address"),  # bad checksum
        ('chain = "ftp://x"', "chain: unsupported chain"),
        ("chian = 'embedded'", "chian: unknown key 'chian' (allowed: chain, storage, keystore, registry,"),
        ("chain = 5", "chain: input should be a valid string (got 5)"),
    ],
)
def test_bad_settings(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text + "\n", "refiner.toml")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value)


def test_a_task_file_names_the_requester_s_own_model(tmp_path: Path) -> None:
    path = write(tmp_path, "[task]\nmodel = 'my_net'\n")
    with pytest.raises(ConfigError, match="unknown model 'my_net'"):
        load_task_file(path)
    assert load_task_file(path, models=["my_net"]).task.model == "my_net"


def test_settings_models_and_agent_terms(tmp_path: Path) -> None:
    text = (
        "[models]\nmy_net = 'refiner.fl.models:logistic'\n"
        "[agent]\nmin_reward = '0.1 ether'\nmax_epochs = 5\nmax_lock = '7d'\n"
        "[agent.max_durations]\ntraining = '2h'\n"
    )
    settings = load_settings(write(tmp_path, text, "refiner.toml"))
    assert settings.models == {"my_net": "refiner.fl.models:logistic"}
    assert settings.agent == AgentSection(
        min_reward=10**17, max_durations={"training": 7200}, max_epochs=5, max_lock=7 * 86400
    )
    assert ClientSettings().agent == AgentSection()  # no terms: every task, 30 days of stake lock at most
    assert ClientSettings().agent.max_lock == 30 * 86400


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[models]\n'os:abort' = 'os:abort'", "models: model 'os:abort' names code to import"),
        ("[models]\nmine = 'refiner'", "models.mine: expected 'package.module:function'"),
        ("[agent]\nmax_epochs = 0", "agent.max_epochs: input should be greater than or equal to 1"),
        ("[agent]\nmin_reward = '-1 ether'", "agent.min_reward: '-1 ether' must not be negative"),
        ("[agent.max_durations]\ntrain = '1h'", "agent.max_durations.train.[key]: input should be"),
        ("[agent]\nmax_lock = 'forever'", "agent.max_lock: cannot read duration 'forever'"),
        ("[agent]\nmin_rewards = 1", "agent.min_rewards: unknown key 'min_rewards' (allowed: min_reward,"),
    ],
)
def test_bad_models_and_terms(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text + "\n", "refiner.toml"))
    assert words in str(info.value)
