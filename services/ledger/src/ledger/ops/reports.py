"""``ledger report``: what moved in ``[start, end)`` (UTC days), from the posted transfers created
in that range, read page by page (only the aggregates stay in memory).

- ``daily``: per day and currency, the number of posted transfers and their volume;
- ``trial_balance``: per currency, each account's debits and credits and their net, then a
  ``TOTAL`` line whose net must be zero (double entry: every debit has its credit) --
  :class:`TrialBalanceError` if it is not;
- ``largest``: the :data:`TOP` largest posted transfers of each currency (amounts of different
  currencies do not compare).

Amounts are integers in minor units, with a ``*_text`` column in major units (``12.34``).
:func:`write_report` writes the three as CSV and one chart (daily volume per currency).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

import pandas as pd
from matplotlib.figure import Figure

from ledger.domain.models import Transfer, TransferStatus
from ledger.domain.money import format_amount
from ledger.service import SyncLedger

TOP: Final = 20
PAGE_SIZE: Final = 100
MAX_RANGE_DAYS: Final = 366
"""The longest range one list call covers; a longer report reads several in turn."""
TOTAL: Final = "TOTAL"


class TrialBalanceError(AssertionError):
    """The trial balance does not sum to zero: the ledger is inconsistent."""


@dataclass(frozen=True)
class Report:
    daily: pd.DataFrame
    trial_balance: pd.DataFrame
    largest: pd.DataFrame


def _epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _posted(ledger: SyncLedger, tenant: str, start: date, end: date) -> Iterator[Transfer]:
    """The posted transfers created in ``[start, end)``, read one page at a time."""
    window = start
    while window < end:
        window_end = min(end, window + timedelta(days=MAX_RANGE_DAYS))
        cursor: str | None = None
        while True:
            page = ledger.list_transfers(
                tenant,
                limit=PAGE_SIZE,
                cursor=cursor,
                created_gte=_epoch(window),
                created_lt=_epoch(window_end),
            )
            yield from (t for t in page.data if t.status is TransferStatus.POSTED)
            if not page.has_more:
                break
            cursor = page.next_cursor
        window = window_end


class _Totals:
    def __init__(self) -> None:
        self.daily: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.sides: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        # Per currency, a min-heap of the TOP largest so far.
        self.largest: defaultdict[str, list[tuple[int, str, Transfer]]] = defaultdict(list)

    def add(self, transfer: Transfer) -> None:
        amount = transfer.posted_amount
        day = transfer.created_at.astimezone(UTC).date().isoformat()
        count_volume = self.daily[day, transfer.currency]
        count_volume[0] += 1
        count_volume[1] += amount
        self.sides[transfer.currency, transfer.debit_account_id][0] += amount
        self.sides[transfer.currency, transfer.credit_account_id][1] += amount
        item = (amount, transfer.id, transfer)
        heap = self.largest[transfer.currency]
        if len(heap) < TOP:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)


def build_report(ledger: SyncLedger, tenant: str, start: date, end: date) -> Report:
    """The report of ``tenant``'s posted transfers created in ``[start, end)``."""
    if end <= start:
        raise ValueError(f"the report's end ({end}) must be after its start ({start})")
    totals = _Totals()
    for transfer in _posted(ledger, tenant, start, end):
        totals.add(transfer)
    names: dict[str, tuple[str | None, str]] = {}

    def account(account_id: str) -> tuple[str | None, str]:
        if account_id not in names:
            found = ledger.get_account(tenant, account_id)
            names[account_id] = (found.external_id, found.name)
        return names[account_id]

    daily = pd.DataFrame(
        [
            {
                "day": day,
                "currency": currency,
                "count": count,
                "volume": volume,
                "volume_text": format_amount(volume, currency),
            }
            for (day, currency), (count, volume) in sorted(totals.daily.items())
        ],
        columns=["day", "currency", "count", "volume", "volume_text"],
    )
    largest = pd.DataFrame(
        [
            {
                "transfer_id": t.id,
                "created_at": t.created_at.isoformat(),
                "debit_account": account(t.debit_account_id)[0] or t.debit_account_id,
                "credit_account": account(t.credit_account_id)[0] or t.credit_account_id,
                "amount": t.posted_amount,
                "amount_text": format_amount(t.posted_amount, t.currency),
                "currency": t.currency,
                "external_id": t.external_id,
            }
            for currency in sorted(totals.largest)
            for _, _, t in sorted(totals.largest[currency], key=lambda item: item[:2], reverse=True)
        ],
        columns=[
            "transfer_id",
            "created_at",
            "debit_account",
            "credit_account",
            "amount",
            "amount_text",
            "currency",
            "external_id",
        ],
    )
    return Report(daily, _trial_balance(totals, account), largest)


def _trial_balance(
    totals: _Totals, account: Callable[[str], tuple[str | None, str]]
) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    for currency in sorted({currency for currency, _ in totals.sides}):
        lines = sorted(
            (account_id, sides)
            for (cur, account_id), sides in totals.sides.items()
            if cur == currency
        )
        for account_id, sides in lines:
            external_id, name = account(account_id)
            rows.append(_line(currency, account_id, external_id, name, sides))
        total = [sum(sides[0] for _, sides in lines), sum(sides[1] for _, sides in lines)]
        if total[0] != total[1]:
            raise TrialBalanceError(
                f"the {currency} trial balance does not sum to zero: debits {total[0]}, "
                f"credits {total[1]}"
            )
        rows.append(_line(currency, TOTAL, None, TOTAL, total))
    columns = ["currency", "account_id", "external_id", "name", "debits", "credits", "net"]
    return pd.DataFrame(rows, columns=[*columns, "net_text"])


def _line(
    currency: str, account_id: str, external_id: str | None, name: str, sides: list[int]
) -> dict[str, object]:
    debit_total, credit_total = sides
    net = debit_total - credit_total
    return {
        "currency": currency,
        "account_id": account_id,
        "external_id": external_id,
        "name": name,
        "debits": debit_total,
        "credits": credit_total,
        "net": net,
        "net_text": format_amount(net, currency),
    }


def daily_chart(daily: pd.DataFrame, path: Path) -> Path:
    """Daily volume per currency (in major units), one line each, as PNG or SVG by suffix."""
    # A Figure of its own (the Agg canvas), not pyplot: no global state, safe in a web worker.
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    axes = figure.subplots()
    if not daily.empty:  # a day without transfers is drawn as 0, not a line across it
        calendar = pd.date_range(min(daily["day"]), max(daily["day"]), freq="D")
    for currency, rows in daily.groupby("currency"):
        # For drawing only; the CSV keeps the exact text.
        major = rows["volume_text"].astype(float).set_axis(pd.to_datetime(rows["day"]))
        major = major.reindex(calendar, fill_value=0.0)
        axes.plot(major.index, major.to_numpy(), marker="o", label=str(currency))
    axes.set_title("Daily posted volume per currency")
    axes.set_xlabel("day (UTC)")
    axes.set_ylabel("volume (major units)")
    axes.grid(visible=True, alpha=0.3)
    every_day: list[str] = sorted(daily["day"].unique())
    shown = every_day[:: max(1, len(every_day) // 10)]  # whole days (not hours), <= ~10 labels
    axes.set_xticks(pd.to_datetime(shown).to_numpy(), labels=shown)
    if not daily.empty:
        axes.legend(title="currency")
    else:
        axes.text(0.5, 0.5, "no posted transfers", ha="center", transform=axes.transAxes)
    figure.autofmt_xdate()
    figure.savefig(path)
    return path


def write_report(
    report: Report, out_dir: Path, *, chart_format: Literal["png", "svg"] = "png"
) -> list[Path]:
    """``daily.csv``, ``trial_balance.csv``, ``largest.csv`` and ``daily_volume.<format>`` in
    ``out_dir`` (created if needed); their paths."""
    if chart_format not in {"png", "svg"}:
        raise ValueError(f"the chart is png or svg, not {chart_format!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, frame in (
        ("daily", report.daily),
        ("trial_balance", report.trial_balance),
        ("largest", report.largest),
    ):
        path = out_dir / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    written.append(daily_chart(report.daily, out_dir / f"daily_volume.{chart_format}"))
    return written
