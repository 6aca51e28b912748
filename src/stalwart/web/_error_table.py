# Copyright 2026 stalwart contributors
"""The default error table: stalwart's own error trees as problem documents.

| Exception | Status | ``code`` | Headers |
|---|---|---|---|
| ``StoreUnavailable`` | 503 | ``store-unavailable`` | ``Retry-After: 1`` |
| ``VersionConflict`` | 409; 412 if ``If-Match`` | ``version-conflict``; ``precondition-failed`` | |
| ``AlreadyExists`` | 409 | ``already-exists`` | |
| ``TransactionConflict`` | 409 | ``transaction-conflict`` | |
| ``InvalidRecord`` | 422 | ``invalid-record`` | |
| ``StoreConfigurationError`` | 500 | ``internal-error`` | |
| ``CircuitOpen`` | 503 | ``circuit-open`` | ``Retry-After`` from ``retry_after_s`` |
| ``BulkheadFull`` | 503 | ``bulkhead-full`` | ``Retry-After: 1`` |
| ``DeadlineExceeded`` | 504 | ``deadline-exceeded`` | |
| ``InProgress`` (idempotency) | 409 | ``idempotency-in-progress`` | ``Retry-After`` |
| ``FingerprintMismatch`` | 422 | ``idempotency-key-reused`` | |
| ``InvalidIdempotencyKey`` | 400 | ``idempotency-key-invalid`` | |
| ``ConfigError`` | 500 | ``internal-error`` | |

No default rule sends a ``detail`` taken from the exception's message: those name keys,
versions, hosts and settings. Configuration errors answer exactly as an unhandled exception
does (500 ``internal-error``), so nothing about the deployment shows from outside.
"""

from __future__ import annotations

import math
from typing import Any, Final

from stalwart.web._registry import ErrorRegistry, ErrorRule

INTERNAL_ERROR: Final = ErrorRule(500, "internal-error")
"""The rule for unhandled exceptions (and configuration errors): no detail, ever."""

RETRY_SOON: Final = {"Retry-After": "1"}


def retry_after(seconds: float) -> dict[str, str]:
    """A ``Retry-After`` header of whole seconds, at least 1 (RFC 9110 delay-seconds).

    >>> retry_after(0.2), retry_after(2.5)
    ({'Retry-After': '1'}, {'Retry-After': '3'})
    """
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def _retry_soon(_exc: Any) -> dict[str, str]:
    return RETRY_SOON


def default_errors() -> ErrorRegistry:
    """A new registry holding the default table (see the module docstring); add your own
    domain errors to it.

    >>> from stalwart.storage import VersionConflict, Key
    >>> errors = default_errors()
    >>> conflict = VersionConflict(Key("a"), 1, None)
    >>> errors.problem_for(conflict, conditional=False).status
    409
    >>> errors.problem_for(conflict, conditional=True).status
    412
    """
    # Imported here, not at module level: stalwart.idempotency imports stalwart.web.
    from stalwart.config import ConfigError  # noqa: PLC0415
    from stalwart.idempotency import (  # noqa: PLC0415
        FingerprintMismatch,
        InProgress,
        InvalidIdempotencyKey,
    )
    from stalwart.resilience import (  # noqa: PLC0415
        BulkheadFull,
        CircuitOpen,
        DeadlineExceeded,
    )
    from stalwart.storage import (  # noqa: PLC0415
        AlreadyExists,
        InvalidRecord,
        StoreConfigurationError,
        StoreUnavailable,
        TransactionConflict,
        VersionConflict,
    )
    from stalwart.web._conditional import STALE  # noqa: PLC0415

    precondition_failed = ErrorRule(412, "precondition-failed", detail=STALE)
    return ErrorRegistry(
        {
            StoreUnavailable: ErrorRule(
                503,
                "store-unavailable",
                detail="a data store is unavailable; retry later",
                headers=_retry_soon,
            ),
            VersionConflict: ErrorRule(
                409,
                "version-conflict",
                detail="the resource was changed by another request",
                when_conditional=precondition_failed,
            ),
            AlreadyExists: ErrorRule(409, "already-exists", detail="the resource already exists"),
            TransactionConflict: ErrorRule(
                409,
                "transaction-conflict",
                detail="a concurrent change conflicted; nothing was written",
            ),
            InvalidRecord: ErrorRule(
                422, "invalid-record", detail="the resource cannot be stored as given"
            ),
            StoreConfigurationError: INTERNAL_ERROR,
            CircuitOpen: ErrorRule(
                503,
                "circuit-open",
                detail="a dependency is failing; retry later",
                headers=lambda exc: retry_after(exc.retry_after_s),
            ),
            BulkheadFull: ErrorRule(
                503, "bulkhead-full", detail="too many concurrent requests", headers=_retry_soon
            ),
            DeadlineExceeded: ErrorRule(
                504, "deadline-exceeded", detail="the request ran out of time"
            ),
            InProgress: ErrorRule(
                409,
                "idempotency-in-progress",
                detail="a request with this idempotency key is still being processed",
                headers=lambda exc: retry_after(exc.retry_after),
            ),
            FingerprintMismatch: ErrorRule(
                422,
                "idempotency-key-reused",
                detail="this idempotency key was used with a different payload",
            ),
            InvalidIdempotencyKey: ErrorRule(400, "idempotency-key-invalid", detail=str),
            ConfigError: INTERNAL_ERROR,
        }
    )
