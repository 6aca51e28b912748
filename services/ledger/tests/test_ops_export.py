"""``export`` and ``ledger export``: CSV and Parquet round trips, page-bounded streaming, time
and account filters."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from ledger.cli import app
from ledger.ops.exporter import PAGE_SIZE, export, iter_pages
from ledger.ops.importer import import_file
from ledger.service import SyncLedger
from ops_support import WALLETS, transfer_rows, write_accounts
from typer.testing import CliRunner

from stalwart.storage import open_store

T = "acme"
ROWS = 250
runner = CliRunner()


@pytest.fixture
def filled(tmp_path: Path):
    """A file-backed ledger with 1 + WALLETS accounts and ROWS transfers; its URL."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}?table=ledger"
    store = open_store(url)
    ledger = SyncLedger(store, clock=lambda: 1_764_770_400.0)  # 2025-12-03 14:00 UTC
    write_accounts(tmp_path / "accounts.csv")
    transfer_rows(ROWS).to_csv(tmp_path / "transfers.csv", index=False)
    for kind in ("accounts", "transfers"):
        summary = import_file(
            ledger, T, tmp_path / f"{kind}.csv", kind=kind, rejects_path=tmp_path / "r.csv"
        )
        assert summary.rejected == 0
    yield ledger, url
    store.close()


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.read_parquet(path)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_exports_round_trip_what_the_ledger_holds(filled, tmp_path, suffix):
    ledger, _ = filled
    path = tmp_path / f"transfers.{suffix}"
    assert export(ledger, T, "transfers", path) == ROWS
    transfers = _read(path)
    assert len(transfers) == ROWS
    assert transfers["id"].is_unique
    one = ledger.get_transfer(T, transfers["id"].iloc[0])
    assert str(transfers["amount"].iloc[0]) == str(one.amount)  # minor units, exact
    assert json.loads(transfers["metadata"].iloc[0]) == one.metadata

    balances_path = tmp_path / f"balances.{suffix}"
    assert export(ledger, T, "balances", balances_path) == 1 + WALLETS
    balances = _read(balances_path).set_index("external_id")
    cash = ledger.get_account_by_external_id(T, "cash")
    assert (
        int(balances.loc["cash", "debits_posted"]) == ledger.get_balance(T, cash.id).debits_posted
    )
    accounts = _read(_exported(ledger, tmp_path, "accounts", suffix))
    assert set(accounts["external_id"]) == {"cash", *(f"w{i}" for i in range(WALLETS))}
    assert str(accounts.set_index("external_id").loc["w0", "debits_must_not_exceed_credits"]) in {
        "True",
        "true",
    }
    entries = _read(_exported(ledger, tmp_path, "entries", suffix, account_id=cash.id))
    assert list(entries["seq"].astype(int)) == list(range(1, ROWS + 1))  # cash's whole journal


def _exported(
    ledger: SyncLedger, tmp_path: Path, what: str, suffix: str, **filters: object
) -> Path:
    path = tmp_path / f"{what}.{suffix}"
    export(ledger, T, what, path, **filters)  # type: ignore[arg-type]
    return path


def test_an_export_is_streamed_one_bounded_page_at_a_time(filled):
    ledger, _ = filled
    pages = iter_pages(ledger, T, "entries")
    sizes = [len(page) for page in pages]  # each page made only when the previous was taken
    assert sum(sizes) == 2 * ROWS
    assert max(sizes) <= PAGE_SIZE
    assert len(sizes) >= 2 * ROWS // PAGE_SIZE


def test_the_export_command_filters_by_day_and_account(filled, tmp_path):
    ledger, url = filled
    base = ["--tenant", T, "--store", url]
    out = tmp_path / "day.parquet"
    day = runner.invoke(
        app,
        [
            "export",
            "transfers",
            *base,
            "--out",
            str(out),
            "--from",
            "2025-12-03",
            "--to",
            "2025-12-04",
        ],
    )
    assert day.exit_code == 0, day.output
    assert f"{ROWS} transfers rows written" in day.output
    after = runner.invoke(
        app,
        ["export", "transfers", *base, "--out", str(tmp_path / "n.csv"), "--from", "2025-12-04"],
    )
    assert "0 transfers rows written" in after.output
    assert list(_read(tmp_path / "n.csv").columns)[:2] == ["id", "debit_account_id"]  # header
    w0 = ledger.get_account_by_external_id(T, "w0").id
    mine = runner.invoke(
        app, ["export", "transfers", *base, "--out", str(tmp_path / "w0.csv"), "--account", w0]
    )
    assert f"{ROWS // WALLETS + 1} transfers rows written" in mine.output  # w0 gets every 20th
    bad = runner.invoke(app, ["export", "entries", *base, "--out", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2
    assert "suffix" in bad.output
