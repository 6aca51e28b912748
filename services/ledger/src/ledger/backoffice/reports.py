"""Reports: a date range -> the daily volume per currency, the trial balance and the largest
movements (``ledger.ops.reports``), as tables, with the report's chart inline."""

from __future__ import annotations

import base64
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from flask import Blueprint, render_template, request

from ledger.backoffice.context import ledger, login_required, operator
from ledger.domain.money import format_amount

if TYPE_CHECKING:
    import pandas as pd

blueprint = Blueprint("reports", __name__)
DEFAULT_DAYS: Final = 30
MAX_DAYS: Final = 366
"""The longest range one page computes (a report reads every transfer of the range)."""


def _range() -> tuple[date, date] | str:
    """[start, end) from the query string (default: the last 30 days), or why not."""
    today = datetime.now(UTC).date()
    try:
        start = date.fromisoformat(
            request.args.get("start") or str(today - timedelta(DEFAULT_DAYS))
        )
        end = date.fromisoformat(request.args.get("end") or str(today + timedelta(1)))
    except ValueError:
        return "Dates are written YYYY-MM-DD."
    if end <= start:
        return "The end date must come after the start date."
    if (end - start).days > MAX_DAYS:
        return f"One report covers at most {MAX_DAYS} days."
    return start, end


def _amounts(frame: pd.DataFrame, column: str) -> list[str]:
    """A column of minor units as decimal text in each row's currency."""
    return [
        format_amount(int(value), currency)
        for value, currency in zip(frame[column], frame["currency"], strict=True)
    ]


def _html(frame: pd.DataFrame) -> str:
    """The table, escaped, with the ``_text`` suffix dropped from the column names."""
    shown = frame.rename(columns=lambda name: str(name).removesuffix("_text").replace("_", " "))
    return str(shown.to_html(index=False, border=0, classes="report", na_rep="—"))


@blueprint.get("/reports")
@login_required
def report() -> str | tuple[str, int]:
    chosen = _range()
    if isinstance(chosen, str):
        args = request.args
        page = render_template(
            "reports.html", start=args.get("start"), end=args.get("end"), error=chosen
        )
        return page, 422
    start, end = chosen
    if "start" not in request.args:  # the form alone, with the default range filled in
        return render_template("reports.html", start=start, end=end)
    # Imported here: pandas adds seconds to the start of every worker otherwise.
    from ledger.ops.reports import build_report, write_report  # noqa: PLC0415

    built = build_report(ledger(), operator().tenant, start, end)
    with tempfile.TemporaryDirectory() as out:
        written = write_report(built, Path(out), chart_format="svg")
        chart = next(path.read_bytes() for path in written if path.suffix == ".svg")
    tables = {
        "Daily volume per currency": built.daily[["day", "currency", "count", "volume_text"]],
        "Trial balance (posted; each currency sums to zero)": built.trial_balance.assign(
            debits=_amounts(built.trial_balance, "debits"),
            credits=_amounts(built.trial_balance, "credits"),
        )[["currency", "name", "external_id", "debits", "credits", "net_text"]],
        "Largest movements": built.largest.assign(
            created_at=[moment[:19].replace("T", " ") for moment in built.largest["created_at"]],
            transfer_id=[transfer_id[:8] + "…" for transfer_id in built.largest["transfer_id"]],
        )[
            [
                "created_at",
                "currency",
                "amount_text",
                "debit_account",
                "credit_account",
                "external_id",
                "transfer_id",
            ]
        ],
    }
    return render_template(
        "reports.html",
        start=start,
        end=end,
        tables={title: _html(frame) for title, frame in tables.items()},
        chart=base64.b64encode(chart).decode(),
    )
