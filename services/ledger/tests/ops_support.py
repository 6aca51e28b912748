"""Files for the ops tests (and the crash worker): accounts and transfers as CSV text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

WALLETS = 20


def write_accounts(path: Path) -> None:
    """A debit-normal ``cash`` account and ``WALLETS`` no-overdraft wallets ``w0``..."""
    rows = [{"external_id": "cash", "name": "Cash", "currency": "USD", "normal_balance": "debit"}]
    rows += [
        {
            "external_id": f"w{i}",
            "name": f"Wallet {i}",
            "currency": "USD",
            "debits_must_not_exceed_credits": "true",
        }
        for i in range(WALLETS)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)


def transfer_rows(count: int) -> pd.DataFrame:
    """``count`` deposits from cash to the wallets in turn: 1.00, 1.01, ... USD."""
    return pd.DataFrame(
        {
            "external_id": [f"t{i}" for i in range(count)],
            "debit_account": "cash",
            "credit_account": [f"w{i % WALLETS}" for i in range(count)],
            "amount": [f"{1 + i % 100 / 100:.2f}" for i in range(count)],
            "currency": "USD",
        }
    )


def expected_minor_units(count: int) -> int:
    """The sum of :func:`transfer_rows` ``(count)``'s amounts, in cents."""
    return sum(100 + i % 100 for i in range(count))
