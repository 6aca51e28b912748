"""``import_file`` and ``ledger import`` on real files: 100,000 rows on a file-backed SQLite
store, a malformed file reported all at once, a re-run, a run SIGKILLed halfway and resumed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from ledger.invariants import check_invariants
from ledger.ops.importer import import_file
from ledger.service import SyncLedger
from ops_support import WALLETS, expected_minor_units, transfer_rows, write_accounts

from stalwart.storage import Store, open_store

T = "acme"
WORKER = str(Path(__file__).with_name("ops_import_worker.py"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A file-backed SQLite store with fsync on every commit, as ``ledger import`` uses."""
    return f"sqlite:///{tmp_path / 'ledger.db'}?table=ledger&synchronous=full"


@pytest.fixture
def store(sqlite_url: str):
    opened = open_store(sqlite_url)
    yield opened
    opened.close()


def _with_accounts(store: Store, tmp_path: Path) -> SyncLedger:
    ledger = SyncLedger(store)
    write_accounts(tmp_path / "accounts.csv")
    summary = import_file(
        ledger, T, tmp_path / "accounts.csv", kind="accounts", rejects_path=tmp_path / "r.csv"
    )
    assert (summary.posted, summary.rejected) == (1 + WALLETS, 0)
    return ledger


def _wallet_total(ledger: SyncLedger) -> int:
    return sum(
        ledger.get_balance(T, ledger.get_account_by_external_id(T, f"w{i}").id).posted
        for i in range(WALLETS)
    )


def test_a_100000_row_import_posts_every_row_once_and_a_rerun_posts_nothing(store, tmp_path):
    ledger = _with_accounts(store, tmp_path)
    rows = 100_000
    path = tmp_path / "transfers.parquet"  # Parquet here, CSV in the other tests
    transfer_rows(rows).to_parquet(path)
    seen: list[tuple[int, int]] = []

    started = time.perf_counter()
    summary = import_file(
        ledger,
        T,
        path,
        kind="transfers",
        rejects_path=tmp_path / "rejects.csv",
        progress=lambda done, total: seen.append((done, total)),
    )
    elapsed = time.perf_counter() - started

    assert (summary.rows, summary.posted, summary.duplicates, summary.rejected) == (
        rows,
        rows,
        0,
        0,
    )
    assert summary.rejects_path is None
    assert not (tmp_path / "rejects.csv").exists()
    assert seen[0] == (0, rows)
    assert seen[-1] == (rows, rows)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert _wallet_total(ledger) == expected_minor_units(rows)
    assert check_invariants(store, T) == []
    assert elapsed < 60, f"100,000 rows took {elapsed:.1f} s"  # ~10-20 s on an idle 2-core box

    again = import_file(ledger, T, path, kind="transfers", rejects_path=tmp_path / "rejects.csv")
    assert (again.posted, again.duplicates, again.rejected) == (0, rows, 0)
    assert _wallet_total(ledger) == expected_minor_units(rows)
