"""``import_file`` and ``ledger import`` on real files: 100,000 rows on a file-backed SQLite
store, a malformed file reported all at once, a re-run, a run SIGKILLed halfway and resumed."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from ledger.cli import app
from ledger.invariants import check_invariants
from ledger.ops.importer import ImportFileError, import_file
from ledger.service import SyncLedger
from ops_support import WALLETS, expected_minor_units, transfer_rows, write_accounts
from typer.testing import CliRunner

from stalwart.storage import Store, open_store

T = "acme"
runner = CliRunner()
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


@pytest.mark.slow(seconds=120)
def test_a_100000_row_import_posts_every_row_once(store, tmp_path):
    ledger = _with_accounts(store, tmp_path)
    rows = 100_000
    path = tmp_path / "transfers.parquet"  # Parquet here, CSV in the other tests
    transfer_rows(rows).to_parquet(path)
    seen: list[tuple[int, int]] = []

    summary = import_file(
        ledger,
        T,
        path,
        kind="transfers",
        rejects_path=tmp_path / "rejects.csv",
        progress=lambda done, total: seen.append((done, total)),
    )

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
    # Re-runs (all duplicates) are tested on smaller files here, in the CLI test and on every
    # engine in test_ops_bulk.py: 100,000 more reads would only add time to the suite.


def test_a_malformed_file_is_reported_all_at_once_and_only_its_good_rows_are_posted(
    store, tmp_path
):
    ledger = _with_accounts(store, tmp_path)
    path = tmp_path / "transfers.csv"
    path.write_text(
        "external_id,debit_account,credit_account,amount,currency,metadata\n"
        "t1,cash,w0,12.34,USD,\n"  # 1 good
        "t2,cash,w1,1.005,USD,\n"  # 2 too many decimals
        "t3,cash,nobody,1.00,USD,\n"  # 3 unknown account
        "t4,cash,w2,1.00,USD,\n"  # 4 duplicate external_id (with 5)
        "t4,cash,w3,2.00,USD,\n"  # 5
        "t6,cash,w4,1.00,XXX,\n"  # 6 unknown currency
        "t7,cash,w5,ten,USD,not json\n"  # 7 two reasons
        "t8,w6,w7,1.00,USD,\n"  # 8 good by the file, refused by the ledger: w6 holds nothing
        't9,cash,w8,0.50,USD,"{""ref"": ""x""}"\n'  # 9 good
    )
    rejects = tmp_path / "out" / "rejects.csv"

    summary = import_file(ledger, T, path, kind="transfers", rejects_path=rejects)

    assert (summary.rows, summary.posted, summary.duplicates, summary.rejected) == (9, 2, 0, 7)
    assert summary.rejects_path == rejects
    written = pd.read_csv(rejects, dtype=str, keep_default_na=False)
    reasons = {(int(r.row), r.column): r.reason for r in written.itertuples()}
    assert set(reasons) == {
        (2, "amount"),
        (3, "credit_account"),
        (4, "external_id"),
        (5, "external_id"),
        (6, "currency"),
        (7, "amount"),
        (7, "metadata"),
        (8, ""),
    }
    assert "2 decimal places" in reasons[2, "amount"]
    assert reasons[8, ""].startswith("insufficient_funds")
    assert list(written.columns[:3]) == ["row", "column", "reason"]
    assert written.loc[written["row"] == "3", "credit_account"].item() == "nobody"  # the row
    assert _wallet_total(ledger) == 1234 + 50
    assert check_invariants(store, T) == []


def test_wrong_columns_are_a_file_error_and_nothing_is_written(store, tmp_path):
    ledger = _with_accounts(store, tmp_path)
    path = tmp_path / "transfers.csv"
    path.write_text("external_id,debit,credit_account,amount,currency\nt1,cash,w0,1.00,USD\n")
    with pytest.raises(ImportFileError) as error:
        import_file(ledger, T, path, kind="transfers", rejects_path=tmp_path / "r.csv")
    assert "missing column 'debit_account'" in str(error.value)
    assert "unknown column 'debit'" in str(error.value)
    assert _wallet_total(ledger) == 0
    floats = tmp_path / "floats.parquet"
    transfer_rows(3).astype({"amount": float}).to_parquet(floats)
    with pytest.raises(ImportFileError, match="floats"):
        import_file(ledger, T, floats, kind="transfers", rejects_path=tmp_path / "r.csv")


def test_accounts_rerun_is_duplicates_and_changed_content_is_rejected(store, tmp_path):
    ledger = _with_accounts(store, tmp_path)
    again = import_file(
        ledger, T, tmp_path / "accounts.csv", kind="accounts", rejects_path=tmp_path / "r.csv"
    )
    assert (again.posted, again.duplicates, again.rejected) == (0, 1 + WALLETS, 0)
    changed = tmp_path / "changed.csv"
    changed.write_text("external_id,name,currency\ncash,Renamed,USD\nnew,New,EUR\n")
    summary = import_file(ledger, T, changed, kind="accounts", rejects_path=tmp_path / "r.csv")
    assert (summary.posted, summary.duplicates, summary.rejected) == (1, 0, 1)
    assert ledger.get_account_by_external_id(T, "cash").name == "Cash"  # unchanged


@pytest.mark.slow
def test_an_import_killed_halfway_resumes_exactly_once(sqlite_url, store, tmp_path):
    ledger = _with_accounts(store, tmp_path)
    rows = 1_500
    path = tmp_path / "transfers.csv"
    transfer_rows(rows).to_csv(path, index=False)
    killed = subprocess.run(
        [sys.executable, WORKER, sqlite_url, T, str(path), str(tmp_path / "r.csv"), "20"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    halfway = _wallet_total(ledger)
    assert 0 < halfway < expected_minor_units(rows)

    resumed = import_file(ledger, T, path, kind="transfers", rejects_path=tmp_path / "r.csv")

    assert resumed.duplicates > 0
    assert resumed.posted > 0
    assert resumed.duplicates + resumed.posted == rows
    assert resumed.rejected == 0
    assert _wallet_total(ledger) == expected_minor_units(rows)
    assert check_invariants(store, T) == []


def test_the_import_command_prints_the_summary_and_exits_by_outcome(sqlite_url, store, tmp_path):
    _with_accounts(store, tmp_path)
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    transfer_rows(50).to_csv(good, index=False)
    bad.write_text("external_id,debit_account,credit_account,amount,currency\nx1,cash,zed,1,USD\n")
    base = ["--kind", "transfers", "--tenant", T, "--store", sqlite_url]

    first = runner.invoke(app, ["import", str(good), *base])
    assert first.exit_code == 0, first.output
    assert "50 rows: 50 posted, 0 skipped as duplicate, 0 rejected" in first.output
    rerun = runner.invoke(app, ["import", str(good), *base])
    assert "50 rows: 0 posted, 50 skipped as duplicate, 0 rejected" in rerun.output
    rejected = runner.invoke(app, ["import", str(bad), *base])
    assert rejected.exit_code == 1
    assert f"1 rejected (see {tmp_path / 'bad.rejects.csv'})" in rejected.output
    assert (tmp_path / "bad.rejects.csv").exists()
    wrong = runner.invoke(app, ["import", str(tmp_path / "missing.csv"), *base])
    assert wrong.exit_code == 2
    assert "cannot read it" in wrong.output
