"""The ``ledger`` command: ``serve`` as a real subprocess, ``keys create`` / ``revoke``."""

from __future__ import annotations

import os
import re
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from api_support import KEY_LINE, ledger_serve, new_account
from ledger.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def test_serve_starts_on_the_sqlite_default_prints_docs_and_a_first_key(tmp_path):
    with ledger_serve(cwd=tmp_path) as served:
        docs = f"{served.base}/docs"
        assert f"docs: {docs}" in served.text()
        (key,) = KEY_LINE.findall(served.text())
        assert httpx.get(docs, timeout=5).status_code == 200
        listed = httpx.get(
            f"{served.base}/v1/accounts", headers={"Authorization": f"Bearer {key}"}, timeout=5
        )
        assert listed.status_code == 200
        assert httpx.get(f"{served.base}/readyz", timeout=5).json()["status"] == "ok"
        # The back-office is mounted in the same process, and its URL printed.
        assert f"back-office: {served.base}/admin/" in served.text()
        login = httpx.get(f"{served.base}/admin/accounts", follow_redirects=True, timeout=5)
        assert login.url == f"{served.base}/admin/login?next=/accounts"
        assert "Sign in" in login.text
        assert "X-Request-ID" in login.headers  # the web kit wraps the mount
    assert (tmp_path / "ledger.db").exists()  # ./ledger.db, the embedded default


@pytest.mark.slow
def test_serve_with_two_workers_on_redis(tmp_path, redis_srv):
    store = f"{redis_srv.url}?prefix=cli-{uuid.uuid4().hex[:8]}"
    with ledger_serve("--workers", "2", "--store", store, cwd=tmp_path) as served:
        assert served.wait_for(r"Started server process \[(\d+)\]", count=2), served.text()
        (key,) = KEY_LINE.findall(served.text())
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=served.base, headers=headers, timeout=10) as api:
            funding = new_account(api, normal_balance="debit")["id"]
            wallet = new_account(api)["id"]
        body = {"debit_account_id": funding, "credit_account_id": wallet, "amount": 40}
        body |= {"currency": "USD"}

        def post(_: int) -> httpx.Response:
            # A connection of its own each: the two workers share the accepting socket.
            with httpx.Client(base_url=served.base, headers=headers, timeout=10) as own:
                return own.post("/v1/transfers", json=body, headers={"Idempotency-Key": "same"})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(8)))
        assert {a.status_code for a in answers} == {201}
        assert len({a.text for a in answers}) == 1  # identical bodies
        assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
        with httpx.Client(base_url=served.base, headers=headers, timeout=10) as api:
            balance = api.get(f"/v1/accounts/{wallet}/balance").json()
        assert balance["posted"] == 40  # one transfer, whichever worker answered
        assert "uvicorn.access" not in served.text()  # one line per request: the kit's


def test_keys_create_prints_the_key_once_and_revoke_refuses_it(tmp_path):
    store = f"sqlite:///{tmp_path}/keys.db"
    created = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--store", store])
    assert created.exit_code == 0, created.output
    (key,) = KEY_LINE.findall(created.output)
    key_id = key.split("_")[1]
    assert f"key id {key_id}" in created.output
    revoked = runner.invoke(app, ["keys", "revoke", key_id, "--store", store])
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(app, ["keys", "revoke", key_id, "--store", store])
    assert again.exit_code == 1
    assert "no live API key" in again.output


def test_bad_configuration_exits_with_a_message_not_a_traceback(tmp_path, monkeypatch):
    bad_tenant = runner.invoke(
        app, ["keys", "create", "--tenant", "A/B", "--store", f"sqlite:///{tmp_path}/k.db"]
    )
    assert bad_tenant.exit_code == 2
    assert "invalid tenant name" in bad_tenant.output
    missing_dir = runner.invoke(
        app, ["keys", "create", "--tenant", "a", "--store", f"sqlite:///{tmp_path}/no/k.db"]
    )
    assert missing_dir.exit_code == 2
    assert "Traceback" not in missing_dir.output

    monkeypatch.setenv("LEDGER_ENV", "production")
    monkeypatch.chdir(tmp_path)
    refused = runner.invoke(app, ["serve"])
    assert refused.exit_code == 2
    assert "LEDGER_ENV=production refuses to start" in refused.output
    assert "development default" in refused.output
    assert not (tmp_path / "ledger.db").exists()  # nothing was opened


@pytest.mark.slow(seconds=18)
def test_serve_keeps_slow_starting_workers_and_logs_a_replaced_one(tmp_path):
    """A spawned worker imports ``ledger.cli`` again (multiprocessing re-runs the ``ledger``
    script) before it can answer uvicorn's health check, which took over 5 s on a loaded
    2-core machine: uvicorn's default 5-s check killed it as hung and replaced it (found by
    the soak run). Here each worker's start is made 6 s slower on purpose.

    The replacement of a dead worker is logged (uvicorn's supervisor had no log handler: a
    worker killed, e.g. for memory, left no trace)."""
    slow = tmp_path / "slow-start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import sys, time\n"
        "if '--multiprocessing-fork' in sys.argv:  # a spawned worker, not the supervisor\n"
        "    time.sleep(6)\n"
    )
    store = f"sqlite:///{tmp_path}/ledger.db"
    env = {"PYTHONPATH": str(slow)}
    with ledger_serve(
        "--workers", "2", "--store", store, cwd=tmp_path, env=env, timeout_s=40
    ) as served:
        started = r"Started server process \[(\d+)\]"
        assert served.wait_for(started, count=2, timeout_s=20), served.text()
        victim = re.findall(started, served.text())[0]
        os.kill(int(victim), signal.SIGKILL)
        died = rf'"message": "Child process \[({victim})\] died", "logger": "uvicorn.error"'
        assert served.wait_for(died, timeout_s=10), served.text()
        assert served.wait_for(started, count=3, timeout_s=30), served.text()  # replaced
