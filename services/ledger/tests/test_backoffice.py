"""The back-office through Flask's test client, CSRF on: login, lockout, roles, CSRF, every
page, the idempotent adjustment, friendly error pages. SQLite file store (as ``ledger serve``)."""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from backoffice_support import (
    IMPORT_CSV,
    KEY_FIELD,
    PASSWORD,
    TENANT,
    csrf_token,
    make_operators,
    seed,
)
from flask import Flask
from flask.testing import FlaskClient
from ledger.backoffice.factory import create_backoffice
from ledger.backoffice.operators import LoginRefused, Role, create_operator, log_in
from ledger.service import SyncLedger
from ledger.settings import LedgerSettings
from werkzeug.test import TestResponse

from stalwart.storage import Store, open_store

pytestmark = pytest.mark.usefixtures("cheap_password_hashes")


@pytest.fixture
def store(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/ledger.db") as opened:
        make_operators(opened)
        yield opened


@pytest.fixture
def ledger(store):
    return SyncLedger(store)


@pytest.fixture
def seeded(ledger):
    return seed(ledger)


def make_app(store: Store, **settings: object) -> Flask:
    config = LedgerSettings(_env_file=None, store_url="sqlite:///unused.db", **settings)
    return create_backoffice(config, store=store)


@pytest.fixture
def app(store):
    return make_app(store)


def login_response(client: FlaskClient, username: str, password: str = PASSWORD) -> TestResponse:
    token = csrf_token(client.get("/login").text)
    form = {"username": username, "password": password, "csrf_token": token}
    return client.post("/login", data=form)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> int:
    return login_response(client, username, password).status_code


@pytest.fixture
def operator(app):
    client = app.test_client()
    assert login(client, "olivia") == 302
    return client


@pytest.fixture
def viewer(app):
    client = app.test_client()
    assert login(client, "victor") == 302
    return client


# -- login, sessions, CSRF -------------------------------------------------------------------


def test_pages_need_a_login(app):
    client = app.test_client()
    response = client.get("/accounts?q=x")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/accounts")
    assert "Sign in" in client.get("/login").text


def test_login_goes_back_only_to_a_page_of_the_backoffice(app):
    for target, landing in (
        ("/transfers?status=pending", "/transfers?status=pending"),
        ("https://evil.example/", "/accounts"),
        ("//evil.example/", "/accounts"),
    ):
        client = app.test_client()
        token = csrf_token(client.get("/login").text)
        form = {"username": "olivia", "password": PASSWORD, "csrf_token": token, "next": target}
        assert client.post("/login", data=form).headers["Location"] == landing


def test_login_sets_a_secure_session_cookie_and_logout_ends_it(store):
    fresh = make_app(store, host="10.0.0.5").test_client()
    response = login_response(fresh, "olivia")
    assert response.status_code == 302
    set_cookie = response.headers["Set-Cookie"]
    assert "ledger_backoffice=" in set_cookie
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert "Secure" in set_cookie  # not served on loopback
    assert fresh.get("/accounts").status_code == 200
    token = csrf_token(fresh.get("/accounts").text)
    assert fresh.post("/logout", data={"csrf_token": token}).status_code == 302
    assert fresh.get("/accounts").status_code == 302  # back to the login page


def test_the_session_cookie_is_not_secure_on_loopback_unless_asked(store):
    for settings, secure in (({}, False), ({"session_cookie_secure": True}, True)):
        client = make_app(store, **settings).test_client()
        set_cookie = login_response(client, "olivia").headers["Set-Cookie"]
        assert ("Secure" in set_cookie) is secure


def test_wrong_password_and_unknown_user_get_the_same_answer(app):
    client = app.test_client()
    for username, password in (("olivia", "not it"), ("nobody", PASSWORD), ("Bad Name!", "x")):
        refused = login_response(client, username, password)
        assert refused.status_code == 401
        assert "Wrong username or password." in refused.text
    assert client.get("/accounts").status_code == 302


def test_a_form_without_its_csrf_token_is_refused_with_a_friendly_page(app, operator, seeded):
    response = app.test_client().post("/login", data={"username": "olivia", "password": PASSWORD})
    assert response.status_code == 400
    assert "The form expired" in response.text
    assert "<html" in response.text
    forged = operator.post(f"/transfers/{seeded.pending.id}/void", data={})
    assert forged.status_code == 400
    assert "The form expired" in forged.text
    assert operator.get(f"/transfers/{seeded.pending.id}").text.count(">pending<") == 1


def test_five_failures_lock_the_username_even_for_the_right_password(store):
    app = make_app(store, lockout_minutes=0.025)  # 1.5 s
    client = app.test_client()
    statuses = [login(client, "olivia", f"guess {n}") for n in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    locked = login_response(client, "olivia")  # the right password, refused while locked
    assert locked.status_code == 429
    assert "this username is locked" in locked.text
    assert login(client, "victor") == 302  # another username is not locked
    time.sleep(1.7)  # the lockout passes
    assert login(client, "olivia") == 302


def test_the_failure_counter_is_atomic_under_parallel_guesses(store):
    # 12 parallel wrong guesses on 4 threads: the counter is incremented before the password
    # is checked, so exactly 4 are checked and refused as wrong, then the 5th locks; a lost
    # update would let more than 4 through to the password check.
    def guess(n: int) -> str:
        try:
            log_in(store, "olivia", f"guess {n}", max_failures=5, lockout_s=60)
        except LoginRefused as refused:
            return "locked" if refused.locked else "wrong"
        return "in"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(guess, range(12)))
    assert outcomes.count("wrong") == 4
    assert outcomes.count("locked") == 8
    with pytest.raises(LoginRefused):
        log_in(store, "olivia", PASSWORD, max_failures=5, lockout_s=60)


def test_a_success_resets_the_failure_count(store):
    for _ in range(4):
        with pytest.raises(LoginRefused):
            log_in(store, "olivia", "wrong", max_failures=5, lockout_s=60)
    assert log_in(store, "olivia", PASSWORD, max_failures=5, lockout_s=60).role is Role.OPERATOR
    for _ in range(4):
        with pytest.raises(LoginRefused):
            log_in(store, "olivia", "wrong", max_failures=5, lockout_s=60)
    assert log_in(store, "olivia", PASSWORD, max_failures=5, lockout_s=60).tenant == TENANT


def test_operators_refuse_short_passwords_and_bad_names(store):
    with pytest.raises(ValueError, match="at least 12"):
        create_operator(store, "short", "tiny", tenant=TENANT, role=Role.VIEWER)
    with pytest.raises(ValueError, match="invalid username"):
        create_operator(store, "Bad Name", PASSWORD, tenant=TENANT, role=Role.VIEWER)


# -- pages -----------------------------------------------------------------------------------


def test_accounts_list_search_and_pagination(operator, ledger, seeded):
    listed = operator.get("/accounts").text
    assert all(name in listed for name in ("Cash at bank", "Alice wallet", "Bob wallet"))
    by_name = operator.get("/accounts?q=alice").text
    assert "Alice wallet" in by_name
    assert "Bob wallet" not in by_name
    by_external_id = operator.get("/accounts?q=wallet-bob").text
    assert "Bob wallet" in by_external_id
    assert "Alice wallet" not in by_external_id
    assert seeded.cash.id in operator.get(f"/accounts?q={seeded.cash.id}").text
    assert "No account matches" in operator.get("/accounts?q=zzz").text
    from ledger.domain.models import NewAccount  # noqa: PLC0415

    for n in range(30):
        ledger.create_account(TENANT, NewAccount(currency="EUR", name=f"Extra {n:02d}"))
    first = operator.get("/accounts").text
    assert "Extra 21" in first  # 25 per page: 3 seeded + 22 extras
    assert "Extra 22" not in first
    cursor = first.split("cursor=")[1].split('"')[0]
    second = operator.get(f"/accounts?cursor={cursor}").text
    assert "Extra 22" in second
    assert "Extra 29" in second
    assert "Extra 21" not in second


def test_account_detail_shows_balances_journal_and_a_chart(operator, seeded):
    page = operator.get(f"/accounts/{seeded.alice.id}").text
    assert "Alice wallet" in page
    assert "195.75" in page  # 100.00 + 25.50 + 70.25 available
    assert page.count("<tr>") == 1 + 3  # the journal: a header and three entries
    assert f"/accounts/{seeded.alice.id}/chart.svg" in page
    chart = operator.get(f"/accounts/{seeded.alice.id}/chart.svg")
    assert chart.status_code == 200
    assert chart.mimetype == "image/svg+xml"
    assert chart.data.lstrip().startswith(b"<?xml")
    assert b"<svg" in chart.data
    assert b"posted" in chart.data  # the legend


def test_another_tenants_account_and_an_unknown_page_are_friendly_404s(app, seeded):
    gina = app.test_client()
    assert login(gina, "gina") == 302  # tenant globex
    response = gina.get(f"/accounts/{seeded.alice.id}")
    assert response.status_code == 404
    assert "Not found" in response.text
    assert "Alice" not in response.text
    missing = gina.get("/no/such/page")
    assert missing.status_code == 404
    assert "There is no page at /no/such/page" in missing.text
    assert gina.get(f"/transfers/{seeded.pending.id}").status_code == 404


def test_transfers_search_by_status_account_external_id_and_id(operator, seeded):
    pending = operator.get("/transfers?status=pending").text
    assert seeded.pending.id[:8] in pending
    assert seeded.deposits[0].id[:8] not in pending
    of_bob = operator.get("/transfers?account=wallet-bob").text
    assert seeded.pending.id[:8] in of_bob
    assert seeded.deposits[0].id[:8] not in of_bob
    by_external_id = operator.get("/transfers?q=deposit-2").text
    assert seeded.deposits[1].id[:8] in by_external_id
    assert seeded.deposits[0].id[:8] not in by_external_id
    assert seeded.deposits[2].id[:8] in operator.get(f"/transfers?q={seeded.deposits[2].id}").text
    assert "No account with id" in operator.get("/transfers?account=nobody").text


def test_an_operator_posts_part_of_a_pending_transfer(operator, ledger, seeded):
    page = operator.get(f"/transfers/{seeded.pending.id}").text
    assert 'value="post"' in page
    assert 'value="void"' in page
    form = {"csrf_token": csrf_token(page), "amount": "30.00"}
    response = operator.post(f"/transfers/{seeded.pending.id}/post", data=form)
    assert response.status_code == 302
    posted = ledger.get_transfer(TENANT, seeded.pending.id)
    assert (posted.status, posted.posted_amount) == ("posted", 3000)
    again = operator.post(f"/transfers/{seeded.pending.id}/post", data=form)
    assert "Not posted" in operator.get(again.headers["Location"]).text
    assert ledger.get_balance(TENANT, seeded.bob.id).posted == 3000


def test_an_operator_voids_a_pending_transfer(operator, ledger, seeded):
    token = csrf_token(operator.get(f"/transfers/{seeded.pending.id}").text)
    operator.post(f"/transfers/{seeded.pending.id}/void", data={"csrf_token": token})
    assert ledger.get_transfer(TENANT, seeded.pending.id).status == "voided"
    assert "Transfer voided." in operator.get(f"/transfers/{seeded.pending.id}").text


def test_a_viewer_reads_but_cannot_post_void_or_adjust(viewer, ledger, seeded):
    page = viewer.get(f"/transfers/{seeded.pending.id}").text
    assert 'value="post"' not in page
    assert "an operator can post or void it" in page
    token = csrf_token(page)
    for path in (f"/transfers/{seeded.pending.id}/post", f"/transfers/{seeded.pending.id}/void"):
        refused = viewer.post(path, data={"csrf_token": token})
        assert refused.status_code == 403
        assert "Your role (viewer) can read but not change anything." in refused.text
    assert viewer.get("/adjustments/new").status_code == 403
    form = {"csrf_token": token, "key": "a" * 32, "debit": "cash", "credit": "wallet-bob"}
    assert (
        viewer.post("/adjustments", data=form | {"amount": "1", "reason": "x"}).status_code == 403
    )
    assert ledger.get_transfer(TENANT, seeded.pending.id).status == "pending"
    assert "/adjustments/new" not in viewer.get("/accounts").text


def adjustment_form(client: FlaskClient, **fields: str) -> dict[str, str]:
    page = client.get("/adjustments/new").text
    key = KEY_FIELD.search(page)
    assert key is not None
    return {"csrf_token": csrf_token(page), "key": key.group(1), **fields}


def test_an_adjustment_submitted_twice_posts_once(operator, ledger, seeded):
    form = adjustment_form(
        operator, debit="cash", credit="wallet-alice", amount="12.34", reason="goodwill"
    )
    first = operator.post("/adjustments", data=form)
    second = operator.post("/adjustments", data=form)  # a double click / a resubmit
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    transfer_id = first.headers["Location"].rsplit("/", 1)[1]
    transfer = ledger.get_transfer(TENANT, transfer_id)
    assert (transfer.amount, transfer.metadata["reason"]) == (1234, "goodwill")
    assert transfer.metadata["operator"] == "olivia"
    to_alice = ledger.list_transfers(TENANT, account_id=seeded.alice.id, limit=100).data
    assert len(to_alice) == len(seeded.deposits) + 1
    assert "Adjustment posted." in operator.get(first.headers["Location"]).text
    # Back to the posted form, changed and sent again: refused, still the one adjustment.
    changed = operator.post("/adjustments", data=form | {"amount": "99.00"})
    assert changed.status_code == 422
    assert "This form was already posted with other values" in changed.text
    # Another form (another key) is another adjustment.
    operator.post(
        "/adjustments",
        data=adjustment_form(
            operator, **{k: form[k] for k in ("debit", "credit", "amount", "reason")}
        ),
    )
    assert len(ledger.list_transfers(TENANT, account_id=seeded.alice.id, limit=100).data) == 5


def test_concurrent_submissions_of_one_adjustment_form_post_once(app, ledger, seeded):
    clients = []
    for _ in range(4):
        client = app.test_client()
        assert login(client, "olivia") == 302
        clients.append(client)
    form = adjustment_form(clients[0], debit="cash", credit="wallet-bob", amount="5", reason="r")
    barrier = threading.Barrier(len(clients))

    def submit(client: FlaskClient) -> str:
        token = csrf_token(client.get("/accounts").text)
        barrier.wait()
        response = client.post("/adjustments", data=form | {"csrf_token": token})
        assert response.status_code == 303, response.text
        return response.headers["Location"]

    with ThreadPoolExecutor(len(clients)) as pool:
        locations = set(pool.map(submit, clients))
    assert len(locations) == 1
    posted = ledger.list_transfers(TENANT, account_id=seeded.bob.id, status="posted").data
    assert [t.amount for t in posted] == [500]


def test_an_invalid_adjustment_re_renders_the_form_with_its_key(operator, ledger, seeded):
    form = adjustment_form(
        operator, debit="cash", credit="wallet-alice", amount="1.234", reason="x"
    )
    refused = operator.post("/adjustments", data=form)
    assert refused.status_code == 422
    assert "USD has 2 decimal places" in refused.text
    assert form["key"] in refused.text  # fixing it and submitting posts once, with this key
    unknown = operator.post("/adjustments", data=form | {"credit": "nobody", "amount": "1"})
    assert "no account with id or external id &#39;nobody&#39;" in unknown.text  # escaped
    damaged = operator.post("/adjustments", data=form | {"key": "not-a-key", "amount": "1"})
    assert damaged.status_code == 400
    fixed = operator.post("/adjustments", data=form | {"amount": "1.23"})
    assert fixed.status_code == 303
    assert len(ledger.list_transfers(TENANT, account_id=seeded.alice.id).data) == 4


def test_a_failing_page_is_a_friendly_500_and_the_traceback_only_in_the_log(
    operator, ledger, seeded, monkeypatch, caplog
):
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(ledger.__class__, "get_balance", broken)
    with caplog.at_level(logging.ERROR, logger="ledger.backoffice"):
        response = operator.get(f"/accounts/{seeded.alice.id}")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    [record] = [r for r in caplog.records if r.name == "ledger.backoffice"]
    assert record.exc_info is not None
    assert "hunter2" in str(record.exc_info[1])


# -- settings and the CLI --------------------------------------------------------------------


def test_production_refuses_a_missing_or_development_session_secret():
    from ledger.settings import DEVELOPMENT_SECRET_KEY, production_problems  # noqa: PLC0415

    url = "redis://cache:6379/0"
    for secret in (None, "", DEVELOPMENT_SECRET_KEY):
        settings = LedgerSettings(_env_file=None, store_url=url, secret_key=secret)
        assert [p for p in production_problems(settings) if "LEDGER_SECRET_KEY" in p]
    fine = LedgerSettings(_env_file=None, store_url=url, secret_key="x" * 40)
    assert production_problems(fine) == []


def test_ledger_operators_create_reads_the_password_from_stdin(tmp_path):
    from ledger.cli import app as cli  # noqa: PLC0415
    from typer.testing import CliRunner  # noqa: PLC0415

    url = f"sqlite:///{tmp_path}/cli.db"
    runner = CliRunner()
    args = ["operators", "create", "--username", "ops", "--tenant", "acme", "--store", url]
    made = runner.invoke(cli, [*args, "--role", "viewer", "--password-stdin"], input=PASSWORD)
    assert made.exit_code == 0, made.output
    assert "operator 'ops' (viewer) for tenant 'acme' created" in made.output
    again = runner.invoke(cli, [*args, "--password-stdin"], input=PASSWORD)
    assert again.exit_code == 1
    assert "exists already" in again.output
    short = runner.invoke(cli, [*args[:3], "other", *args[4:], "--password-stdin"], input="x")
    assert short.exit_code == 2
    assert "at least 12 characters" in short.output
    with open_store(url) as store:
        assert log_in(store, "ops", PASSWORD, max_failures=5, lockout_s=60).role is Role.VIEWER


def test_a_session_made_by_one_worker_is_valid_in_another(store):
    # Each uvicorn worker builds its own app: the session secret must be the same in all of
    # them (LEDGER_SECRET_KEY, or the fixed development key), never one random per process.
    first, second = make_app(store).test_client(), make_app(store).test_client()
    assert login(first, "olivia") == 302
    cookie = first.get_cookie("ledger_backoffice")
    assert cookie is not None
    second.set_cookie("ledger_backoffice", cookie.value)
    assert second.get("/accounts").status_code == 200


# -- imports ---------------------------------------------------------------------------------


def wait_for_import(client: FlaskClient, location: str) -> str:
    """The import page once the job is no longer running (bounded: 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        page = client.get(location).text
        if '<meta http-equiv="refresh"' not in page:
            return page
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(0.1)


def upload(client: FlaskClient, content: bytes, name: str, kind: str = "transfers") -> TestResponse:
    token = csrf_token(client.get("/imports").text)
    form = {"csrf_token": token, "kind": kind, "file": (io.BytesIO(content), name)}
    return client.post("/imports", data=form, content_type="multipart/form-data")


def test_an_import_runs_in_the_background_and_its_rejects_download(store, ledger, seeded, tmp_path):
    app = make_app(store, import_dir=tmp_path / "imports")
    client = app.test_client()
    assert login(client, "olivia") == 302
    started = upload(client, IMPORT_CSV.encode(), "march.csv")
    assert started.status_code == 303
    location = started.headers["Location"]
    page = wait_for_import(client, location)
    assert "Import of march.csv" in page
    assert ">done<" in page
    summary = re.findall(r"<span>([^<]+)</span><b>(\d+)</b>", page)
    assert summary == [
        ("Rows in the file", "5"),
        ("Posted", "3"),
        ("Skipped as duplicates", "0"),
        ("Rejected", "2"),
    ]
    with client.get(f"{location}/rejects") as rejects:  # a file response: closed after use
        assert rejects.status_code == 200
        assert rejects.mimetype == "text/csv"
        assert "attachment" in rejects.headers["Content-Disposition"]
        lines = rejects.text.splitlines()
    assert lines[0].startswith("row,column,reason,external_id")
    assert [line.split(",")[:2] for line in lines[1:]] == [["2", "amount"], ["3", "credit_account"]]
    assert ledger.get_balance(TENANT, seeded.bob.id).pending == 5000 + 250 + 75
    # The same file again: every good row is a duplicate, nothing is posted twice.
    again = wait_for_import(
        client, upload(client, IMPORT_CSV.encode(), "march.csv").headers["Location"]
    )
    assert "<span>Skipped as duplicates</span><b>3</b>" in again
    assert ledger.get_balance(TENANT, seeded.bob.id).pending == 5000 + 250 + 75
    listed = client.get("/imports").text
    assert listed.count("march.csv") == 2


def test_an_unusable_file_fails_the_job_with_its_reason(store, tmp_path):
    client = make_app(store, import_dir=tmp_path / "imports").test_client()
    assert login(client, "olivia") == 302
    started = upload(client, b"who,what\n1,2\n", "wrong.csv")
    page = wait_for_import(client, started.headers["Location"])
    assert ">failed<" in page
    assert "The import failed:" in page
    assert "/rejects" not in page
    assert client.get(f"{started.headers['Location']}/rejects").status_code == 404
    refused = upload(client, b"x", "notes.txt")
    assert refused.status_code == 422
    assert "Choose a .csv or .parquet file" in refused.text


def test_a_viewer_sees_imports_but_cannot_upload(viewer):
    page = viewer.get("/imports").text
    assert "Recent imports" in page
    assert 'type="file"' not in page
    token = csrf_token(viewer.get("/accounts").text)
    form = {"csrf_token": token, "kind": "transfers", "file": (io.BytesIO(b"x"), "a.csv")}
    refused = viewer.post("/imports", data=form, content_type="multipart/form-data")
    assert refused.status_code == 403


# -- reports ---------------------------------------------------------------------------------


def test_the_reports_page_shows_tables_and_the_chart(viewer, seeded):
    form = viewer.get("/reports").text
    assert 'name="start"' in form
    assert "Trial balance" not in form  # nothing built until a range is submitted
    today = datetime.now(UTC).date()
    page = viewer.get(f"/reports?start={today}&end={today + timedelta(days=1)}").text
    assert '<img class="chart" src="data:image/svg+xml;base64,' in page
    for title in ("Daily volume per currency", "Trial balance", "Largest movements"):
        assert f"<h2>{title}" in page
    assert "<td>USD</td>" in page
    daily = page.split("<h2>Daily volume per currency</h2>")[1].split("</table>")[0]
    assert re.findall(r"<td>([^<]*)</td>", daily)[1:] == ["USD", "3", "195.75"]  # posted only
    bad = viewer.get(f"/reports?start={today}&end={today}")
    assert bad.status_code == 422
    assert "The end date must come after the start date." in bad.text
    assert viewer.get("/reports?start=yesterday&end=today").status_code == 422
