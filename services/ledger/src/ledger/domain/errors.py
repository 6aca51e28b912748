"""The ledger's errors: each has a stable ``code`` and the HTTP ``status`` the API answers.

Exception tree::

    LedgerError
    ├── NotFound                404 not_found (also another tenant's ids)
    ├── InvalidRequest          422 invalid_request (a rule the request models cannot express)
    │   ├── InvalidAmount       422 invalid_amount
    │   ├── SameAccount         422 same_account
    │   ├── InvalidWebhookUrl   422 invalid_webhook_url (not http(s); http outside development)
    │   └── InvalidCursor       400 invalid_cursor
    ├── InsufficientFunds       422 insufficient_funds (a constrained account would go negative)
    ├── CurrencyMismatch        422 currency_mismatch
    ├── AccountClosed           422 account_closed
    ├── BalanceOverflow         422 balance_overflow (a balance would leave the signed 64-bit range)
    ├── TransferNotPending      409 transfer_not_pending
    │   └── TransferExpired     409 transfer_expired (its timeout passed: void it or let it expire)
    ├── TransferNotPosted       409 transfer_not_posted (only posted transfers can be reversed)
    ├── AlreadyReversed         409 already_reversed
    ├── PostExceedsPending      422 post_exceeds_pending
    ├── IdempotencyKeyReused    422 idempotency_key_reused
    ├── ExternalIdTaken         409 external_id_taken
    ├── BatchTooLarge           422 batch_too_large
    ├── PreconditionFailed      412 precondition-failed (a stale account version)
    └── Contention              409 contention (optimistic-lock retries ran out; retry later)

A batch item's error carries its position in ``index`` (``extensions`` gives it to a problem
document), so a client knows which transfer failed and why.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LedgerError(Exception):
    """Root of every ledger error: ``code`` and ``status`` are stable, ``detail`` is for
    people and safe to show to the client that made the request.

    >>> error = InsufficientFunds("account a1 would go negative", index=3)
    >>> error.status, error.code, error.extensions
    (422, 'insufficient_funds', {'index': 3})
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "ledger_error"
    title: ClassVar[str] = "Ledger error"

    def __init__(self, detail: str, *, index: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.index = index
        """Position of the failing transfer inside a batch, else ``None``."""

    @property
    def extensions(self) -> dict[str, Any]:
        """Extension members for a problem document (``index`` for a batch item)."""
        return {} if self.index is None else {"index": self.index}

    def at(self, index: int) -> LedgerError:
        """This error, naming the batch position ``index`` (a new error of the same type)."""
        error = type(self)(self.detail, index=index)
        error.__cause__ = self.__cause__
        return error


class NotFound(LedgerError):
    status = 404
    code = "not_found"
    title = "Not found"


class InvalidRequest(LedgerError):
    status = 422
    code = "invalid_request"
    title = "Invalid request"


class InvalidWebhookUrl(InvalidRequest):
    code = "invalid_webhook_url"
    title = "Invalid webhook URL"


class InvalidAmount(InvalidRequest):
    code = "invalid_amount"
    title = "Invalid amount"


class SameAccount(InvalidRequest):
    code = "same_account"
    title = "Debit and credit account are the same"


class InvalidCursor(InvalidRequest):
    status = 400
    code = "invalid_cursor"
    title = "Invalid cursor"


class InsufficientFunds(LedgerError):
    status = 422
    code = "insufficient_funds"
    title = "Insufficient funds"


class CurrencyMismatch(LedgerError):
    status = 422
    code = "currency_mismatch"
    title = "Currency mismatch"


class AccountClosed(LedgerError):
    status = 422
    code = "account_closed"
    title = "Account closed"


class BalanceOverflow(LedgerError):
    status = 422
    code = "balance_overflow"
    title = "Balance overflow"


class TransferNotPending(LedgerError):
    status = 409
    code = "transfer_not_pending"
    title = "Transfer not pending"


class TransferExpired(TransferNotPending):
    code = "transfer_expired"
    title = "Pending transfer expired"


class TransferNotPosted(LedgerError):
    status = 409
    code = "transfer_not_posted"
    title = "Transfer not posted"


class AlreadyReversed(LedgerError):
    status = 409
    code = "already_reversed"
    title = "Transfer already reversed"


class PostExceedsPending(LedgerError):
    status = 422
    code = "post_exceeds_pending"
    title = "Post exceeds the pending amount"


class IdempotencyKeyReused(LedgerError):
    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused with another request"


class ExternalIdTaken(LedgerError):
    status = 409
    code = "external_id_taken"
    title = "External id taken"


class BatchTooLarge(LedgerError):
    status = 422
    code = "batch_too_large"
    title = "Batch too large"


class PreconditionFailed(LedgerError):
    # The web kit's code for every other 412 (a weak or foreign ETag): one code for clients.
    status = 412
    code = "precondition-failed"
    title = "Precondition failed"


class Contention(LedgerError):
    status = 409
    code = "contention"
    title = "Too much contention"


def error_types() -> list[type[LedgerError]]:
    """Every concrete ledger error type, root first (what an API registers, in one loop)."""
    found: list[type[LedgerError]] = [LedgerError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found
