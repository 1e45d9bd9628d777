"""Slither over contracts/: no High or Medium finding that is not accepted, with its reason, in
tools/slither-triage.json.

Slither (and crytic-compile) live in their own venv, build/slither-venv, made by `make test`: the
slither-analyzer releases require web3<8 and the project pins web3 8. They compile through tools/solc, a
`solc` command line backed by the pinned solcjs with build.py's settings (slither.config.json); nothing is
downloaded (no solc-select).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLITHER = ROOT / "build" / "slither-venv" / "bin" / "slither"
WRAPPER = ROOT / "tools" / "solc"
TRIAGE = ROOT / "tools" / "slither-triage.json"
GATED = ("High", "Medium")
#: a source reference in a finding's description: " (contracts/RefinerTask.sol#476-515)"
LOCATION = re.compile(r" \([^()\s]+#\d+(?:-\d+)?\)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SLITHER.exists(),
        reason="Slither is not installed in build/slither-venv (`make test` installs it)",
    ),
]


def _stable(description: str) -> str:
    """A finding's description without line numbers, which every unrelated edit shifts."""
    return LOCATION.sub("", description)


def _matches(entry: dict[str, str], finding: dict[str, Any]) -> bool:
    text = _stable(finding["description"])
    return finding["check"] == entry["check"] and entry["where"] in text and entry["what"] in text


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Slither's gated (High, Medium) findings on contracts/, dependencies under node_modules filtered."""
    out = tmp_path_factory.mktemp("slither") / "slither.json"
    proc = subprocess.run(
        [
            str(SLITHER),
            "contracts",
            "--config-file",
            "slither.config.json",
            "--exclude-low",
            "--exclude-informational",
            "--exclude-optimization",
            "--fail-none",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        # solc-select (imported by crytic-compile) makes its artifacts folder under VIRTUAL_ENV, else in ~
        env={**os.environ, "VIRTUAL_ENV": str(SLITHER.parents[1])},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(out.read_text()) if out.exists() else {}
    if proc.returncode != 0 or not report.get("success"):
        pytest.fail(f"slither failed (exit {proc.returncode}): {report.get('error')}\n{proc.stderr[-4000:]}")
    results: list[dict[str, Any]] = report.get("results", {}).get("detectors", [])
    return [f for f in results if f["impact"] in GATED]


@pytest.fixture(scope="module")
def accepted() -> list[dict[str, str]]:
    entries: list[dict[str, str]] = json.loads(TRIAGE.read_text())["accepted"]
    for entry in entries:
        assert {"check", "where", "what", "why"} <= entry.keys(), entry
        assert len(entry["why"]) > 40, f"accepted without a real reason: {entry}"
    return entries


def test_no_unexplained_high_or_medium_finding(
    findings: list[dict[str, Any]], accepted: list[dict[str, str]]
) -> None:
    unexplained = [f for f in findings if not any(_matches(e, f) for e in accepted)]
    listing = "\n\n".join(
        f"[{f['impact']}/{f['confidence']}] {f['check']}\n{f['description'].strip()}" for f in unexplained
    )
    assert not unexplained, (
        f"{len(unexplained)} High/Medium Slither finding(s) neither fixed nor accepted in "
        f"{TRIAGE.relative_to(ROOT)}:\n\n{listing}"
    )


def test_every_accepted_finding_still_exists(
    findings: list[dict[str, Any]], accepted: list[dict[str, str]]
) -> None:
    stale = [e for e in accepted if not any(_matches(e, f) for f in findings)]
    assert not stale, f"remove from {TRIAGE.relative_to(ROOT)} (no such finding any more): " + json.dumps(
        [{k: e[k] for k in ("check", "where", "what")} for e in stale], indent=1
    )


def test_wrapper_answers_like_solc() -> None:
    """crytic-compile's other route (`slither FILE.sol`): `solc --version` and `--combined-json`."""
    version = json.loads((ROOT / "node_modules" / "solc" / "package.json").read_text())["version"]
    proc = subprocess.run([str(WRAPPER), "--version"], capture_output=True, text=True, check=True)
    assert f"Version: {version}+commit." in proc.stdout
    fields = "abi,ast,bin,bin-runtime,srcmap,srcmap-runtime,userdoc,devdoc,hashes"
    proc = subprocess.run(
        [str(WRAPPER), "contracts/TaskTypes.sol", "--combined-json", fields, "--allow-paths", ".,contracts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    combined = json.loads(proc.stdout)
    assert combined["sources"]["contracts/TaskTypes.sol"]["AST"]["nodeType"] == "SourceUnit"
    library = combined["contracts"]["contracts/TaskTypes.sol:TaskTypes"]
    assert set(library) == set(fields.split(",")) - {"ast"}
    assert isinstance(library["abi"], list) and library["bin"] and library["srcmap-runtime"]
