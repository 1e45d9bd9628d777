"""The web interface in a real browser (Debian's Chromium driven by Playwright): a complete manual round
clicked through the panels, as in the paper's demonstration, and a screenshot of every panel.

The screenshots go to the test's tmp dir; with REFINER_SCREENSHOTS=1 also to docs/screenshots/ (the
README shows them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (make test installs it)"
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[dev]')")
expect = sync_api.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    from refiner.web.api import create_app
    from refiner.web.host import Host

    host = Host.build_demo(tmp_path_factory.mktemp("serve"), workers=3, validators=4, shard=600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(host), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="uvicorn", daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        time.sleep(0.05)
    assert uv.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server)
            expect(page.locator("#status")).to_have_attribute("data-state", "ok")
            yield page
            assert not errors, f"JavaScript errors: {errors}"
        finally:
            browser.close()


def accounts(server: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{server}/api/session") as r:
        return {a["label"]: a["address"] for a in json.load(r)["accounts"]}


def act(page: Any, selector: str, says: str | re.Pattern[str]) -> str:
    """Click, wait for the action's message on the status line, check it succeeded and says `says`."""
    status = page.locator("#status")
    before = int(status.get_attribute("data-seq") or 0)
    page.click(selector)
    page.wait_for_function(f"+document.querySelector('#status').dataset.seq > {before}")
    text: str = status.get_attribute("data-message")
    assert status.get_attribute("data-outcome") == "ok", text
    assert re.search(says, text) if isinstance(says, re.Pattern) else says in text, text
    return text


def shoot(page: Any, panel: str, name: str, artifacts: Path) -> None:
    # the sticky header would cover the top of a panel that is scrolled to
    page.add_style_tag(content=".sticky { position: static !important; }")
    page.wait_for_timeout(400)  # let Chart.js finish its animation
    path = artifacts / f"{name}.png"
    page.locator(f"#panel-{panel}").screenshot(path=str(path), animations="disabled")
    if os.environ.get("REFINER_SCREENSHOTS"):  # refresh the README's pictures only when asked
        shutil.copy(path, SCREENSHOTS / path.name)


def test_a_manual_round_in_the_browser(server: str, page: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    who = accounts(server)
    validators = [label for label in who if label.startswith("validator")]

    def login(label: str) -> None:
        page.select_option("#account", who[label])
        page.wait_for_selector(f"body[data-account='{who[label]}']", state="attached")

    # 1. the requester configures a task; a bad setting is refused next to the form
    login("requester")
    expect(page.locator("#panel-config")).to_be_visible()
    expect(page.locator("#panel-board")).to_be_hidden()
    page.select_option("#cfg-model", "logistic")  # the same panels as small_cnn, a quicker round
    hint = page.locator("#budget-hint")  # the defaults add up
    expect(hint).to_have_text("3 rounds × 1.4 ETH = 4.2 ETH: the budget pays for every round.")
    # τ = 8 expected seats of the 4 validators' 70 stake units: nobody seated has odds e^-8
    form = {"max_workers": "2", "committee_size": "8", "max_rounds": "2", "epsilon": "0"}
    for field, value in form.items():
        page.fill(f"#cfg-{field}", value)
    page.fill("#cfg-budget", "2 ether")
    expect(hint).to_contain_text("2 rounds × 1.4 ETH = 2.8 ETH, more than the budget: it pays for 1 round;")
    expect(hint).to_have_class(re.compile("warn"))
    page.fill("#cfg-budget", "2.8 ether")
    expect(hint).to_have_text("2 rounds × 1.4 ETH = 2.8 ETH: the budget pays for every round.")
    page.click("#create-task")
    expect(page.locator("#config-errors")).to_contain_text("epsilon")
    expect(page.locator("#cfg-epsilon")).to_have_class(re.compile("invalid"))
    expect(page.locator("#status")).to_have_attribute("data-outcome", "error")
    page.fill("#cfg-epsilon", "1.5")
    act(page, "#create-task", "created")
    expect(page.locator("#config-errors")).to_be_hidden()
    shoot(page, "config", "task-configuration", tmp_path)

    # 2. recruitment: two workers sign up on the task board, validators draw their seats
    expect(page.locator("[data-testid=manage-status]")).to_have_text("PENDING")
    act(page, "#btn-open", "recruitment opened")
    for worker in ("worker 1", "worker 2"):
        login(worker)
        expect(page.locator("#panel-config")).to_be_hidden()
        act(page, "#board-table button[data-signup]", f"{worker} signed up")
    expect(page.locator("#board-table")).to_contain_text("0 of 2")
    expect(page.locator("#my-tasks li")).to_have_count(1)
    shoot(page, "board", "task-board", tmp_path)
    seated = []
    for validator in validators:
        login(validator)
        expect(page.locator("#panel-training")).to_be_hidden()
        text = act(page, "#btn-claim-seat", re.compile("seat|not selected"))
        if "won" in text:
            seated.append(validator)
    assert seated, "the sortition seated nobody (unlikely with τ = 8: rerun)"

    # 3. the requester closes recruitment and starts round 1
    login("requester")
    act(page, "#btn-close", "recruitment closed: 2 workers")
    act(page, "#btn-start", "round 1 started")
    expect(page.locator("[data-testid=manage-status]")).to_have_text("TRAINING")

    # 4. worker 1 trains on the good dataset, worker 2 on the shuffled labels
    for worker, dataset in (("worker 1", "good"), ("worker 2", "bad")):
        login(worker)
        page.check(f"#dataset-{dataset}")
        act(page, "#train-table button[data-train]", f"training on the {dataset} dataset")
    for worker in ("worker 2", "worker 1"):
        login(worker)
        expect(page.locator("#train-job")).to_be_visible()
        expect(page.locator("#train-message")).to_contain_text("submitted round 1", timeout=60_000)
        expect(page.locator("#train-progress")).to_have_attribute("value", "1")

    # 5. every seated validator evaluates (in parallel; the bad worker is not qualified), commits, reveals
    for validator in seated:
        login(validator)
        expect(page.locator("#btn-evaluate")).to_be_enabled()
        act(page, "#btn-evaluate", "evaluating every update")
    for validator in seated:
        login(validator)
        expect(page.locator("#eval-job")).to_be_visible()
        expect(page.locator("#eval-message")).to_contain_text("evaluated the 2 updates", timeout=90_000)
        table = page.locator("#eval-table")
        expect(table.locator(f"tr[data-worker='{who['worker 1']}'] .verdict")).to_have_text("✓ qualified")
        expect(table.locator(f"tr[data-worker='{who['worker 2']}'] .verdict")).to_have_text("✗ not qualified")
        expect(page.locator("#eval-accuracy")).to_contain_text("validation accuracy")
        act(page, "#btn-commit", "committed its manifest")
    for validator in seated:
        login(validator)
        act(page, "#btn-reveal", "revealed its manifest")

    # 6. the requester settles the round: the learning curve and the results show it
    login("requester")
    expect(page.locator("[data-testid=manage-status]")).to_have_text("REWARDING")
    act(page, "#btn-finalize", "round settled")
    expect(page.locator("[data-testid=manage-status]")).to_have_text("PENDING")
    expect(page.locator("#btn-download")).not_to_have_class(re.compile("disabled"))
    shoot(page, "manage", "task-management", tmp_path)

    # 7. the good worker claims its reward; a seated validator claims its own
    login("worker 1")
    claims = page.locator("#worker-claims")
    expect(claims).to_contain_text("accepted ✓")
    text = act(page, "#worker-claims button[data-claim='1']", "worker 1 received")
    assert float(re.search(r"received ([\d.]+) ETH", text)[1]) > 0  # type: ignore[index]
    expect(claims.locator("[data-testid=paid]")).to_contain_text("ETH")
    expect(page.locator("#worker-rewards")).to_contain_text("round 1")
    shoot(page, "training", "training", tmp_path)
    login(seated[0])
    act(page, "#validator-claims button[data-claim='1']", f"{seated[0]} received")
    expect(page.locator("#validator-rewards")).to_contain_text("round 1")
    shoot(page, "eval", "evaluation", tmp_path)

    # 8. results: worker 1 accepted and paid, worker 2 rejected, every seated validator agreeing
    login("requester")
    row = page.locator("#results-table tr[data-round='1']")
    expect(row).to_contain_text("✓")
    expect(row.locator("td").nth(3)).to_contain_text("worker 1")
    expect(row.locator("td").nth(4)).to_contain_text("worker 2")
    for validator in seated:
        expect(row.locator("td").nth(5)).to_contain_text(validator)
    assert int(row.locator("td").nth(7).inner_text().replace(",", "")) > 0  # gas
    paid = page.locator("#results-workers tr", has_text="worker 1").locator("td").nth(4)
    expect(paid).to_have_text(re.compile(r"^[\d.]+ ETH$"))
    expect(page.locator("#results-workers tr", has_text="worker 2")).to_contain_text("rejected")
    shoot(page, "results", "results", tmp_path)

    # 9. try the model: a digit drawn with the mouse, then an MNIST test image
    canvas = page.locator("#draw")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x, y = box["x"], box["y"]
    page.mouse.move(x + 80, y + 60)
    page.mouse.down()
    page.mouse.move(x + 200, y + 60, steps=12)
    page.mouse.move(x + 120, y + 230, steps=16)
    page.mouse.up()
    act(page, "#btn-predict", "the model reads a")
    expect(page.locator("#prediction")).to_have_text(re.compile(r"^\d$"))
    page.fill("#mnist-index", "0")
    act(page, "#btn-mnist", "MNIST test image 0 (label 7)")
    act(page, "#btn-predict", "the model reads a 7")
    expect(page.locator("#prediction")).to_have_text("7")
    expect(page.locator("#prediction-source")).to_contain_text("after round 1")
    shoot(page, "try", "try-the-model", tmp_path)
    print(f"browser round: {time.monotonic() - started:.1f} s")


def test_the_next_step_bar_leads_a_round_in_a_few_clicks(server: str, page: Any) -> None:
    """The bar names who acts next; "Do it" takes the step for every hosted account it is due for. A
    button that is out of turn is disabled and says why."""
    who = accounts(server)

    def login(label: str) -> None:
        page.select_option("#account", who[label])
        page.wait_for_selector(f"body[data-account='{who[label]}']", state="attached")

    login("requester")
    form = {"max_workers": "2", "committee_size": "8", "max_rounds": "1", "epsilon": "1.5"}
    for field, value in {**form, "budget": "1.4 ether"}.items():
        page.fill(f"#cfg-{field}", value)
    page.select_option("#cfg-model", "logistic")
    act(page, "#create-task", "created")
    bar, do = page.locator("#next-text"), page.locator("#next-do")
    expect(bar).to_have_text("next: open recruitment")
    expect(page.locator("#btn-open")).to_have_class(re.compile(r"\bnext\b"))  # the button to press
    expect(page.locator("#btn-close")).to_be_disabled()
    expect(page.locator("#btn-close")).to_have_attribute("title", re.compile("while RECRUITING"))
    act(page, "#next-do", "recruitment opened")
    expect(bar).to_have_text("next: switch to worker 1 and sign up")
    expect(do).to_have_text("Do it for 2 workers")  # as many as the task takes
    login("worker 2")
    page.check("#dataset-bad")  # worker 2 will train on its shuffled labels
    login("requester")

    clicks, seen, checked = 1, [], False
    for _ in range(40):
        if not page.locator("#next").is_visible():
            page.wait_for_timeout(500)
            if not page.locator("#next").is_visible():
                break
        text = bar.inner_text()
        seen.append(text)
        if "evaluate the updates" in text and not checked:  # committing first is refused, with the reason
            page.click("#next-switch")
            page.wait_for_function(
                "document.body.dataset.account === document.querySelector('#account').value"
            )
            expect(page.locator("#btn-commit")).to_be_disabled()
            expect(page.locator("#btn-commit")).to_have_attribute("title", re.compile("evaluate first"))
            checked = True
        expect(do).to_be_enabled(timeout=120_000)  # the jobs under way finish first
        if bar.inner_text() != text:
            continue
        act(page, "#next-do", re.compile("."))
        clicks += 1
    assert page.locator("[data-testid=manage-status]").inner_text() == "TERMINATED", seen
    assert checked and any("reveal" in s for s in seen) and any("claim the reward" in s for s in seen), seen
    assert clicks <= 12, (clicks, seen)  # by hand: ~46 clicks and 30 account switches
    print(f"next-step round: {clicks} clicks, no account switch needed: {seen}")
    login("worker 2")  # the shuffled worker's claim is greyed out, with the reason
    claim = page.locator("#worker-claims button[data-claim='1']")
    expect(claim).to_be_disabled()
    expect(claim).to_have_attribute("title", re.compile("earns nothing"))


def test_every_panel_fits_a_phone_s_width(server: str, page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    who = accounts(server)
    for label in ("requester", "worker 1", "validator 1"):
        page.select_option("#account", who[label])
        page.wait_for_selector(f"body[data-account='{who[label]}']", state="attached")
        try:  # charts drawn at the old width follow the new one after a moment
            page.wait_for_function("document.documentElement.scrollWidth <= 390", timeout=5_000)
        except sync_api.TimeoutError:
            wide = page.evaluate("document.documentElement.scrollWidth")
            raise AssertionError(f"{label}: the page is {wide} px wide at 390 px") from None
    # the learning curve starts at round 0, the initial model, with one tick per round
    labels = page.evaluate("Chart.getChart(document.querySelector('#curve-chart'))?.data.labels ?? []")
    assert not labels or labels[0] == "0", labels
