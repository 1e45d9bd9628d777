"""The machine-readable task description stored in the task contract's `description`.

The contract keeps the description as free text; Refiner writes a JSON document into it that tells every
participant the data format, the model architecture (so that everyone can validate weights against the
same spec), the local-training hyper-parameters, and the requester's public key (to which validators
encrypt their aggregated models). Anybody can check that key against the task's requester address.
It also names the contribution measure the validators use (``contribution``; a new description names
trusted-data unless told otherwise, and one without the field means leave-one-out, so descriptions
written before the field existed keep their meaning).

Anybody can post a task, so every field is type- and range-checked before anything uses it, and the
model is a *name*: a built-in one, or a factory the participant registered in its own configuration.
Nothing read from a task ever names code to import or call.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields

from eth_utils import keccak, to_checksum_address

from refiner import safejson
from refiner.fl.measures.base import MEASURE_NAMES, MeasureName

Contribution = MeasureName
CONTRIBUTIONS: tuple[str, ...] = MEASURE_NAMES
#: What a new task asks for (chosen by measurement: docs/incentives.md).
DEFAULT_CONTRIBUTION: Contribution = "trusted-data"
#: What a description without the field means, so that descriptions written before it keep their meaning.
IMPLICIT_CONTRIBUTION: Contribution = "leave-one-out"

#: A model name: a letter, then letters, digits, '_' or '-' (never code such as 'package.module:function').
MODEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
MAX_TEXT = 16 << 10  # characters of a whole description
MAX_KEY_TEXT = 130  # "0x" + 128 hex digits
MAX_DATA_FORMAT = 1024
MAX_EPOCHS = 100
MIN_BATCH, MAX_BATCH = 8, 8192
MAX_LR = 10.0
MAX_MODEL_BYTES = 1 << 30


class DescriptionError(ValueError):
    """The task's description is not a Refiner task description, or it is inconsistent."""


@dataclass(frozen=True)
class TaskDescription:
    requester_public_key: str  # hex of the 64-byte secp256k1 key (x ‖ y)
    data_format: str = "MNIST: 1x28x28 float32 images scaled to [0, 1], labels 0-9"
    model: str = "small_cnn"
    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.1
    max_model_bytes: int = 64 << 20
    contribution: Contribution = DEFAULT_CONTRIBUTION  # how validators score workers

    def __post_init__(self) -> None:
        for f in fields(self):
            value, kind = getattr(self, f.name), _KINDS[f.name]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise DescriptionError(f"{f.name} must be {_KIND_NAMES[kind]}, not {_show(value)}")
        _check_text(self)
        _check_numbers(self)

    def to_json(self) -> str:
        body = asdict(self)
        if body["contribution"] == IMPLICIT_CONTRIBUTION:
            del body["contribution"]  # written as before the field existed: the same text, the same digest
        return json.dumps({"refiner": 1, **body}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TaskDescription:
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            size = len(text) if isinstance(text, str) else type(text).__name__
            raise DescriptionError(f"not a Refiner task description: {size} characters, more than {MAX_TEXT}")
        try:
            body = safejson.loads(text, "the task description")
            if not isinstance(body, dict) or body.pop("refiner", None) != 1:
                raise ValueError("missing 'refiner': 1")
            body.setdefault("contribution", IMPLICIT_CONTRIBUTION)
            return cls(**body)
        except DescriptionError as exc:
            raise DescriptionError(f"refused task description: {exc}") from None
        except (ValueError, TypeError) as exc:
            reason = str(exc)[:160]
            raise DescriptionError(f"not a Refiner task description ({reason}): {text[:80]!r}") from None

    def requester_key(self, requester: str) -> bytes:
        """The requester's public key, checked against its address."""
        try:
            key = bytes.fromhex(self.requester_public_key.removeprefix("0x"))
        except ValueError:
            key = b""
        if len(key) != 64 or to_checksum_address(keccak(key)[12:]) != to_checksum_address(requester):
            raise DescriptionError(f"the description's public key does not belong to requester {requester}")
        return key


_KINDS: dict[str, type | tuple[type, ...]] = {
    "requester_public_key": str,
    "data_format": str,
    "model": str,
    "epochs": int,
    "batch_size": int,
    "lr": (int, float),
    "max_model_bytes": int,
    "contribution": str,
}
_KIND_NAMES = {str: "a string", int: "an integer", (int, float): "a number"}


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"


def check_model_name(name: str) -> None:
    """DescriptionError unless `name` can name a model (a built-in one, or one a participant registered)."""
    if not MODEL_NAME.fullmatch(name):
        code = " names code to import: a task only names a model" if ":" in name or "." in name else ""
        raise DescriptionError(
            f"model {name[:80]!r}{code} (letters, digits, '_', '-'; a built-in model or one the "
            "participant registered in its own configuration)"
        )


def _check_text(d: TaskDescription) -> None:
    if len(d.requester_public_key) > MAX_KEY_TEXT:
        raise DescriptionError(f"requester_public_key is {len(d.requester_public_key)} characters, over 130")
    if len(d.data_format) > MAX_DATA_FORMAT:
        raise DescriptionError(f"data_format is {len(d.data_format)} characters, over {MAX_DATA_FORMAT}")
    check_model_name(d.model)
    if d.contribution not in CONTRIBUTIONS:
        raise DescriptionError(
            f"unknown contribution measure {d.contribution[:40]!r}: use one of {list(CONTRIBUTIONS)}"
        )


def _check_numbers(d: TaskDescription) -> None:
    if not 1 <= d.epochs <= MAX_EPOCHS:
        raise DescriptionError(f"epochs must be 1 to {MAX_EPOCHS}, not {d.epochs}")
    if not MIN_BATCH <= d.batch_size <= MAX_BATCH:
        raise DescriptionError(f"batch_size must be {MIN_BATCH} to {MAX_BATCH}, not {d.batch_size}")
    if not 0 < d.lr <= MAX_LR:  # False for NaN too
        raise DescriptionError(f"lr must be a finite number in (0, {MAX_LR}], not {d.lr}")
    if not 1 <= d.max_model_bytes <= MAX_MODEL_BYTES:
        raise DescriptionError(
            f"max_model_bytes must be 1 to {MAX_MODEL_BYTES} (1 GiB), not {d.max_model_bytes}"
        )
