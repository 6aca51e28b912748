"""Accounts: search, the list (cursor pagination), detail with balances, journal and chart."""

from __future__ import annotations

from typing import Final

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ledger.backoffice.charts import balance_chart
from ledger.backoffice.context import (
    PAGE_SIZE,
    filtered_scan,
    ledger,
    login_required,
    operator,
)
from ledger.domain.errors import LedgerError
from ledger.domain.models import Account, Entry

blueprint = Blueprint("accounts", __name__)
CHART_MAX_ENTRIES: Final = 5_000
"""The chart reads at most this many journal entries (the oldest): a bounded page."""


@blueprint.get("/")
@login_required
def index() -> Response:
    return redirect(url_for("accounts.list_accounts"))


def find_account(tenant: str, text: str) -> Account | None:
    """The account whose id or external id is ``text`` (None when neither)."""
    if not text:
        return None
    for lookup in (ledger().get_account, ledger().get_account_by_external_id):
        try:
            return lookup(tenant, text)
        except LedgerError:  # not one of this tenant's (or not shaped like an id)
            continue
    return None


def _name_search(tenant: str, text: str, cursor: str | None) -> tuple[list[Account], str | None]:
    """Accounts whose name contains ``text`` (case-insensitive)."""
    needle = text.casefold()
    return filtered_scan(
        lambda after: ledger().list_accounts(tenant, limit=100, cursor=after),
        lambda account: needle in account.name.casefold(),
        cursor,
    )


@blueprint.get("/accounts")
@login_required
def list_accounts() -> str:
    tenant = operator().tenant
    query = request.args.get("q", "").strip()
    cursor = request.args.get("cursor") or None
    if query:
        exact = find_account(tenant, query) if cursor is None else None
        if exact is not None:
            accounts, next_cursor = [exact], None
        else:
            accounts, next_cursor = _name_search(tenant, query, cursor)
    else:
        page = ledger().list_accounts(tenant, limit=PAGE_SIZE, cursor=cursor)
        accounts, next_cursor = page.data, page.next_cursor
    return render_template("accounts.html", accounts=accounts, query=query, next_cursor=next_cursor)


def journal(tenant: str, account_id: str, limit: int) -> list[Entry]:
    """The first ``limit`` entries of the account's journal, oldest first."""
    entries: list[Entry] = []
    cursor: str | None = None
    while len(entries) < limit:
        page = ledger().list_entries(
            tenant, account_id, limit=min(100, limit - len(entries)), cursor=cursor
        )
        entries += page.data
        cursor = page.next_cursor
        if cursor is None:
            break
    return entries


@blueprint.get("/accounts/<account_id>")
@login_required
def account_detail(account_id: str) -> str:
    tenant = operator().tenant
    account = ledger().get_account(tenant, account_id)
    balance = ledger().get_balance(tenant, account_id)
    cursor = request.args.get("cursor") or None
    entries = ledger().list_entries(tenant, account_id, limit=PAGE_SIZE, cursor=cursor)
    return render_template(
        "account.html", account=account, balance=balance, entries=entries, cursor=cursor
    )


@blueprint.get("/accounts/<account_id>/chart.svg")
@login_required
def account_chart(account_id: str) -> Response:
    tenant = operator().tenant
    account = ledger().get_account(tenant, account_id)
    svg = balance_chart(account, journal(tenant, account_id, CHART_MAX_ENTRIES))
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "no-store"})
