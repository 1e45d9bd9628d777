"""Compile the Solidity contracts with the pinned solcjs and load their artifacts.

The build output (ABI and bytecode per contract) lives in ``src/refiner/chain/artifacts`` and is not
committed; the wheel ships it as package data. A fingerprint of every input — the sources, the compiler
and library versions, the settings — is stored with it. In a checkout :func:`load_artifact` rebuilds when
the fingerprint no longer matches, so a stale build is never used; an installed package (no contract
sources beside it) loads what it was built with and never compiles.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
#: In a checkout, the project (contracts/, node_modules/); an installed package has none beside it.
PROJECT_ROOT = Path(os.environ.get("REFINER_ROOT", PACKAGE_DIR.parents[2]))
CONTRACTS_DIR = PROJECT_ROOT / "contracts"
NODE_MODULES = PROJECT_ROOT / "node_modules"
#: The build output lives inside the package and ships in the wheel as package data, so an installed
#: Refiner deploys contracts with no compiler and no checkout.
BUILD_DIR = PACKAGE_DIR / "artifacts"
FINGERPRINT_FILE = BUILD_DIR / "fingerprint"

#: Contracts whose artifacts are written (the rest are libraries and interfaces).
DEPLOYABLE = ("RefinerRegistry", "RefinerTask", "RefinerSortition")
#: npm packages whose version is part of the fingerprint.
TOOLCHAIN_PACKAGES = ("solc", "@openzeppelin/contracts", "@chainlink/contracts")

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}

_lock = threading.Lock()


class BuildError(RuntimeError):
    """The contracts could not be compiled (missing toolchain or a compiler error)."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes


def _sources() -> list[Path]:
    return sorted(CONTRACTS_DIR.rglob("*.sol"))


def _package_version(package: str) -> str:
    manifest = NODE_MODULES / package / "package.json"
    if not manifest.exists():
        raise BuildError(
            f"npm package {package!r} is not installed under {NODE_MODULES}; run `make setup` "
            "(it runs `npm ci` from the pinned package-lock.json)"
        )
    return str(json.loads(manifest.read_text())["version"])


def fingerprint() -> str:
    """Hash of everything that determines the build output."""
    h = hashlib.sha256()
    h.update(json.dumps(SETTINGS, sort_keys=True).encode())
    for package in TOOLCHAIN_PACKAGES:
        h.update(f"{package}@{_package_version(package)}\n".encode())
    for path in _sources():
        h.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def is_fresh() -> bool:
    return FINGERPRINT_FILE.exists() and FINGERPRINT_FILE.read_text().strip() == fingerprint()


def compile_contracts() -> dict[str, Artifact]:
    """Run solcjs in standard-JSON mode and write one artifact per deployable contract."""
    solcjs = NODE_MODULES / "solc" / "solc.js"
    if not solcjs.exists():
        raise BuildError(f"solcjs not found at {solcjs}; run `make setup`")
    sources = {
        str(p.relative_to(PROJECT_ROOT)): {"urls": [str(p.relative_to(PROJECT_ROOT))]} for p in _sources()
    }
    request = {"language": "Solidity", "sources": sources, "settings": SETTINGS}
    # solcjs exits before a pipe drains (output cut at 64 KiB); to a file, Node writes synchronously.
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            ["node", str(solcjs), "--standard-json", "--base-path", ".", "--include-path", "node_modules"],
            input=json.dumps(request).encode(),
            stdout=out,
            stderr=subprocess.PIPE,
            cwd=PROJECT_ROOT,
            check=False,
        )
        out.seek(0)
        text = out.read()
    # solcjs may print a notice line before the JSON document.
    start = text.find("{")
    if proc.returncode != 0 or start < 0:
        raise BuildError(f"solcjs failed (exit {proc.returncode}): {proc.stderr.decode() or text}")
    output = json.loads(text[start:])
    errors = [e for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise BuildError("\n".join(e["formattedMessage"] for e in errors))
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    artifacts: dict[str, Artifact] = {}
    for unit in output["contracts"].values():
        for name, contract in unit.items():
            if name not in DEPLOYABLE:
                continue
            record = {
                "contractName": name,
                "abi": contract["abi"],
                "bytecode": contract["evm"]["bytecode"]["object"],
                "deployedBytecode": contract["evm"]["deployedBytecode"]["object"],
            }
            (BUILD_DIR / f"{name}.json").write_text(json.dumps(record))
            artifacts[name] = _from_record(record)
    missing = set(DEPLOYABLE) - set(artifacts)
    if missing:
        raise BuildError(f"compiler output lacks {sorted(missing)}")
    FINGERPRINT_FILE.write_text(fingerprint())
    return artifacts


def _from_record(record: dict[str, Any]) -> Artifact:
    return Artifact(
        name=record["contractName"],
        abi=record["abi"],
        bytecode=bytes.fromhex(record["bytecode"]),
        deployed_bytecode=bytes.fromhex(record["deployedBytecode"]),
    )


def is_checkout() -> bool:
    """Whether the contract sources are here to build from (a development checkout)."""
    return (CONTRACTS_DIR / "RefinerTask.sol").is_file()


def ensure_built() -> str:
    """In a checkout, compile unless the build output matches the current sources and toolchain; in an
    installed package, use the packaged build. Returns the fingerprint of the build in use."""
    with _lock:
        if not is_checkout():
            if not FINGERPRINT_FILE.is_file():
                raise BuildError(
                    f"this Refiner has no compiled contracts in {BUILD_DIR} and no sources to build them "
                    "from: install a wheel built with `make wheel`"
                )
            return FINGERPRINT_FILE.read_text().strip()
        if not is_fresh():
            compile_contracts()
        return FINGERPRINT_FILE.read_text().strip()


@cache
def _load(name: str, build_fingerprint: str) -> Artifact:
    # keyed on the fingerprint, so a build rewritten elsewhere (make, another process) is never served stale
    path = BUILD_DIR / f"{name}.json"
    return _from_record(json.loads(path.read_text()))


def load_artifact(name: str) -> Artifact:
    """The compiled contract `name`, rebuilt first if any input changed since the last build."""
    if name not in DEPLOYABLE:
        raise KeyError(f"unknown contract {name!r}; known: {', '.join(DEPLOYABLE)}")
    return _load(name, ensure_built())


def main() -> int:
    fresh = is_fresh()
    if not fresh:
        compile_contracts()
    print(f"contracts: {'up to date' if fresh else 'compiled'} in {BUILD_DIR.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
