"""``build_report``, ``write_report`` and ``ledger report``: daily volume per currency, a trial
balance summing to zero, the largest movements, and a chart that is a real PNG or SVG."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from ledger.cli import app
from ledger.domain.models import NewAccount, NewTransfer
from ledger.ops import reports
from ledger.ops.reports import TOP, TrialBalanceError, build_report, write_report
from ledger.service import SyncLedger
from typer.testing import CliRunner

from stalwart.storage import open_store

T = "acme"
DAY = 86_400.0
DEC_1 = 1_764_547_200.0  # 2025-12-01 00:00 UTC
runner = CliRunner()


@pytest.fixture
def ledger_url(tmp_path: Path):
    """Three days of USD and EUR transfers (one a day before the report, one pending), on a
    file-backed store; its URL."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}?table=ledger"
    store = open_store(url)
    now = [DEC_1 + 3600]
    ledger = SyncLedger(store, clock=lambda: now[0])
    accounts = {
        (name, currency): ledger.create_account(
            T,
            NewAccount(
                currency=currency,
                name=name,
                external_id=f"{name}-{currency}",
                normal_balance="debit" if name == "cash" else "credit",
            ),
        ).id
        for name in ("cash", "alice", "bob")
        for currency in ("USD", "EUR")
    }

    def pay(debit: str, credit: str, amount: int, currency: str, key: str, **more: object):
        new = NewTransfer(
            debit_account_id=accounts[debit, currency],
            credit_account_id=accounts[credit, currency],
            amount=amount,
            currency=currency,
            **more,
        )
        ledger.create_transfer(T, new, idempotency_key=key)

    pay("cash", "alice", 99_999, "USD", "before")  # Dec 1: outside the report
    for day in (1, 2, 3):  # Dec 2, 3, 4
        now[0] = DEC_1 + day * DAY + 3600
        for i in range(day * 10):
            pay("cash", "alice", 1000 + i, "USD", f"u{day}-{i}")
            pay("cash", "bob", 500 * day, "EUR", f"e{day}-{i}")
        pay("alice", "bob", 250, "USD", f"p{day}")
        pay("cash", "bob", 777_777, "USD", f"pending{day}", pending=True)  # not posted
    yield ledger, url
    store.close()


def test_the_report_sums_per_day_balances_and_ranks(ledger_url):
    ledger, _ = ledger_url
    report = build_report(ledger, T, date(2025, 12, 2), date(2025, 12, 5))

    daily = report.daily.set_index(["day", "currency"])
    assert daily.loc[("2025-12-02", "USD"), "count"] == 11
    assert daily.loc[("2025-12-02", "USD"), "volume"] == sum(1000 + i for i in range(10)) + 250
    assert daily.loc[("2025-12-04", "EUR"), "volume_text"] == "450.00"  # 30 x 15.00
    assert len(report.daily) == 6  # 3 days x 2 currencies; Dec 1 and pending ones left out

    trial = report.trial_balance
    totals = trial[trial["account_id"] == reports.TOTAL].set_index("currency")
    assert list(totals["net"]) == [0, 0]
    for currency, lines in trial[trial["account_id"] != reports.TOTAL].groupby("currency"):
        assert lines["net"].sum() == 0
        assert lines["debits"].sum() == totals.loc[currency, "debits"]
    usd = trial[(trial["currency"] == "USD")].set_index("external_id")
    assert usd.loc["alice-USD", "credits"] == sum(
        1000 + i for d in (1, 2, 3) for i in range(d * 10)
    )
    assert usd.loc["alice-USD", "debits"] == 750

    largest = dict(list(report.largest.groupby("currency")))
    assert sorted(largest) == ["EUR", "USD"]  # amounts of two currencies do not compare
    for rows in largest.values():
        assert len(rows) == TOP
        assert list(rows["amount"]) == sorted(rows["amount"], reverse=True)
    assert largest["USD"]["amount"].iloc[0] == 1029  # the 777,777 ones are still pending
    assert largest["USD"]["debit_account"].iloc[0] == "cash-USD"
    assert largest["EUR"]["amount"].iloc[0] == 1500


def test_an_unbalanced_trial_balance_fails_loudly(ledger_url, monkeypatch):
    ledger, _ = ledger_url
    real_add = reports._Totals.add

    def lose_a_credit(self, transfer):
        real_add(self, transfer)
        self.sides[transfer.currency, transfer.credit_account_id][1] -= 1  # a broken ledger

    monkeypatch.setattr(reports._Totals, "add", lose_a_credit)
    with pytest.raises(TrialBalanceError, match="does not sum to zero"):
        build_report(ledger, T, date(2025, 12, 2), date(2025, 12, 5))


@pytest.mark.parametrize("chart_format", ["png", "svg"])
def test_write_report_writes_the_csvs_and_a_valid_chart(ledger_url, tmp_path, chart_format):
    ledger, _ = ledger_url
    report = build_report(ledger, T, date(2025, 12, 2), date(2025, 12, 5))
    written = write_report(report, tmp_path / "out", chart_format=chart_format)
    names = [path.name for path in written]
    assert names == [
        "daily.csv",
        "trial_balance.csv",
        "largest.csv",
        f"daily_volume.{chart_format}",
    ]
    assert pd.read_csv(written[0]).shape == (6, 5)
    chart = written[-1].read_bytes()
    if chart_format == "png":
        assert chart.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(chart) > 10_000  # lines, axes and a legend, not an empty canvas
    else:
        assert b"<svg" in chart[:1000]
        assert chart.rstrip().endswith(b"</svg>")


def test_the_report_command(ledger_url, tmp_path):
    _, url = ledger_url
    out = tmp_path / "report"
    base = ["report", "--tenant", T, "--store", url, "--out", str(out)]
    done = runner.invoke(
        app, [*base, "--from", "2025-12-02", "--to", "2025-12-05", "--format", "svg"]
    )
    assert done.exit_code == 0, done.output
    assert f"wrote {out / 'daily_volume.svg'}" in done.output
    assert (out / "trial_balance.csv").exists()
    backwards = runner.invoke(app, [*base, "--from", "2025-12-05", "--to", "2025-12-02"])
    assert backwards.exit_code == 2
    assert "must be after" in backwards.output
