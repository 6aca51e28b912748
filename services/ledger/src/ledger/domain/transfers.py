"""Transfer rules (pure): ids from idempotency keys, request fingerprints, the two-phase state
machine, reversals and linked batches.

A transfer touches two accounts of one currency. Created posted, it moves ``amount`` from the
debit account's posted debits to the credit account's posted credits. Created pending, it
reserves ``amount`` in both pending totals; it is later posted (fully or partly: the rest is
released), voided, or expires -- exactly once, since each resolution replaces the transfer
record at the version read. A reversal is a new posted transfer the other way, linked both
ways; the original's ``reversed_by`` is set in the same transaction, so it happens once.

>>> debit, credit = create_movements(500, pending=True)
>>> debit
Movement(side=<Side.DEBIT: 'debit'>, pending_delta=500, posted_delta=0)
>>> post_movements(500, 200)[0]
Movement(side=<Side.DEBIT: 'debit'>, pending_delta=-500, posted_delta=200)
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Final

from ledger.domain.accounts import check_open
from ledger.domain.balances import BalanceState, Movement
from ledger.domain.errors import (
    AlreadyReversed,
    CurrencyMismatch,
    InvalidAmount,
    InvalidRequest,
    PostExceedsPending,
    SameAccount,
    TransferExpired,
    TransferNotPending,
    TransferNotPosted,
)
from ledger.domain.models import NewTransfer, Side, TransferStatus

LEDGER_NAMESPACE: Final = uuid.UUID("6c0f3e0a-4a8e-5b52-9d1c-2f6e3b8a9c41")
"""Namespace of the derived (UUIDv5) transfer ids."""
MAX_BATCH_TRANSFERS: Final = 100
MAX_IDEMPOTENCY_KEY_CHARS: Final = 255


def transfer_id(tenant: str, idempotency_key: str, *scope: str) -> str:
    """The id of the transfer a (tenant, idempotency key) creates: a retry -- even after a crash
    right after the commit -- finds the transfer instead of creating a second one. ``scope``
    separates the kinds of requests (``"reversal"``, ``"batch", "3"``) sharing a key space.

    >>> transfer_id("acme", "k1") == transfer_id("acme", "k1") != transfer_id("other", "k1")
    True
    """
    check_idempotency_key(idempotency_key)
    return str(uuid.uuid5(LEDGER_NAMESPACE, "\n".join((tenant, idempotency_key, *scope))))


def check_idempotency_key(key: str) -> str:
    """An idempotency key is 1 to 255 characters of valid text (Stripe's limit)."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidRequest(
            f"an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, got {key!r}"
        )
    try:
        key.encode()
    except UnicodeEncodeError:
        raise InvalidRequest("an idempotency key must be valid text (no lone surrogate)") from None
    return key


def fingerprint(payload: object) -> str:
    """SHA-256 of the canonical JSON of a request: the same key with another body differs."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_new_transfer(new: NewTransfer, debit: BalanceState, credit: BalanceState) -> None:
    """The rules a new transfer must meet before it is applied: two distinct open accounts,
    both in the transfer's currency."""
    if new.debit_account_id == new.credit_account_id:
        raise SameAccount("debit_account_id and credit_account_id must differ")
    for state in (debit, credit):
        if state.currency != new.currency:
            raise CurrencyMismatch(
                f"account {state.account_id} holds {state.currency}, "
                f"the transfer is in {new.currency}"
            )
        check_open(state)


def create_movements(amount: int, *, pending: bool) -> tuple[Movement, Movement]:
    """The (debit, credit) movements of a new transfer."""
    pending_delta, posted_delta = (amount, 0) if pending else (0, amount)
    return (
        Movement(Side.DEBIT, pending_delta, posted_delta),
        Movement(Side.CREDIT, pending_delta, posted_delta),
    )


def post_movements(pending_amount: int, post_amount: int) -> tuple[Movement, Movement]:
    """Posting a reservation: release all of it, post ``post_amount`` (the rest is freed)."""
    return (
        Movement(Side.DEBIT, -pending_amount, post_amount),
        Movement(Side.CREDIT, -pending_amount, post_amount),
    )


def void_movements(pending_amount: int) -> tuple[Movement, Movement]:
    """Voiding (or expiring) a reservation: release all of it, post nothing."""
    return Movement(Side.DEBIT, -pending_amount, 0), Movement(Side.CREDIT, -pending_amount, 0)


def check_pending(status: TransferStatus, transfer_id: str) -> None:
    """Raise ``TransferNotPending`` unless the transfer can still be posted or voided."""
    if status is not TransferStatus.PENDING:
        raise TransferNotPending(f"transfer {transfer_id} is {status}, not pending")


def resolve_post_amount(
    pending_amount: int, requested: int | None, *, expires_at: float | None, now: float
) -> int:
    """The amount to post: all of the reservation by default, or a part of it. A reservation
    whose timeout passed cannot be posted any more (it is voided by expiry)."""
    if expires_at is not None and now >= expires_at:
        raise TransferExpired("the pending transfer's timeout has passed; it can only be voided")
    if requested is None:
        return pending_amount
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise InvalidAmount(f"a post amount must be a positive integer, got {requested!r}")
    if requested > pending_amount:
        raise PostExceedsPending(f"cannot post {requested}: the transfer reserved {pending_amount}")
    return requested


def check_reversible(status: TransferStatus, reversed_by: str | None, transfer_id: str) -> None:
    """A reversal needs a posted transfer not reversed yet."""
    if reversed_by is not None:
        raise AlreadyReversed(f"transfer {transfer_id} was already reversed by {reversed_by}")
    if status is not TransferStatus.POSTED:
        raise TransferNotPosted(
            f"transfer {transfer_id} is {status}; only posted transfers can be reversed"
        )
