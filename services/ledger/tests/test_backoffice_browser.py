"""The back-office in real headless Chromium (Debian's ``chromium``, driven by Playwright),
JavaScript OFF (every page must work without it), against the app ``ledger serve`` runs
(``create_app``: the API with the back-office mounted at /admin) on a real uvicorn server.

Screenshots go to ``test-artifacts/screenshots/`` (gitignored). Without chromium these tests
fail in CI (``CI`` set) and are skipped loudly elsewhere (and named in the terminal summary).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from api_support import served_app
from backoffice_support import (
    BROWSER_SKIP_REASON,
    CHROMIUM_INSTALL_HINT,
    IMPORT_CSV,
    PASSWORD,
    TENANT,
    Seeded,
    make_operators,
    seed,
)
from ledger.domain.models import NewTransfer
from ledger.service import SyncLedger

from stalwart.storage import open_store

CHROMIUM: Final = shutil.which("chromium")
SCREENSHOTS: Final = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.usefixtures("cheap_password_hashes")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail(f"chromium is missing in CI: {CHROMIUM_INSTALL_HINT}")
        pytest.skip(BROWSER_SKIP_REASON)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only with chromium

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('backoffice')}/ledger.db"


class DailyClock:
    """Epoch seconds starting 20 days ago, a day and a bit later at each reading: a history
    for the charts."""

    def __init__(self) -> None:
        self.now = time.time() - 20 * 86_400

    def __call__(self) -> float:
        self.now += 86_400 * 0.7
        return self.now


def some_history(ledger: SyncLedger, seeded: Seeded) -> None:
    """Alice pays Bob now and then, and gets paid again: a balance that moves."""
    moves = [(seeded.alice, seeded.bob, 4_000), (seeded.cash, seeded.alice, 12_000)] * 3
    moves += [(seeded.alice, seeded.bob, 9_950), (seeded.alice, seeded.cash, 2_500)]
    for n, (debit, credit, amount) in enumerate(moves):
        new = NewTransfer(
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=amount,
            currency="USD",
            external_id=f"history-{n}",
        )
        ledger.create_transfer(TENANT, new, idempotency_key=f"history-{n}")


@pytest.fixture(scope="module")
def seeded(store_url: str, cheap_password_hashes: None) -> Iterator[Seeded]:
    with open_store(store_url) as store:
        make_operators(store)
        ledger = SyncLedger(store, clock=DailyClock())
        seeded = seed(ledger)
        some_history(ledger, seeded)
        yield seeded


@pytest.fixture(scope="module")
def ledger(store_url: str) -> Iterator[SyncLedger]:
    with open_store(store_url) as store:
        yield SyncLedger(store)


@pytest.fixture(scope="module")
def admin(
    store_url: str, seeded: Seeded, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    imports = tmp_path_factory.mktemp("imports")
    with served_app(store_url, expire_interval_s=0, import_dir=imports) as base:
        yield f"{base}/admin"


@pytest.fixture
def page(browser: Any, admin: str) -> Iterator[Any]:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1100, "height": 800}
    )
    context.set_default_timeout(30_000)  # a loaded CI machine: the first report imports pandas
    opened = context.new_page()
    yield opened
    context.close()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, admin: str, username: str = "olivia") -> None:
    page.goto(f"{admin}/accounts")
    assert "/admin/login" in page.url  # sent to the login page first
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    assert page.url.startswith(f"{admin}/accounts")  # and back where it was going


def test_sign_in_search_and_see_an_account_with_its_chart(page, admin, seeded, ledger):
    page.goto(f"{admin}/login")
    shot(page, "login")
    sign_in(page, admin)
    assert page.locator("table tbody tr").count() == 3
    shot(page, "accounts")
    page.fill("input[name=q]", "alice")
    page.click("form.search button")
    assert page.locator("table tbody tr").count() == 1
    with page.expect_response(lambda response: response.url.endswith("/chart.svg")) as chart:
        page.click("text=Alice wallet")
    assert chart.value.status == 200
    assert chart.value.headers["content-type"].startswith("image/svg+xml")
    page.wait_for_load_state("load")  # the chart image is drawn before the screenshot
    assert page.locator("h1").inner_text().startswith("Alice wallet")
    available = ledger.get_balance(TENANT, seeded.alice.id).available
    assert f"{available / 100:.2f}" in page.locator(".balances").inner_text()
    assert page.locator("img.chart").is_visible()
    shot(page, "account")


def test_an_operator_posts_a_pending_transfer(page, admin, seeded, ledger):
    sign_in(page, admin)
    page.goto(f"{admin}/transfers?status=pending")
    shot(page, "transfers")
    page.click(f"text={seeded.pending.id[:8]}")
    assert page.locator("h1 .tag").inner_text() == "pending"
    shot(page, "transfer-pending")
    page.click("button[value=post]")
    assert page.locator("h1 .tag").inner_text() == "posted"
    assert "Transfer posted." in page.locator(".flash").inner_text()
    assert ledger.get_transfer(TENANT, seeded.pending.id).status == "posted"


def test_a_double_clicked_adjustment_posts_exactly_once(page, admin, seeded, ledger, monkeypatch):
    # A slow ledger (as under load): the first POST is answered only once the second one has
    # reached the server (or after 5 s), so the second click always lands while the first is
    # in flight, as a real double click on a busy system -- however slow this machine is.
    calls: list[bool] = []
    arrived, arrival = [threading.Event(), threading.Event()], threading.Lock()
    create_transfer = SyncLedger.create_transfer

    def slow_create_transfer(self: SyncLedger, *args: Any, **kwargs: Any) -> Any:
        with arrival:
            first = not arrived[0].is_set()
            arrived[0 if first else 1].set()
        if first:
            arrived[1].wait(timeout=5)
        made = create_transfer(self, *args, **kwargs)
        calls.append(made[1])  # replayed?
        return made

    monkeypatch.setattr(SyncLedger, "create_transfer", slow_create_transfer)
    sign_in(page, admin)
    page.click("nav >> text=Adjustment")
    page.fill("input[name=debit]", "cash")
    page.fill("input[name=credit]", "wallet-bob")
    page.fill("input[name=amount]", "42.00")
    page.fill("textarea[name=reason]", "refund of a double charge")
    shot(page, "adjustment")
    posts: list[str] = []
    page.on(
        "request",
        lambda request: posts.append(request.url) if request.method == "POST" else None,
    )
    # A person's double click: two clicks 150 ms apart, the second with click count 2 (a
    # dblclick event). Playwright's dblclick() clicks twice in one task, before the browser
    # has even started the first submission, so the browser sends only one request.
    box = page.locator("main button[type=submit]").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    page.wait_for_timeout(150)
    page.mouse.click(x, y, click_count=2)
    # The second submission aborts the first one's navigation (as in a real browser), which
    # wait_for_url reports as an error: wait for the page the second one lands on instead.
    page.wait_for_selector("dl.facts", timeout=15_000)
    assert "/admin/transfers/" in page.url
    assert "42.00 USD" in page.locator("dl.facts").inner_text()
    # The answer shown: one flash, or two when the aborted first submission's flash is still
    # in the session and the second's page shows both ("posted" and "posted (once)").
    flashes = page.locator(".flash").all_inner_texts()
    assert flashes, "no flash message"
    assert all("Adjustment posted" in flash for flash in flashes), flashes
    shot(page, "adjustment-posted")
    to_bob = ledger.list_transfers(TENANT, account_id=seeded.bob.id, limit=100).data
    adjustments = [t for t in to_bob if t.metadata.get("reason") == "refund of a double charge"]
    assert len(adjustments) == 1
    assert adjustments[0].amount == 4200
    # The browser really submitted more than once: twice, or three times when both clicks of
    # the double click land before the first navigation (seen on a loaded machine).
    assert len(posts) >= 2, posts
    assert set(posts) == {f"{admin}/adjustments"}, posts
    # One request created the transfer; every other one found it (replayed).
    assert len(calls) >= 2, calls
    assert sorted(calls) == [False] + [True] * (len(calls) - 1), calls


def test_upload_an_import_and_download_its_rejects(page, admin, seeded, tmp_path):
    sign_in(page, admin)
    page.click("nav >> text=Import")
    upload = tmp_path / "april.csv"
    upload.write_text(IMPORT_CSV)
    page.set_input_files("input[type=file]", str(upload))
    page.select_option("select[name=kind]", "transfers")
    page.click("main button[type=submit]")
    # The progress page refreshes itself (a meta refresh: no JavaScript) until the job is done.
    page.wait_for_selector("h1 .tag.done", timeout=15_000)
    summary = page.locator(".balances").inner_text()
    assert "Posted\n3" in summary
    assert "Rejected\n2" in summary
    shot(page, "import-done")
    with page.expect_download() as download:
        page.click("text=Download the rejects file")
    saved = tmp_path / "rejects.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "april.rejects.csv"
    rows = saved.read_text().splitlines()
    assert rows[0].startswith("row,column,reason")
    assert [row.split(",")[:2] for row in rows[1:]] == [["2", "amount"], ["3", "credit_account"]]
    page.click("text=Imports")
    assert page.locator("table tbody tr").count() == 1
    shot(page, "imports")


def test_a_viewer_builds_a_report_with_its_chart(page, admin, seeded):
    sign_in(page, admin, "victor")
    assert page.locator("nav >> text=Adjustment").count() == 0  # a viewer's menu
    page.click("nav >> text=Reports")
    today = datetime.now(UTC).date()
    page.fill("input[name=start]", str(today - timedelta(days=30)))
    page.fill("input[name=end]", str(today + timedelta(days=30)))
    page.click("main button[type=submit]")
    chart = page.locator("img.chart")
    assert chart.get_attribute("src").startswith("data:image/svg+xml;base64,")
    assert page.locator("h2", has_text="Trial balance").is_visible()
    assert page.locator("table").count() == 3
    shot(page, "reports")
