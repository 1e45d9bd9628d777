from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from refiner.fl.models import (
    ModelValidationError,
    deserialize,
    initial_state,
    load_factory,
    local_models,
    logistic,
    mnist_cnn,
    model_digest,
    resolve_model,
    serialize,
    small_cnn,
    spec_of,
)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_model_sizes() -> None:
    assert n_params(small_cnn()) == 28_938
    assert n_params(mnist_cnn()) == 1_663_370
    assert n_params(logistic()) == 7_850
    for fn in (small_cnn, mnist_cnn, logistic):
        assert fn()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_spec_of() -> None:
    spec = spec_of(logistic())
    assert spec.name == "Logistic"
    assert spec.params == {"fc.bias": ((10,), "float32"), "fc.weight": ((10, 784), "float32")}
    assert spec.payload_bytes == 7_850 * 4
    assert len(serialize(logistic().state_dict())) < spec.max_bytes <= spec.payload_bytes + 8192
    assert spec_of(logistic(), max_bytes=123, name="lr").max_bytes == 123


def test_resolve_model() -> None:
    assert resolve_model("small_cnn") is small_cnn
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        resolve_model("resnet")
    mine = {"my_net": logistic}
    assert resolve_model("my_net", mine) is logistic
    assert resolve_model("small_cnn", {"small_cnn": logistic}) is small_cnn  # built-ins cannot be hidden
    with pytest.raises(ValueError, match=r"own models \['my_net'\]"):
        resolve_model("other", mine)


@pytest.mark.parametrize("name", ["os:abort", "sys:exit", "os:getpid", "refiner.fl.models:logistic"])
def test_resolve_model_never_imports_what_a_task_names(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "evil_import_probe.py").write_text("import sys\nsys.modules['refiner'].EVIL = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model(name)
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model("evil_import_probe:f")
    assert "evil_import_probe" not in sys.modules


def test_load_factory_is_for_the_operator_s_own_configuration() -> None:
    user = load_factory("refiner.fl.models:logistic")
    assert n_params(user()) == 7_850
    assert set(local_models({"lr": "refiner.fl.models:logistic"})) == {"lr"}
    with pytest.raises(ValueError, match=r"\['small_cnn'\] are built-in model names"):
        local_models({"small_cnn": "refiner.fl.models:logistic"})
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_pkg\.mod'"):
        load_factory("no_such_pkg.mod:f")
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        load_factory("refiner.fl.models:nope")
    with pytest.raises(ValueError, match="not callable"):
        load_factory("math:pi")
    with pytest.raises(ValueError, match="must look like"):
        load_factory("refiner.fl.models:")
    with pytest.raises(TypeError, match=r"returned dict, not a torch\.nn\.Module"):
        load_factory("builtins:dict")()


def test_initial_state_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(99)
    before = torch.rand(1)
    torch.manual_seed(99)
    a = initial_state(small_cnn, 1)
    assert torch.equal(torch.rand(1), before)
    b = initial_state(small_cnn, 1)
    c = initial_state(small_cnn, 2)
    assert model_digest(a) == model_digest(b) != model_digest(c)


def test_round_trip_and_canonical_bytes() -> None:
    state = initial_state(small_cnn, 0)
    spec = spec_of(small_cnn())
    data = serialize(state)
    back = deserialize(data, spec)
    assert list(back) == sorted(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    assert model_digest(back) == model_digest(state)
    reordered = dict(reversed(list(state.items())))
    assert serialize(reordered) == data
    assert deserialize(bytearray(data), spec).keys() == state.keys()


# ----------------------------------------------------------------- refusals


@pytest.fixture
def spec_and_state() -> tuple[object, dict[str, torch.Tensor]]:
    return spec_of(logistic()), initial_state(logistic, 0)


def refused(data: bytes, spec: object, match: str) -> None:
    with pytest.raises(ModelValidationError, match=match):
        deserialize(data, spec)  # type: ignore[arg-type]


def test_refuses_nan_and_inf(spec_and_state: tuple[object, dict[str, torch.Tensor]]) -> None:
    spec, state = spec_and_state
    nan = dict(state, **{"fc.bias": state["fc.bias"].clone().index_fill_(0, torch.tensor([3]), float("nan"))})
    refused(serialize(nan), spec, r"parameter 'fc.bias' contains NaN")
    inf = dict(state, **{"fc.weight": state["fc.weight"].clone().fill_(float("-inf"))})
    refused(serialize(inf), spec, r"parameter 'fc.weight' contains Inf")


def test_refuses_wrong_shape_and_dtype(spec_and_state: tuple[object, dict[str, torch.Tensor]]) -> None:
    spec, state = spec_and_state
    wrong = dict(state, **{"fc.weight": torch.zeros(10, 100)})
    refused(serialize(wrong), spec, r"parameter 'fc.weight' has shape \(10, 100\), expected \(10, 784\)")
    f64 = dict(state, **{"fc.bias": state["fc.bias"].double()})
    refused(serialize(f64), spec, "parameter 'fc.bias' has dtype float64, expected float32")


def test_refuses_missing_and_extra_names(spec_and_state: tuple[object, dict[str, torch.Tensor]]) -> None:
    spec, state = spec_and_state
    refused(serialize({"fc.weight": state["fc.weight"]}), spec, r"missing parameter\(s\) 'fc.bias'")
    refused(serialize(dict(state, extra=torch.zeros(1))), spec, r"unexpected parameter\(s\) 'extra'")


def test_refuses_oversized_before_parsing(spec_and_state: tuple[object, dict[str, torch.Tensor]]) -> None:
    spec, state = spec_and_state
    limit = spec.max_bytes  # type: ignore[attr-defined]
    refused(b"\xff" * (limit + 1), spec, f"{limit + 1} bytes, over the limit of {limit}")
    small = spec_of(logistic(), max_bytes=1000)
    refused(serialize(state), small, "over the limit of 1000")


def test_refuses_truncated_and_corrupt(spec_and_state: tuple[object, dict[str, torch.Tensor]]) -> None:
    spec, state = spec_and_state
    data = serialize(state)
    (hlen,) = struct.unpack("<Q", data[:8])
    refused(b"", spec, "truncated")
    refused(data[:5], spec, "truncated")
    refused(data[: 8 + hlen // 2], spec, "truncated or corrupt: header claims")
    refused(data[: 8 + hlen + 100], spec, "truncated or corrupt: data of")
    refused(data[:-1], spec, "truncated or corrupt")
    refused(struct.pack("<Q", 2**62) + data[8:], spec, "header claims")
    garbage = struct.pack("<Q", 10) + b"{not json!" + data[8 + hlen :]
    refused(garbage, spec, "not valid JSON")
    refused(struct.pack("<Q", 2) + b"[]", spec, "not a JSON object")
    header = json.loads(data[8 : 8 + hlen])
    header["fc.bias"]["data_offsets"] = [0, 7]  # wrong length for 10 float32
    bad = json.dumps(header).encode()
    refused(struct.pack("<Q", len(bad)) + bad + data[8 + hlen :], spec, "corrupt")
    with pytest.raises(ModelValidationError, match="must be bytes"):
        deserialize("text", spec)  # type: ignore[arg-type]


def test_metadata_is_tolerated(spec_and_state: tuple[object, dict[str, torch.Tensor]]) -> None:
    import safetensors.torch

    spec, state = spec_and_state
    data = safetensors.torch.save(state, metadata={"format": "pt"})
    assert model_digest(deserialize(data, spec)) == model_digest(state)  # type: ignore[arg-type]


# ----------------------------------------------------------------- digest


def reference_digest(state: dict[str, torch.Tensor]) -> bytes:
    """The digest's definition, written out independently."""
    h = hashlib.sha256(b"refiner-model-digest-v1\0" + struct.pack("<Q", len(state)))
    for name in sorted(state):
        arr = state[name].numpy()
        le = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        for part in (name.encode(), str(state[name].dtype).removeprefix("torch.").encode()):
            h.update(struct.pack("<Q", len(part)) + part)
        h.update(struct.pack("<Q", arr.ndim) + b"".join(struct.pack("<Q", d) for d in arr.shape))
        h.update(struct.pack("<Q", len(le)) + le)
    return h.digest()


def test_digest_is_stable() -> None:
    state = {
        "b": torch.tensor([1.5, -2.0]),
        "a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "n": torch.tensor(7, dtype=torch.int64),
    }
    d = model_digest(state)
    assert len(d) == 32
    assert d.hex() == "16990c8cfd78d1270ad8f6dda9bc0a2fe46f29fb815e05651b694c31a22b7b0a"  # pinned
    assert d == reference_digest(state)
    assert model_digest(dict(reversed(list(state.items())))) == d
    assert model_digest({k: v.clone() for k, v in state.items()}) == d
    flipped = dict(state, b=torch.tensor([1.5, np.nextafter(np.float32(-2.0), np.float32(0)).item()]))
    assert model_digest(flipped) != d
    assert model_digest(dict(state, b=state["b"].double())) != d
    assert model_digest(dict(state, b=state["b"].reshape(2, 1))) != d
    transposed = {"a.weight": state["a.weight"].t()}
    assert model_digest(transposed) == model_digest({"a.weight": state["a.weight"].t().contiguous()})
