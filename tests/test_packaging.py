"""The wheel installs and runs outside the checkout: contracts and web assets ship as package data."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from refiner.chain import build

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, site: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("REFINER_ROOT", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)  # before the checkout's editable install on sys.path
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_wheel_runs_the_demo_outside_the_checkout(tmp_path: Path) -> None:
    build.ensure_built()
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, ROOT], check=True, timeout=300
    )
    (wheel,) = dist.glob("refiner-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        packaged = z.read("refiner/chain/artifacts/fingerprint").decode().strip()
    assert {f"refiner/chain/artifacts/{n}.json" for n in build.DEPLOYABLE} <= names
    web = (
        "static/index.html",
        "static/favicon.svg",
        "vendor/chart.umd.min.js",
        "vendor/swagger-ui-bundle.js",
    )
    assert {f"refiner/web/{n}" for n in (*web, "vendor/swagger-ui.css")} <= names
    assert packaged == build.fingerprint()  # the packaged contracts are those of the sources
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True, timeout=300)

    where = _run(
        ["-c", "import refiner, refiner.web.api as a; print(refiner.__file__, a.VENDOR)"], elsewhere, site
    )
    module, vendor = where.split()
    assert Path(module).is_relative_to(site) and (Path(vendor) / "chart.umd.min.js").is_file()
    assert _run(["-m", "refiner", "--version"], elsewhere, site).strip() == "refiner 0.1.0"
    small = ["--rounds", "1", "--workers", "3", "--validators", "4", "--committee", "4", "--malicious", "0"]
    out = _run(
        ["-m", "refiner", "demo", *small, "--model", "logistic", "--epochs", "1", "--out", "run"],
        elsewhere,
        site,
    )
    assert "Ether conserved exactly" in out and (elsewhere / "run" / "final_model.safetensors").is_file()
