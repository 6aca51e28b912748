"""Server-rendered charts (matplotlib): SVG bytes an ``<img>`` shows without any JavaScript.

``matplotlib.figure.Figure`` directly, not pyplot: pyplot keeps global state, and the
back-office renders charts on several request threads at once.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from ledger.domain.models import Account, Entry, NormalBalance
from ledger.domain.money import exponent

DAY_S: Final = 86_400


def time_format(span_s: float) -> str:
    """The ``strftime`` format of the time axis for a chart spanning ``span_s`` seconds.

    >>> time_format(30 * DAY_S), time_format(3600), time_format(5)
    ('%Y-%m-%d', '%m-%d %H:%M', '%H:%M:%S')
    """
    if span_s >= 2 * DAY_S:
        return "%Y-%m-%d"
    if span_s >= 60:
        return "%m-%d %H:%M"
    return "%H:%M:%S"


def balance_series(
    account: Account, entries: Sequence[Entry]
) -> tuple[list[datetime], list[float], list[float]]:
    """(times, posted, pending) balances in major units after each journal entry, signed by
    the account's normal balance (floats: for drawing only, never for money)."""
    scale = 10 ** exponent(account.currency)
    sign = 1 if account.normal_balance is NormalBalance.CREDIT else -1
    times: list[datetime] = []
    posted: list[float] = []
    pending: list[float] = []
    for entry in entries:
        totals = entry.balance_after
        posted_net = totals.credits_posted - totals.debits_posted
        pending_net = posted_net + totals.credits_pending - totals.debits_pending
        times.append(entry.created_at)
        posted.append(sign * posted_net / scale)
        pending.append(sign * pending_net / scale)
    return times, posted, pending


def balance_chart(account: Account, entries: Sequence[Entry]) -> bytes:
    """An SVG step chart of the account's posted balance (and with pending) over time."""
    # Imported here: matplotlib adds ~1 s to the start of every `ledger` command otherwise.
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: PLC0415

    times, posted, pending = balance_series(account, entries)
    figure = Figure(figsize=(8, 3), dpi=100)
    axes = figure.subplots()
    if times:
        when = [moment.timestamp() for moment in times]
        label = time_format(when[-1] - when[0])
        axes.xaxis.set_major_locator(MaxNLocator(6))
        axes.xaxis.set_major_formatter(
            FuncFormatter(lambda at, _: datetime.fromtimestamp(at, UTC).strftime(label))
        )
        axes.step(when, posted, where="post", label="posted", color="#1f5f8b")
        axes.step(
            when, pending, where="post", label="with pending", color="#c77d1a", linestyle="--"
        )
        axes.legend(loc="upper left", frameon=False)
    else:
        axes.text(0.5, 0.5, "no entries yet", ha="center", va="center", transform=axes.transAxes)
    axes.set_ylabel(account.currency)
    axes.set_xlabel("UTC")
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="svg")
    return out.getvalue()
