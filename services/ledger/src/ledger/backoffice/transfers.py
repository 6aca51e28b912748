"""Transfers: search and detail; post (all or part) and void pending ones; the manual
adjustment form, idempotent by the key embedded in it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Final

from flask import Blueprint, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from ledger.backoffice.accounts import find_account
from ledger.backoffice.context import (
    PAGE_SIZE,
    filtered_scan,
    ledger,
    login_required,
    operator,
    operator_required,
)
from ledger.domain.errors import IdempotencyKeyReused, InvalidRequest, LedgerError
from ledger.domain.models import NewTransfer, Transfer, TransferStatus
from ledger.domain.money import parse_amount

blueprint = Blueprint("transfers", __name__)
ADJUSTMENT_KEY_PREFIX: Final = "backoffice-adjustment:"
STATUSES: Final = [status.value for status in TransferStatus]


def _external_id_search(
    tenant: str, text: str, status: str | None, cursor: str | None
) -> tuple[list[Transfer], str | None]:
    return filtered_scan(
        lambda after: ledger().list_transfers(tenant, status=status, limit=100, cursor=after),
        lambda transfer: transfer.external_id == text,
        cursor,
    )


@blueprint.get("/transfers")
@login_required
def list_transfers() -> str:
    tenant = operator().tenant
    query = request.args.get("q", "").strip()
    account_text = request.args.get("account", "").strip()
    status = request.args.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    cursor = request.args.get("cursor") or None
    account = find_account(tenant, account_text) if account_text else None
    transfers: list[Transfer] = []
    next_cursor: str | None = None
    if account_text and account is None:
        flash(f"No account with id or external id {account_text!r}.", "error")
    elif query:
        try:
            exact = ledger().get_transfer(tenant, query) if cursor is None else None
        except LedgerError:
            exact = None
        if exact is not None:
            transfers = [exact]
        else:
            transfers, next_cursor = _external_id_search(tenant, query, status, cursor)
    else:
        page = ledger().list_transfers(
            tenant,
            account_id=account.id if account else None,
            status=status,
            limit=PAGE_SIZE,
            cursor=cursor,
        )
        transfers, next_cursor = page.data, page.next_cursor
    return render_template(
        "transfers.html",
        transfers=transfers,
        query=query,
        account_text=account_text,
        status=status or "",
        statuses=STATUSES,
        next_cursor=next_cursor,
    )


@blueprint.get("/transfers/<transfer_id>")
@login_required
def transfer_detail(transfer_id: str) -> str:
    transfer = ledger().get_transfer(operator().tenant, transfer_id)
    return render_template("transfer.html", transfer=transfer)


def _resolved(transfer_id: str, resolve: Callable[[], object], done: str) -> Response:
    """Run ``resolve`` (a post or a void) and go back to the transfer, with what happened."""
    try:
        resolve()
    except LedgerError as exc:
        flash(f"Not {done}: {exc.detail}", "error")
    else:
        flash(f"Transfer {done}.", "info")
    return redirect(url_for("transfers.transfer_detail", transfer_id=transfer_id))


@blueprint.post("/transfers/<transfer_id>/post")
@operator_required
def post_transfer(transfer_id: str) -> Response:
    tenant = operator().tenant
    transfer = ledger().get_transfer(tenant, transfer_id)
    text = request.form.get("amount", "").strip()

    def post() -> None:
        amount = parse_amount(text, transfer.currency) if text else None  # InvalidAmount
        ledger().post_transfer(tenant, transfer_id, amount=amount)

    return _resolved(transfer_id, post, "posted")


@blueprint.post("/transfers/<transfer_id>/void")
@operator_required
def void_transfer(transfer_id: str) -> Response:
    return _resolved(
        transfer_id, lambda: ledger().void_transfer(operator().tenant, transfer_id), "voided"
    )


@blueprint.get("/adjustments/new")
@operator_required
def new_adjustment() -> str:
    # The key is made when the form renders: every submission of THIS form (a double click,
    # the browser's resubmit) carries it, so the ledger creates one transfer for all of them.
    return render_template("adjustment.html", form={"key": uuid.uuid4().hex})


def _adjustment(tenant: str, form: dict[str, str]) -> NewTransfer:
    debit = find_account(tenant, form["debit"])
    credit = find_account(tenant, form["credit"])
    if debit is None or credit is None:
        missing = form["debit"] if debit is None else form["credit"]
        raise InvalidRequest(f"no account with id or external id {missing!r}")
    reason = form["reason"]
    if not reason:
        raise InvalidRequest("give a reason: it is kept in the transfer's metadata")
    try:
        return NewTransfer(
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=parse_amount(form["amount"], debit.currency),
            currency=debit.currency,
            external_id=None,
            metadata={"reason": reason[:500], "operator": operator().username},
        )
    except ValidationError as exc:
        raise InvalidRequest("; ".join(error["msg"] for error in exc.errors())) from None


@blueprint.post("/adjustments")
@operator_required
def create_adjustment() -> Response | tuple[str, int]:
    fields = ("key", "debit", "credit", "amount", "reason")
    form = {name: request.form.get(name, "").strip() for name in fields}
    tenant = operator().tenant
    try:
        uuid.UUID(hex=form["key"])
    except ValueError:
        error = "The form is damaged: open a new adjustment form."
        return render_template("adjustment.html", form=form, error=error), 400
    try:
        new = _adjustment(tenant, form)
        transfer, replayed = ledger().create_transfer(
            tenant, new, idempotency_key=ADJUSTMENT_KEY_PREFIX + form["key"]
        )
    except IdempotencyKeyReused:
        # Back to a submitted form, changed and sent again: it stays the one adjustment it was.
        error = "This form was already posted with other values; open a new adjustment form."
        return render_template("adjustment.html", form=form, error=error), 422
    except LedgerError as exc:
        # The same key stays in the re-rendered form: fixing and resubmitting still posts once.
        return render_template("adjustment.html", form=form, error=exc.detail), 422
    # A replay says so too: the browser may have dropped the first answer (a double click
    # cancels it), and the operator must still learn that the adjustment is posted, once.
    flash("Adjustment posted." if not replayed else "Adjustment posted (once).", "info")
    # Post/Redirect/Get: reloading the result page never submits again.
    return redirect(url_for("transfers.transfer_detail", transfer_id=transfer.id), 303)
