"""Several processes on one store (a SQLite file, Redis; the crash test on every engine):
optimistic locking holds across processes, and a process killed right after its transfer
committed leaves exactly one transfer that a retry with the same key finds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ledger.domain.models import NewAccount, NewTransfer, NormalBalance
from ledger.invariants import check_invariants
from ledger.service import SyncLedger

from stalwart.storage import open_store

WORKER = str(Path(__file__).with_name("ledger_worker.py"))
T = "acme"


def _accounts(ledger: SyncLedger, fund: int) -> tuple[str, str]:
    cash = ledger.create_account(
        T, NewAccount(currency="USD", name="cash", normal_balance=NormalBalance.DEBIT)
    )
    wallet = ledger.create_account(
        T,
        NewAccount(currency="USD", name="wallet", flags={"debits_must_not_exceed_credits": True}),
    )
    shop = ledger.create_account(T, NewAccount(currency="USD", name="shop"))
    ledger.create_transfer(
        T,
        ledger_draft(cash.id, wallet.id, fund),
        idempotency_key="fund",
    )
    return wallet.id, shop.id


def ledger_draft(debit: str, credit: str, amount: int) -> NewTransfer:
    return NewTransfer(
        debit_account_id=debit, credit_account_id=credit, amount=amount, currency="USD"
    )


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
def test_two_processes_on_hot_accounts_keep_every_invariant(engine, store_url_factory, tmp_path):
    url = store_url_factory(engine)()
    store = open_store(url)
    ledger = SyncLedger(store)
    wallet, shop = _accounts(ledger, fund=40)
    count = 40
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, url, T, "hot", wallet, shop, str(count), "shared", tmp_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))

    assert check_invariants(store, T) == []
    # The keyed transfer exists once, and both processes answered with it.
    assert reports[0]["shared"] == reports[1]["shared"]
    assert sorted(r["replayed"] for r in reports) == [False, True]
    outcomes = [r["outcomes"] for r in reports]
    ok7 = sum(o.get("ok-7", 0) for o in outcomes)
    ok3 = sum(o.get("ok-3", 0) for o in outcomes)
    refused = sum(o.get("insufficient_funds", 0) for o in outcomes)
    assert ok7 + ok3 + refused == 2 * count  # no contention left unresolved
    assert refused > 0  # the wallet's limit was really reached
    balance = ledger.get_balance(T, wallet)
    assert balance.posted == 40 + 3 * ok3 + 1 - 7 * ok7 >= 0
    transfers = ledger.list_transfers(T, limit=100).data
    assert len(transfers) == 1 + ok7 + ok3 + 1
    store.close()


@pytest.mark.parametrize("engine", ["sqlite", "redis", "dynamodb", "mongodb"])
def test_a_process_killed_after_the_commit_leaves_one_transfer_a_retry_finds(
    engine, store_url_factory
):
    url = store_url_factory(engine)()
    store = open_store(url)
    ledger = SyncLedger(store)
    wallet, shop = _accounts(ledger, fund=40)
    crashed = subprocess.run(
        [sys.executable, WORKER, url, T, "crash", wallet, shop, "pay-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    retried, replayed = ledger.create_transfer(
        T, ledger_draft(wallet, shop, 5), idempotency_key="pay-1"
    )
    assert replayed
    assert retried.amount == 5
    mine = ledger.list_transfers(T, account_id=shop).data
    assert [t.id for t in mine] == [retried.id]
    assert ledger.get_balance(T, wallet).posted == 35
    assert check_invariants(store, T) == []
    store.close()
