"""``ledger export``: accounts, balances, transfers or entries to a CSV or Parquet file, streamed
page by page through the facade's list methods (one page of :data:`PAGE_SIZE` objects in memory
at a time, whatever the ledger's size) into :func:`stalwart.frames.write_pages`.

Amounts are integers in minor units (as the API returns them), times are ISO 8601 UTC text,
``metadata`` (and an entry's ``balance_after``) compact JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Literal, get_args

import pandas as pd
from pydantic import BaseModel

from ledger.domain.models import Account, Balance, Entry, Page, Transfer
from ledger.service import SyncLedger
from stalwart.frames import write_pages

type What = Literal["accounts", "balances", "transfers", "entries"]

PAGE_SIZE: Final = 100
"""Objects per list call, and rows per page written (the facade's largest page)."""


def _dtype(annotation: object) -> str:
    """The pandas dtype of a model field: fixed per column, so that every page has the same
    Parquet schema (a column empty on the first page would otherwise be typed null)."""
    kinds = set(get_args(annotation)) or {annotation}
    kinds.discard(type(None))
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "Int64"
    return "string"  # text, enums, ISO times, and JSON text for dicts


def _dtypes(model: type[BaseModel], *, without: str = "") -> dict[str, str]:
    return {
        name: _dtype(field.annotation)
        for name, field in model.model_fields.items()
        if name != without
    }


DTYPES: Final[dict[str, dict[str, str]]] = {
    "accounts": _dtypes(Account, without="flags")
    | {"debits_must_not_exceed_credits": "boolean", "credits_must_not_exceed_debits": "boolean"},
    "balances": _dtypes(Balance) | {"external_id": "string", "name": "string"},
    "transfers": _dtypes(Transfer),
    "entries": _dtypes(Entry),
}
"""Each export's columns, in order, with their dtypes."""
_JSON_COLUMNS: Final = ("metadata", "balance_after")


def _frame(rows: list[dict[str, object]], dtypes: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(dtypes))
    for column in _JSON_COLUMNS:
        if column in frame:
            frame[column] = frame[column].map(lambda value: json.dumps(value, sort_keys=True))
    return frame.astype(dtypes)


def _all[T: BaseModel](fetch: Callable[[str | None], Page[T]]) -> Iterator[list[T]]:
    """Every page of a list method, ``fetch(cursor)``, one at a time."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield page.data
        if not page.has_more:
            return
        cursor = page.next_cursor


def _account_row(account: Account) -> dict[str, object]:
    row = account.model_dump(mode="json", exclude={"flags"})
    return row | account.flags.model_dump()


def _accounts(ledger: SyncLedger, tenant: str, account_id: str | None) -> Iterator[list[Account]]:
    if account_id is not None:
        yield [ledger.get_account(tenant, account_id)]
        return
    yield from _all(lambda cursor: ledger.list_accounts(tenant, limit=PAGE_SIZE, cursor=cursor))


def _entries_of(
    ledger: SyncLedger, tenant: str, account_id: str
) -> Callable[[str | None], Page[Entry]]:
    return lambda cursor: ledger.list_entries(tenant, account_id, limit=PAGE_SIZE, cursor=cursor)


def _rows(
    ledger: SyncLedger,
    tenant: str,
    what: What,
    *,
    account_id: str | None,
    created_gte: float | None,
    created_lt: float | None,
) -> Iterator[list[dict[str, object]]]:
    if what == "accounts":
        for accounts in _accounts(ledger, tenant, account_id):
            yield [_account_row(account) for account in accounts]
    elif what == "balances":
        for accounts in _accounts(ledger, tenant, account_id):
            yield [
                ledger.get_balance(tenant, account.id).model_dump(mode="json")
                | {"external_id": account.external_id, "name": account.name}
                for account in accounts
            ]
    elif what == "transfers":
        for transfers in _all(
            lambda cursor: ledger.list_transfers(
                tenant,
                account_id=account_id,
                limit=PAGE_SIZE,
                cursor=cursor,
                created_gte=created_gte,
                created_lt=created_lt,
            )
        ):
            yield [transfer.model_dump(mode="json") for transfer in transfers]
    else:
        low = float("-inf") if created_gte is None else created_gte
        high = float("inf") if created_lt is None else created_lt
        for accounts in _accounts(ledger, tenant, account_id):
            for account in accounts:
                for entries in _all(_entries_of(ledger, tenant, account.id)):
                    yield [
                        entry.model_dump(mode="json")
                        for entry in entries
                        if low <= entry.created_at.timestamp() < high
                    ]


def iter_pages(
    ledger: SyncLedger,
    tenant: str,
    what: What,
    *,
    account_id: str | None = None,
    created_gte: float | None = None,
    created_lt: float | None = None,
) -> Iterator[pd.DataFrame]:
    """The export as DataFrames of at most :data:`PAGE_SIZE` rows, each made only when the
    previous one has been consumed (one empty frame if there is nothing)."""
    if what not in DTYPES:
        raise ValueError(f"export accounts, balances, transfers or entries, not {what!r}")
    dtypes = DTYPES[what]
    empty = True
    for rows in _rows(
        ledger,
        tenant,
        what,
        account_id=account_id,
        created_gte=created_gte,
        created_lt=created_lt,
    ):
        if rows:
            empty = False
            yield _frame(rows, dtypes)
    if empty:
        yield _frame([], dtypes)  # the header (schema) of an empty export


def export(
    ledger: SyncLedger,
    tenant: str,
    what: What,
    path: Path,
    *,
    account_id: str | None = None,
    created_gte: float | None = None,
    created_lt: float | None = None,
) -> int:
    """Write ``what`` to ``path`` (``.csv`` or ``.parquet``); return the number of rows.

    ``account_id``: only that account (accounts, balances), its transfers or its journal.
    ``created_gte`` / ``created_lt`` (epoch seconds): transfers and entries created in
    ``[created_gte, created_lt)``.
    """
    return write_pages(
        iter_pages(
            ledger,
            tenant,
            what,
            account_id=account_id,
            created_gte=created_gte,
            created_lt=created_lt,
        ),
        Path(path),
    )
