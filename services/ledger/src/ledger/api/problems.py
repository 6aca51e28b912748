"""The ledger's errors as problem+json: one registry for the app, examples for OpenAPI.

Every :class:`~ledger.domain.errors.LedgerError` type is registered (one loop over the tree)
with its own stable ``code``, its ``status``, a ``type`` URI naming the kind of problem, and its
message as ``detail`` (ledger messages are written for the client that made the request). A
batch item's error carries its position as the extension member ``index``.
"""

from __future__ import annotations

from typing import Any, Final

from ledger.domain.errors import LedgerError, error_types
from stalwart.web import ErrorRegistry, HttpProblem, default_errors, problem_responses

PROBLEM_TYPE_BASE: Final = "https://git.example.com/stalwart/stalwart/blob/main/docs/ledger.md#"
"""Each ledger problem's ``type`` is this page's anchor plus the code (see docs/ledger.md)."""

EXAMPLE_DETAILS: Final[dict[str, str]] = {
    "ledger_error": "the request cannot be applied to the ledger",
    "not_found": "no account 0193a0d2-7a10-7cc1-9e2b-3f4f0c6f1a20",
    "invalid_request": "the request breaks a ledger rule",
    "invalid_amount": "amount must be a positive integer of minor units",
    "same_account": "the debit and credit accounts must differ",
    "invalid_webhook_url": "a webhook URL must be https (http only to localhost in development)",
    "invalid_cursor": "the cursor is not one this list returned",
    "insufficient_funds": "account 0193a0d2-7a10-7cc1-9e2b-3f4f0c6f1a20 would go negative",
    "currency_mismatch": "the transfer is in EUR but account 0193a0d2-... holds USD",
    "account_closed": "account 0193a0d2-7a10-7cc1-9e2b-3f4f0c6f1a20 is closed",
    "balance_overflow": "a balance would leave the signed 64-bit range",
    "transfer_not_pending": "transfer 5b2a1f0e-... is posted, not pending",
    "transfer_expired": "transfer 5b2a1f0e-... expired before it was posted",
    "transfer_not_posted": "only a posted transfer can be reversed",
    "already_reversed": "transfer 5b2a1f0e-... was already reversed",
    "post_exceeds_pending": "cannot post 2000 of a pending transfer of 1500",
    "idempotency_key_reused": "this Idempotency-Key was used with another request",
    "external_id_taken": "external_id 'wallet-cus_1042' is already used by another account",
    "batch_too_large": "the batch needs 104 store operations; this store allows 100",
    "precondition-failed": "the account changed since this ETag was read",
    "contention": "too many concurrent writes on these accounts; retry later",
}


def problem_type(code: str) -> str:
    """The ``type`` URI of the ledger problem ``code``."""
    return PROBLEM_TYPE_BASE + code.replace("_", "-")


def _detail(exc: Any) -> str:
    return str(exc.detail)


def _extensions(exc: Any) -> dict[str, Any]:
    return dict(exc.extensions)


def error_registry() -> ErrorRegistry:
    """The web kit's defaults plus every ledger error (a new registry per call)."""
    errors = default_errors()
    for error_type in error_types():
        errors.register(
            error_type,
            status=error_type.status,
            code=error_type.code,
            type_=problem_type(error_type.code),
            title=error_type.title,
            detail=_detail,
            extensions=_extensions,
        )
    return errors


def example_problem(error_type: type[LedgerError]) -> HttpProblem:
    """The OpenAPI example of ``error_type``'s problem."""
    return HttpProblem(
        error_type.status,
        error_type.code,
        EXAMPLE_DETAILS[error_type.code],
        title=error_type.title,
        type_=problem_type(error_type.code),
    )


def ledger_responses(
    *error_types_: type[LedgerError], more: tuple[HttpProblem, ...] = ()
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` declaring ``error_types_`` (and the ``more`` problems), each with
    an example, grouped by status."""
    return problem_responses(*(example_problem(t) for t in error_types_), *more)
