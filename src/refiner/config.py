"""TOML configuration: task files (``refiner requester create-task TASK.toml``) and client defaults.

Both are validated with pydantic, and every problem becomes a :class:`ConfigError` with one human-readable
line per problem: ``FILE: task.durations.training: what is wrong``. Task files are checked against the same
rules as ``TaskTypes.validate`` on chain, so a bad task is refused before anything is deployed or paid.
Relative paths in ``refiner.toml`` (``keystore``, a plain-path or ``dir:``/``ipfs:`` relative ``storage``)
are resolved against the directory of that file, not the current directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection
from dataclasses import fields
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, unquote, urlsplit

from eth_utils import is_checksum_address, to_checksum_address
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core.core_schema import ValidationInfo

from refiner.chain.types import MAX_DURATION, NO_EPSILON, Aggregation, Durations, TaskConfig
from refiner.units import ETH, ONE, to_fixed
from refiner.wire import spec
from refiner.wire.spec import TaskDescription, check_model_name

M = TypeVar("M", bound=BaseModel)
__all__ = ["AgentSection", "ClientSettings", "ConfigError", "TaskFile", "load_settings", "load_task_file"]

UINT32, UINT64, UINT256 = 2**32 - 1, 2**64 - 1, 2**256 - 1
_UNITS = {"wei": 1, "gwei": 10**9, "ether": 10**18, "eth": 10**18}
_SIZES = {"": 1, "b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AMOUNT = re.compile(r"\s*(-?(?:\d+\.?\d*|\.\d+))\s*([a-z]*)\s*", re.IGNORECASE)
_DURATION = re.compile(r"(\d+)\s*([smhd])\s*", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration file (or override) is unreadable or invalid; one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _amount(value: object, units: dict[str, int], example: str, smallest: str) -> int:
    """An int, or a decimal number and a unit, as an exact non-negative int (Decimal, never floats)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer or a string like {example!r}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} must not be negative")
        return value
    m = _AMOUNT.fullmatch(value)
    if not m or m[2].lower() not in units:
        raise ValueError(
            f"cannot read {value!r}: write e.g. {example!r} (units: {', '.join(u for u in units if u)})"
        )
    factor = units[m[2].lower()]
    with localcontext() as ctx:
        ctx.prec, ctx.traps[Inexact] = 120, True
        try:
            scaled = Decimal(m[1]) * factor
        except (Inexact, InvalidOperation):
            raise ValueError(f"{value!r} is too large") from None
    if scaled < 0:
        raise ValueError(f"{value!r} must not be negative")
    if scaled != scaled.to_integral_value():
        digits = f" (more than {len(str(factor)) - 1} decimals)" if str(factor).strip("0") == "1" else ""
        raise ValueError(f"{value!r} is not a whole number of {smallest}{digits}")
    return int(scaled)


def parse_wei(value: object) -> int:
    """An amount of ether as integer wei: an int (wei) or "0.5 ether", "2000 gwei", "123 wei"."""
    return _amount(value, _UNITS, "0.5 ether", "wei")


def parse_address(value: str) -> str:
    """A checksummed Ethereum address: 0x + 40 hex digits; a mixed-case one must have a valid checksum."""
    mixed = value[2:] not in (value[2:].lower(), value[2:].upper())
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value) or (mixed and not is_checksum_address(value)):
        raise ValueError(f"not an Ethereum address (0x + 40 hex digits, mixed case = checksum): {value!r}")
    return str(to_checksum_address(value))


def parse_seconds(value: object) -> int:
    """A duration in seconds: an int or "45s", "10m", "2h", "1d", "1h30m" (a bare number is seconds)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer or a string like '10m', got {value!r}")
    text = str(value).strip()
    if isinstance(value, int) or text.isdigit():
        return int(text)
    parts = _DURATION.findall(text)
    if not text or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text):
        raise ValueError(f"cannot read duration {value!r}: write seconds or e.g. '45s', '10m', '1h30m', '1d'")
    return sum(int(n) * _SECONDS[u.lower()] for n, u in parts)


Wei = Annotated[int, BeforeValidator(parse_wei), Field(ge=0, le=UINT256)]
Reward = Annotated[int, BeforeValidator(parse_wei), Field(gt=0, le=UINT256)]
Seconds = Annotated[int, BeforeValidator(parse_seconds), Field(gt=0, le=MAX_DURATION)]
Count = Annotated[int, Field(ge=1, le=UINT32)]
_D, _T, _DESC = Durations(), TaskConfig("", 0, 0), TaskDescription("")


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class DurationsSection(_Strict):
    """``[task.durations]``: seconds per timed phase (TaskTypes.Durations)."""

    recruitment: Seconds = _D.recruitment
    training: Seconds = _D.training
    evaluation: Seconds = _D.evaluation
    reveal: Seconds = _D.reveal
    idle: Seconds = _D.idle
    claim: Seconds = _D.claim


class TaskSection(_Strict):
    """``[task]``: every setting has the default of TaskConfig / TaskDescription."""

    model: str = _DESC.model
    data_format: Annotated[str, Field(max_length=spec.MAX_DATA_FORMAT)] = _DESC.data_format
    epochs: Annotated[int, Field(ge=1, le=spec.MAX_EPOCHS)] = _DESC.epochs
    batch_size: Annotated[int, Field(ge=spec.MIN_BATCH, le=spec.MAX_BATCH)] = _DESC.batch_size
    lr: Annotated[float, Field(gt=0, le=spec.MAX_LR)] = _DESC.lr
    max_model_bytes: Annotated[
        int,
        BeforeValidator(lambda v: _amount(v, _SIZES, "64 MiB", "bytes")),
        Field(gt=0, le=spec.MAX_MODEL_BYTES),
    ] = _DESC.max_model_bytes
    contribution: spec.Contribution = _DESC.contribution
    aggregation: Literal["fedavg", "fedprox"] = "fedavg"
    mu: Annotated[float, Field(ge=0, validate_default=True)] = _T.mu
    # unset: no absolute bound for trusted-data (its screen qualifies; a fixed ε stalls non-IID tasks,
    # docs/incentives.md), the chain's default 1.0 for the loss-based measures
    epsilon: Annotated[float, Field(gt=0)] | None = None
    target_accuracy: Annotated[float, Field(ge=0, le=1)] = _T.target_accuracy
    max_rounds: Count = _T.max_rounds
    max_workers: Count = _T.max_workers
    committee_size: Count = _T.committee_size
    worker_reward: Reward = ETH
    validator_reward: Reward = 4 * 10**17
    budget: Wei = 0
    sign_up_deposit: Wei = _T.sign_up_deposit  # each worker's, back with its round-1 submission
    durations: DurationsSection = Field(default_factory=DurationsSection)

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str, info: ValidationInfo) -> str:
        """A built-in model, or one of the requester's own (`models` in refiner.toml): a name, not code."""
        from refiner.fl.models import BUILTIN_MODELS  # imports torch: only when a task file is read

        check_model_name(name)
        local = (info.context or {}).get("models", ())
        if name not in BUILTIN_MODELS and name not in local:
            mine = f" or your own models {sorted(local)}" if local else ""
            raise ValueError(
                f"unknown model {name!r}: use one of {sorted(BUILTIN_MODELS)}{mine} (register your own "
                "in refiner.toml: [models] NAME = 'package.module:function')"
            )
        return name

    @field_validator("mu")
    @classmethod
    def _mu_matches_aggregation(cls, mu: float, info: ValidationInfo) -> float:
        fixed, aggregation = to_fixed(mu), info.data.get("aggregation")
        if aggregation == "fedprox" and fixed == 0:
            raise ValueError(f"FedProx needs mu > 0 (at least {1 / ONE}), got {mu}")
        if aggregation == "fedavg" and fixed != 0:
            raise ValueError(f"FedAvg takes no mu: set mu = 0 or aggregation = 'fedprox' (got {mu})")
        if fixed > UINT64:
            raise ValueError(f"mu {mu} is too large")
        return mu

    @field_validator("epsilon")
    @classmethod
    def _epsilon_fits(cls, epsilon: float | None) -> float | None:
        if epsilon is not None and not 0 < to_fixed(epsilon) <= UINT64:
            raise ValueError(f"epsilon must be between {1 / ONE} and {UINT64 // ONE}, got {epsilon}")
        return epsilon


class TaskFile(_Strict):
    """A task file: one ``[task]`` table (unknown keys refused), with an optional ``[task.durations]``."""

    task: TaskSection

    def task_config(self, description_json: str) -> TaskConfig:
        """The on-chain configuration, with `description_json` (TaskDescription.to_json) as description."""
        if not description_json:
            raise ValueError("the task description is empty (the contract refuses it)")
        t, same = self.task, {f.name for f in fields(TaskConfig)} - {"aggregation", "durations", "epsilon"}
        return TaskConfig(
            **{**t.model_dump(include=same), "description": description_json},
            epsilon=t.epsilon if t.epsilon is not None else default_epsilon(t.contribution),
            aggregation=Aggregation.FedProx if t.aggregation == "fedprox" else Aggregation.FedAvg,
            durations=Durations(**t.durations.model_dump()),
        )

    def description(self, requester_public_key_hex: str) -> TaskDescription:
        """The JSON description participants read; the key is the requester's 64-byte public key in hex."""
        if not re.fullmatch(r"(0x)?[0-9a-fA-F]{128}", requester_public_key_hex):
            raise ValueError(f"not a 64-byte public key in hex: {requester_public_key_hex[:20]!r}…")
        same = {f.name for f in fields(TaskDescription)}
        return TaskDescription(requester_public_key_hex, **self.task.model_dump(include=same))


def default_epsilon(contribution: str) -> float:
    """The ε a task gets when its file does not set one: no absolute bound for trusted-data."""
    return NO_EPSILON if contribution == "trusted-data" else _T.epsilon


def _resolve_path(value: str, base: Path | None) -> Path:
    path = Path(value).expanduser()
    return (base / path) if base is not None and not path.is_absolute() else path


Phase = Literal["recruitment", "training", "evaluation", "reveal", "idle", "claim"]


class AgentSection(_Strict):
    """``[agent]``: the terms of `refiner worker run` / `refiner validator run` (agents.terms.Terms):
    tasks outside them are not joined."""

    min_reward: Wei = 0
    max_durations: dict[Phase, Seconds] = Field(default_factory=dict)
    max_epochs: Annotated[int, Field(ge=1)] | None = None
    max_lock: Seconds = 30 * 86400


def parse_model_path(value: object) -> str:
    """'package.module:function': code the operator names in its own configuration."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", value):
        raise ValueError(f"expected 'package.module:function', got {value!r}")
    return value


ModelPath = Annotated[str, BeforeValidator(parse_model_path)]


class ClientSettings(BaseModel):
    """``refiner.toml``: defaults of every CLI command's --chain, --storage, --keystore and --registry;
    the operator's own models (``[models]`` NAME = "package.module:function", which tasks can name) and
    the agents' terms (``[agent]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chain: str = "http://127.0.0.1:8545"
    storage: str | None = None
    keystore: Path | None = None
    registry: str | None = None
    password_env: Annotated[str, Field(min_length=1)] = "REFINER_PASSWORD"
    models: dict[str, ModelPath] = Field(default_factory=dict)
    agent: AgentSection = Field(default_factory=AgentSection)

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, str]) -> dict[str, str]:
        for name in models:
            check_model_name(name)
        return models

    @field_validator("chain")
    @classmethod
    def _chain_url(cls, url: str) -> str:
        ok = url in ("embedded", "eth-tester", "eth-tester://") or url.endswith(".ipc")
        if not ok and not url.startswith(("http://", "https://", "ipc://")):
            raise ValueError(f"unsupported chain {url!r}: use 'embedded', http(s)://… or a .ipc path")
        return url

    @field_validator("keystore", mode="before")
    @classmethod
    def _keystore_path(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve_path(value, (info.context or {}).get("base")) if isinstance(value, str) else value

    @field_validator("storage", mode="before")
    @classmethod
    def _storage_url(cls, value: Any, info: ValidationInfo) -> Any:
        value, base = str(value) if isinstance(value, Path) else value, (info.context or {}).get("base")
        scheme = value.split(":", 1)[0].lower() if isinstance(value, str) and ":" in value else ""
        if not isinstance(value, str) or not value or ("://" in value and scheme not in ("dir", "ipfs")):
            return value  # not a string, or an unsupported URL that open_store will refuse
        if scheme not in ("dir", "ipfs"):
            return str(_resolve_path(value, base))
        url = urlsplit(value)
        if url.netloc or not url.path or Path(unquote(url.path)).is_absolute():
            return value
        path = _resolve_path(unquote(url.path), base).absolute()
        return f"{scheme}://{quote(path.as_posix())}" + (f"?{url.query}" if url.query else "")

    @field_validator("registry")
    @classmethod
    def _registry_address(cls, value: str | None) -> str | None:
        return None if value is None else parse_address(value)

    def merged(self, **overrides: Any) -> ClientSettings:
        """A copy where every non-None override (a CLI flag) replaces the file's value."""
        data = {**self.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
        return _validate(ClientSettings, data, "command line", None)


def _allowed(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _validate(model: type[M], data: Any, source: str, base: Path | None, **context: Any) -> M:
    try:
        return model.model_validate(data, context={"base": base, **context})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                what = f"unknown key {loc[-1]!r} (allowed: {', '.join(_allowed(model, loc[:-1]))})"
            elif err["type"] == "missing":
                what = "required but missing" + (" (add a [task] table)" if loc == ("task",) else "")
            elif err["type"] == "value_error":
                what = err["msg"].removeprefix("Value error, ")
            else:
                what = f"{err['msg'][:1].lower()}{err['msg'][1:]} (got {err['input']!r})"
            problems.append(f"{'.'.join(loc) or '(top level)'}: {what}")
        raise ConfigError(source, problems) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read it: {(exc.strerror or str(exc)).lower()}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"invalid TOML: {exc}"]) from None


def load_task_file(path: str | os.PathLike[str], models: Collection[str] = ()) -> TaskFile:
    """Read and validate a task file (`models`: the requester's own model names); raises
    :class:`ConfigError`."""
    path = Path(path)
    return _validate(TaskFile, _read_toml(path), str(path), path.parent, models=tuple(models))


def load_settings(path: Path | None = None) -> ClientSettings:
    """The client settings from `path`, else $REFINER_CONFIG, else ./refiner.toml if present, else defaults.

    A path that is given (as argument or in $REFINER_CONFIG) must exist.
    """
    if path is None and os.environ.get("REFINER_CONFIG"):
        path = Path(os.environ["REFINER_CONFIG"])
    if path is None:
        path = Path("refiner.toml")
        if not path.is_file():
            return ClientSettings()
    path = path.expanduser()
    return _validate(ClientSettings, _read_toml(path), str(path), path.absolute().parent)
