"""The contract build (artifacts, fingerprint, rebuild, errors), revert decoding, and the Python mirrors
of the contract's types checked against the contract itself."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector as selector
from eth_utils import keccak

from refiner.chain import (
    Aggregation,
    ContractRevert,
    Durations,
    Manifest,
    Status,
    Task,
    TaskConfig,
    build,
    errors,
)
from refiner.chain.registry import task_codehash
from refiner.chain.types import commitment
from tests.helpers import World, config, handle, new_task, recruit, start_round, submit_all

REAL_ROOT = build.PROJECT_ROOT
REAL_BUILD = build.BUILD_DIR

# ---------------------------------------------------------------------- artifacts


@pytest.mark.parametrize("name", build.DEPLOYABLE)
def test_artifacts_load(name: str) -> None:
    artifact = build.load_artifact(name)
    assert artifact.name == name
    assert any(item["type"] == "constructor" for item in artifact.abi)
    assert artifact.bytecode and artifact.deployed_bytecode
    assert (build.BUILD_DIR / f"{name}.json").exists()
    assert build.is_fresh()


def test_unknown_artifact_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="TaskTypes"):
        build.load_artifact("TaskTypes")


def test_deployed_task_code_is_the_artifacts_runtime_code(world: World) -> None:
    task = new_task(world, register=False)
    code = bytes(world.chain.w3.eth.get_code(task.address))
    assert code == build.load_artifact("RefinerTask").deployed_bytecode
    assert keccak(code) == task_codehash()


# ---------------------------------------------------------------------- a copy of the project


@dataclass
class Copy:
    root: Path
    contracts: Path
    build_dir: Path


def _point_build_at(monkeypatch: pytest.MonkeyPatch, root: Path, node_modules: Path) -> None:
    monkeypatch.setattr(build, "PROJECT_ROOT", root)
    monkeypatch.setattr(build, "CONTRACTS_DIR", root / "contracts")
    monkeypatch.setattr(build, "NODE_MODULES", node_modules)
    monkeypatch.setattr(build, "BUILD_DIR", root / "build" / "contracts")
    monkeypatch.setattr(build, "FINGERPRINT_FILE", root / "build" / "contracts" / "fingerprint")


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Copy]:
    """A temporary project root: a copy of contracts/ and of the current build, node_modules symlinked,
    with the build module pointed at it. The artifact caches are cleared afterwards, so no test sees
    artifacts built from the copy."""
    build.ensure_built()
    root = tmp_path / "project"
    shutil.copytree(REAL_ROOT / "contracts", root / "contracts")
    shutil.copytree(REAL_BUILD, root / "build" / "contracts")
    (root / "node_modules").symlink_to(REAL_ROOT / "node_modules", target_is_directory=True)
    _point_build_at(monkeypatch, root, root / "node_modules")
    yield Copy(root, root / "contracts", root / "build" / "contracts")
    build._load.cache_clear()
    errors._errors_by_selector.cache_clear()


def test_fingerprint_depends_on_content_not_location(copy: Copy, monkeypatch: pytest.MonkeyPatch) -> None:
    in_copy = build.fingerprint()
    with monkeypatch.context() as m:
        _point_build_at(m, REAL_ROOT, REAL_ROOT / "node_modules")
        assert build.fingerprint() == in_copy
    assert build.is_fresh()  # the copied build matches the copied sources


def test_changed_source_is_rebuilt(copy: Copy) -> None:
    before = build.fingerprint()
    source = copy.contracts / "RefinerRegistry.sol"
    text = source.read_text()
    probe = "    function buildProbe() external pure returns (uint256) {\n        return 42;\n    }\n"
    source.write_text(text[: text.rindex("}")] + probe + "}\n")
    assert build.fingerprint() != before
    assert not build.is_fresh()

    artifact = build.load_artifact("RefinerRegistry")  # recompiles the copy
    assert build.is_fresh()
    assert build.FINGERPRINT_FILE.read_text().strip() == build.fingerprint()
    assert "buildProbe" in {item.get("name") for item in artifact.abi}
    assert "buildProbe" in (copy.build_dir / "RefinerRegistry.json").read_text()
    # the real build is untouched
    assert "buildProbe" not in (REAL_BUILD / "RefinerRegistry.json").read_text()


def test_a_build_made_elsewhere_is_not_served_stale_from_the_cache(copy: Copy) -> None:
    """`make contracts` (build.main → compile_contracts, here or in another process) rewrites the
    artifacts; a process that loaded them before must not keep serving the old ones."""
    old = build.load_artifact("RefinerRegistry")  # now cached in this process
    source = copy.contracts / "RefinerRegistry.sol"
    text = source.read_text()
    probe = "    function cacheProbe() external pure returns (uint256) {\n        return 7;\n    }\n"
    source.write_text(text[: text.rindex("}")] + probe + "}\n")
    build.compile_contracts()  # what `make contracts` runs
    assert build.is_fresh()
    assert "cacheProbe" in (copy.build_dir / "RefinerRegistry.json").read_text()
    new = build.load_artifact("RefinerRegistry")
    assert "cacheProbe" in {item.get("name") for item in new.abi}, "stale cached artifact served"
    assert new.bytecode != old.bytecode


def test_fingerprint_covers_new_sources_settings_and_toolchain(
    copy: Copy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = build.fingerprint()
    extra = copy.contracts / "Extra.sol"
    extra.write_text("// SPDX-License-Identifier: Apache-2.0\npragma solidity ^0.8.24;\n")
    assert build.fingerprint() != base
    extra.unlink()
    assert build.fingerprint() == base
    assert build.is_fresh()

    with monkeypatch.context() as m:
        m.setitem(build.SETTINGS["optimizer"], "runs", 201)
        assert build.fingerprint() != base
    assert build.fingerprint() == base

    # another version of a library: a node_modules with a different @openzeppelin/contracts version
    modules = tmp_path / "modules"
    (modules / "@openzeppelin" / "contracts").mkdir(parents=True)
    (modules / "@openzeppelin" / "contracts" / "package.json").write_text('{"version": "0.0.0-test"}')
    for entry in ("solc", "@chainlink"):
        (modules / entry).symlink_to(REAL_ROOT / "node_modules" / entry)
    with monkeypatch.context() as m:
        m.setattr(build, "NODE_MODULES", modules)
        assert build.fingerprint() != base
        assert not build.is_fresh()


def _modules_without_solc(tmp_path: Path) -> Path:
    modules = tmp_path / "no-solc-modules"
    modules.mkdir()
    for entry in (REAL_ROOT / "node_modules").iterdir():
        if entry.name != "solc":
            (modules / entry.name).symlink_to(entry)
    return modules


@pytest.mark.parametrize("previous_build", [True, False])
def test_missing_solc_is_a_clear_build_error(
    copy: Copy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, previous_build: bool
) -> None:
    monkeypatch.setattr(build, "NODE_MODULES", _modules_without_solc(tmp_path))
    if not previous_build:
        shutil.rmtree(copy.build_dir)
    with pytest.raises(build.BuildError, match="solc") as exc:
        build.load_artifact("RefinerTask")
    assert "make setup" in str(exc.value)
    with pytest.raises(build.BuildError, match="solc"):
        build.compile_contracts()
    with pytest.raises(build.BuildError, match="'solc' is not installed"):
        build.fingerprint()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("contract Broken { function f( }", "ParserError"),
        (
            "contract Broken { function f() external pure returns (uint256) { return true; } }",
            "TypeError",
        ),
    ],
    ids=["parser", "type"],
)
def test_compile_error_is_a_build_error_with_the_compiler_message(
    copy: Copy, source: str, expected: str
) -> None:
    old_fingerprint = build.FINGERPRINT_FILE.read_text()
    old_artifact = (copy.build_dir / "RefinerTask.json").read_text()
    broken = copy.contracts / "Broken.sol"
    broken.write_text(f"// SPDX-License-Identifier: Apache-2.0\npragma solidity ^0.8.24;\n{source}\n")
    with pytest.raises(build.BuildError) as exc:
        build.load_artifact("RefinerTask")
    message = str(exc.value)
    assert expected in message
    assert "contracts/Broken.sol" in message
    # nothing half-built: the old build stays as it was, and is still not taken for fresh
    assert build.FINGERPRINT_FILE.read_text() == old_fingerprint
    assert (copy.build_dir / "RefinerTask.json").read_text() == old_artifact
    assert not build.is_fresh()
    # remove the broken file: the old build matches the sources again, without recompiling
    broken.unlink()
    assert build.is_fresh()


# ---------------------------------------------------------------------- revert decoding


def test_decode_known_custom_error() -> None:
    data = selector("StakeTooLow(uint256,uint256)") + encode(["uint256", "uint256"], [5, 10**15])
    for form in (data, "0x" + data.hex(), data.hex()):
        err = errors.decode_revert(form)
        assert isinstance(err, ContractRevert)
        assert err.error == "StakeTooLow"
        assert err.args_by_name == {"stake": 5, "minimum": 10**15}
        assert err.raw == data
        assert str(err) == f"StakeTooLow(stake=5, minimum={10**15})"


def test_decode_errors_of_both_contracts_and_their_argument_types() -> None:
    address = "0x" + "ab" * 20
    err = errors.decode_revert(selector("NotValidator(address)") + encode(["address"], [address]))
    assert (err.error, err.args_by_name["account"].lower()) == ("NotValidator", address)
    err = errors.decode_revert(selector("UnapprovedTaskCode(bytes32)") + b"\x11" * 32)
    assert err.args_by_name == {"codehash": b"\x11" * 32}
    assert str(err) == "UnapprovedTaskCode(codehash=0x" + "11" * 32 + ")"
    err = errors.decode_revert(selector("WrongStatus(uint8)") + encode(["uint8"], [int(Status.TRAINING)]))
    assert (err.error, err.args_by_name) == ("WrongStatus", {"actual": 2})
    err = errors.decode_revert(selector("InvalidConfig(string)") + encode(["string"], ["epsilon is 0"]))
    assert (err.error, err.args_by_name) == ("InvalidConfig", {"reason": "epsilon is 0"})
    assert errors.decode_revert(selector("CommitmentMismatch()")).error == "CommitmentMismatch"
    assert errors.decode_revert(selector("ZeroAmount()")).args_by_name == {}


def test_decode_builtin_error_and_panic() -> None:
    err = errors.decode_revert(selector("Error(string)") + encode(["string"], ["nope"]))
    assert (err.error, err.args_by_name) == ("Error", {"message": "nope"})
    err = errors.decode_revert(selector("Panic(uint256)") + encode(["uint256"], [0x11]))
    assert (err.error, err.args_by_name) == ("Panic", {"code": 0x11})


@pytest.mark.parametrize("data", [None, b"", "0x", ""])
def test_decode_no_data_is_a_plain_revert(data: bytes | str | None) -> None:
    err = errors.decode_revert(data)
    assert (err.error, err.args_by_name, err.raw) == ("Reverted", {}, b"")


@pytest.mark.parametrize(
    "data",
    [b"\xde\xad\xbe\xef", b"\xde\xad\xbe\xef" + bytes(64), b"\x01\x02", keccak(b"random") * 3],
    ids=["selector", "selector+args", "short", "random"],
)
def test_decode_unknown_data_gracefully(data: bytes) -> None:
    err = errors.decode_revert(data)
    assert err.error == "UnknownError"
    assert err.args_by_name == {"data": data}
    assert err.raw == data
    assert data.hex() in str(err)


@pytest.mark.parametrize(
    "data",
    [
        selector("StakeTooLow(uint256,uint256)") + bytes(10),
        selector("StakeTooLow(uint256,uint256)"),
        selector("InvalidConfig(string)") + encode(["uint256"], [32]),
    ],
    ids=["truncated", "no-args", "bad-pointer"],
)
def test_decode_malformed_arguments_of_a_known_selector_gracefully(data: bytes) -> None:
    """Revert data can carry a known selector with arguments that do not decode (another contract's
    error with the same selector, a node that truncates data). Decoding must still give a ContractRevert
    rather than raise an eth_abi exception from inside the error handler."""
    err = errors.decode_revert(data)
    assert isinstance(err, ContractRevert)
    assert err.raw == data


# ---------------------------------------------------------------------- types against the contract

ROUND_TRIP_CONFIGS = {
    "helpers-default": config(),
    "fedprox": TaskConfig(
        description="CIFAR-10 ✓ Ünïcode — 32x32 RGB",
        worker_reward=12345678901234567890123,
        validator_reward=1,
        target_accuracy=0.875,
        max_rounds=2**32 - 1,
        max_workers=77,
        committee_size=64,
        epsilon=0.000001,
        aggregation=Aggregation.FedProx,
        mu=0.01,
        durations=Durations(recruitment=1, training=2, evaluation=3, reveal=4, idle=5, claim=30 * 86400),
    ),
    "fedavg-defaults": TaskConfig(description="x", worker_reward=0, validator_reward=0, target_accuracy=1.0),
}


@pytest.mark.parametrize("cfg", ROUND_TRIP_CONFIGS.values(), ids=ROUND_TRIP_CONFIGS.keys())
def test_task_config_round_trips_through_the_contract(world: World, cfg: TaskConfig) -> None:
    assert TaskConfig.from_tuple(cfg.as_tuple()) == cfg
    task = Task.deploy(world.chain, world.requester, world.registry.address, cfg)
    assert task.config() == cfg
    assert tuple(task.contract.functions.config().call()) == cfg.as_tuple()


def test_manifest_hashes_and_commitment_match_the_contract(world: World) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=1, n_validators=2)
    start_round(world, task)
    submit_all(task, workers)
    assert task.status() == Status.EVALUATING
    r = task.current_round()
    chain_id = world.chain.w3.eth.chain_id

    # commitmentOf view == types.commitment, for arbitrary inputs
    view = task.contract.functions.commitmentOf
    for round_, who, mhash, salt in [
        (0, validators[0].address, b"\0" * 32, b"\0" * 32),
        (r, validators[1].address, keccak(b"m"), keccak(b"s")),
        (2**32 - 1, world.outsider.address, b"\xff" * 32, b"\x01" * 32),
    ]:
        expected = commitment(chain_id, task.address, round_, who, mhash, salt)
        assert bytes(view(round_, who, mhash, salt).call()) == expected

    # a manifest with long, dynamic handles and extreme values
    manifest = Manifest(
        results_root=keccak(b"root"),
        total_contribution=2**256 - 1,
        payees=2**32 - 1,
        accuracy=987_654,
        model_digest=keccak(b"model"),
        aggregate_handle=handle("aggregate") + b"\x00tail",  # up to 64 bytes are accepted
        details_handle=b"\x00",
    )
    twin = replace(manifest, details_handle=handle("other details"))
    assert twin.vote_key() == manifest.vote_key()
    assert twin.hash() != manifest.hash()

    salts = [keccak(b"salt-0"), keccak(b"salt-1")]
    for v, salt in zip(validators, salts, strict=True):
        c = task.commitment_for(v.address, r, manifest, salt)
        assert c == commitment(chain_id, task.address, r, v.address, manifest.hash(), salt)
        assert bytes(view(r, v.address, manifest.hash(), salt).call()) == c
        task.commit_manifest(v, c)
    assert task.status() == Status.REVEALING

    # the contract hashes the manifest as Manifest.hash() does: handles included
    with pytest.raises(ContractRevert) as exc:
        task.reveal_manifest(validators[0], twin, salts[0])
    assert exc.value.error == "CommitmentMismatch"
    revealed = task.reveal_manifest(validators[0], manifest, salts[0])
    event = revealed.event("ManifestRevealed")
    assert event["voteKey"] == manifest.vote_key()
    assert Manifest.from_tuple(event["manifest"]) == manifest
    assert task.ballot_of(r, validators[0].address) == manifest.vote_key()
    assert task.vote_weight_of(r, manifest.vote_key()) == 1

    task.reveal_manifest(validators[1], manifest, salts[1])
    assert task.round_info(r).consensus_key == manifest.vote_key()
    assert task.revealed_manifests(r) == {v.address: manifest for v in validators}
    assert task.consensus_manifest(r) == manifest
