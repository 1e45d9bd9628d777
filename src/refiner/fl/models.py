"""Model factories, model specs, and the safe (de)serialisation and digest of weights.

Weights travel as a "state": ``dict[str, torch.Tensor]`` (a module's ``state_dict``). On the wire a
state is a safetensors file; :func:`deserialize` checks untrusted bytes against a :class:`ModelSpec`
before anything else touches them. pickle / ``torch.load`` are never used.
"""

from __future__ import annotations

import hashlib
import importlib
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import safetensors
import safetensors.torch
import torch
from torch import nn

from refiner import safejson

State = dict[str, torch.Tensor]
ModelFn = Callable[[], nn.Module]

# safetensors dtype codes <-> torch dtype names (the names are what a ModelSpec records)
_ST_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
_HEADER_SLACK = 4096
_MAX_HEADER = 1 << 24


class ModelValidationError(ValueError):
    """Model bytes or a state that do not match the task's model spec."""


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class ModelSpec:
    """What a valid model of a task looks like: parameter name -> (shape, dtype name), and a size limit."""

    name: str
    params: dict[str, tuple[tuple[int, ...], str]]
    max_bytes: int

    @property
    def payload_bytes(self) -> int:
        """Bytes of raw tensor data in one serialised state."""
        total = 0
        for shape, dt in self.params.values():
            numel = 1
            for d in shape:
                numel *= d
            total += numel * getattr(torch, dt).itemsize
        return total

    def check_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Raise ModelValidationError unless ``state`` has exactly this spec's names, shapes and dtypes."""
        _check_names(set(state), self)
        for name, (shape, dt) in self.params.items():
            t = state[name]
            _check_tensor(name, tuple(t.shape), dtype_name(t.dtype), shape, dt)


def spec_of(module: nn.Module, max_bytes: int | None = None, name: str | None = None) -> ModelSpec:
    """The spec of a module's state_dict; by default ``max_bytes`` is the canonical size + 4 KiB."""
    state = module.state_dict()
    params = {k: (tuple(int(d) for d in v.shape), dtype_name(v.dtype)) for k, v in sorted(state.items())}
    if max_bytes is None:
        max_bytes = len(serialize(state)) + _HEADER_SLACK
    return ModelSpec(name or type(module).__name__, params, max_bytes)


# --------------------------------------------------------------------------- factories


class SmallCNN(nn.Module):
    """conv(1→16, 5x5) - pool - conv(16→32, 5x5) - pool - fc(1568→10): 28,938 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))  # type: ignore[no-any-return]


class MnistCNN(nn.Module):
    """The CNN of McMahan et al. 2017: conv32-pool-conv64-pool-fc512-fc10, 1,663,370 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * 7 * 7, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))  # type: ignore[no-any-return]


class Logistic(nn.Module):
    """Multinomial logistic regression 784 → 10 (7,850 parameters), for fast tests."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))  # type: ignore[no-any-return]


def small_cnn() -> nn.Module:
    return SmallCNN()


def mnist_cnn() -> nn.Module:
    return MnistCNN()


def logistic() -> nn.Module:
    return Logistic()


BUILTIN_MODELS: dict[str, ModelFn] = {"small_cnn": small_cnn, "mnist_cnn": mnist_cnn, "logistic": logistic}


def resolve_model(name: str, local: Mapping[str, ModelFn] | None = None) -> ModelFn:
    """A task's model by name: a built-in, else one of the participant's own ``local`` factories.

    Never imports anything: the name comes from a task, which anybody can write."""
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name]
    if local and name in local:
        return local[name]
    mine = f", or of this participant's own models {sorted(local)}" if local else ""
    raise ValueError(
        f"unknown model {name[:80]!r}: not one of the built-in models {sorted(BUILTIN_MODELS)}{mine} "
        "(register a custom model in your own configuration: models NAME = 'package.module:function')"
    )


def load_factory(path: str) -> ModelFn:
    """The factory at ``"package.module:function"``, imported: for the operator's OWN configuration
    (`local_models`, CLI options, refiner.toml), never for a name read from a task or a peer."""
    mod_name, _, attr = path.partition(":")
    if not mod_name or not attr:
        raise ValueError(f"model path {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"cannot import module {mod_name!r} for model {path!r}: {e}") from e
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {mod_name!r} has no attribute {attr!r} (model {path!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model factory {path!r} is not callable")
    factory: Callable[[], object] = obj

    def build() -> nn.Module:
        m = factory()
        if not isinstance(m, nn.Module):
            raise TypeError(f"model factory {path!r} returned {type(m).__name__}, not a torch.nn.Module")
        return m

    build.__name__ = attr.rsplit(".", 1)[-1]
    return build


def local_models(paths: Mapping[str, str]) -> dict[str, ModelFn]:
    """The operator's own models, name -> factory, from name -> ``"package.module:function"``; a name
    may not hide a built-in one (every participant of a task must build the same model from its name)."""
    shadowing = sorted(set(paths) & set(BUILTIN_MODELS))
    if shadowing:
        raise ValueError(f"local model name(s) {shadowing} are built-in model names: choose other names")
    return {name: load_factory(path) for name, path in paths.items()}


def initial_state(model_fn: ModelFn, seed: int) -> State:
    """A freshly initialised model's state, deterministic for ``seed`` (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = model_fn()
    return clone_state(module.state_dict())


def clone_state(state: Mapping[str, torch.Tensor]) -> State:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}


# --------------------------------------------------------------------------- wire format


def serialize(state: Mapping[str, torch.Tensor]) -> bytes:
    """Canonical safetensors bytes: sorted names, contiguous CPU tensors, no metadata."""
    canon = {k: state[k].detach().to("cpu").contiguous() for k in sorted(state)}
    return safetensors.torch.save(canon)


def _check_names(names: set[str], spec: ModelSpec) -> None:
    missing = sorted(set(spec.params) - names)
    extra = sorted(names - set(spec.params))
    if missing:
        raise ModelValidationError(f"missing parameter(s) {', '.join(map(repr, missing))}")
    if extra:
        raise ModelValidationError(f"unexpected parameter(s) {', '.join(map(repr, extra))}")


def _check_tensor(
    name: str, shape: tuple[int, ...], dt: str, want_shape: tuple[int, ...], want_dt: str
) -> None:
    if shape != want_shape:
        raise ModelValidationError(f"parameter {name!r} has shape {shape}, expected {want_shape}")
    if dt != want_dt:
        raise ModelValidationError(f"parameter {name!r} has dtype {dt}, expected {want_dt}")


def _parse_header(data: bytes) -> dict[str, object]:
    if len(data) < 8:
        raise ModelValidationError(f"model file truncated: {len(data)} bytes, no safetensors header")
    (hlen,) = struct.unpack("<Q", data[:8])
    if hlen > min(_MAX_HEADER, len(data) - 8):
        raise ModelValidationError(
            f"model file truncated or corrupt: header claims {hlen} bytes, file has {len(data) - 8} after it"
        )
    try:
        header = safejson.loads(data[8 : 8 + hlen].decode("utf-8"), "the safetensors header")
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelValidationError(f"model file corrupt: safetensors header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise ModelValidationError("model file corrupt: safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def deserialize(data: bytes | bytearray | memoryview, spec: ModelSpec) -> State:
    """Untrusted bytes -> state, after checking (in order) size, header, names, shapes, dtypes, finiteness.

    Raises ModelValidationError naming the first problem found.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelValidationError(f"model data must be bytes, got {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > spec.max_bytes:
        raise ModelValidationError(f"model file is {size} bytes, over the limit of {spec.max_bytes}")
    data = bytes(data)
    header = _parse_header(data)
    _check_names(set(header), spec)
    body = len(data) - 8 - struct.unpack("<Q", data[:8])[0]
    for name in sorted(spec.params):
        info = header[name]
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise ModelValidationError(f"model file corrupt: bad header entry for {name!r}")
        st_dt, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ModelValidationError(f"model file corrupt: bad shape for {name!r}: {shape!r}")
        dt = _ST_DTYPES.get(st_dt, str(st_dt)) if isinstance(st_dt, str) else repr(st_dt)
        want_shape, want_dt = spec.params[name]
        _check_tensor(name, tuple(shape), dt, want_shape, want_dt)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ModelValidationError(f"model file corrupt: bad data offsets for {name!r}")
        if not 0 <= offsets[0] <= offsets[1] <= body:
            raise ModelValidationError(
                f"model file truncated or corrupt: data of {name!r} ends at {offsets[1]}, body has {body}"
            )
    try:
        loaded = safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, RuntimeError) as e:
        raise ModelValidationError(f"model file corrupt: {e}") from e
    spec.check_state(loaded)  # what was parsed, not only what the header said (e.g. duplicate keys)
    state: State = {}
    for name in sorted(spec.params):
        t = loaded[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = "NaN" if bool(torch.isnan(t).any()) else "Inf"
            raise ModelValidationError(f"parameter {name!r} contains {bad} values")
        state[name] = t.contiguous()
    return state


def _raw_le_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(torch.uint8) if flat.numel() else torch.empty(0, dtype=torch.uint8)
    if sys.byteorder == "little" or t.element_size() == 1:
        return bytes(raw.numpy().tobytes())
    return bytes(raw.reshape(-1, t.element_size()).flip(1).numpy().tobytes())  # pragma: no cover


def model_digest(state: Mapping[str, torch.Tensor]) -> bytes:
    """sha256 over (sorted names, dtype, shape, raw little-endian bytes): equal weights, equal digest."""
    h = hashlib.sha256(b"refiner-model-digest-v1\0")
    h.update(struct.pack("<Q", len(state)))
    for name in sorted(state):
        t = state[name]
        for part in (name.encode(), dtype_name(t.dtype).encode()):
            h.update(struct.pack("<Q", len(part)) + part)
        h.update(struct.pack("<Q", t.dim()) + b"".join(struct.pack("<Q", int(d)) for d in t.shape))
        raw = _raw_le_bytes(t)
        h.update(struct.pack("<Q", len(raw)) + raw)
    return h.digest()
