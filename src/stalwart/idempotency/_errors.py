# Copyright 2026 stalwart contributors
"""Idempotency errors: one root, four cases.

Exception tree::

    IdempotencyError
    ├── InProgress             another caller holds a live lease on the key (retry later)
    ├── FingerprintMismatch    the key was first used with a different payload
    ├── LeaseLost              our lease was taken over; our completion/release was refused
    ├── ResultNotStored        the key's work ran, but its result could not be stored
    └── InvalidIdempotencyKey  the key is empty, too long or malformed
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stalwart.storage import Key


class IdempotencyError(Exception):
    """Root of every error the idempotency layer raises."""


class InProgress(IdempotencyError):
    """Another execution holds a live lease on this key; retry after ``retry_after`` seconds."""

    def __init__(self, key: Key, retry_after: float) -> None:
        super().__init__(f"an execution for {key} is in progress; retry in {retry_after:.1f}s")
        self.key = key
        self.retry_after = retry_after


class FingerprintMismatch(IdempotencyError):
    """The key was first used with another payload (different fingerprint)."""

    def __init__(self, key: Key) -> None:
        super().__init__(f"idempotency key {key} was first used with a different payload")
        self.key = key


class LeaseLost(IdempotencyError):
    """Our lease expired and another worker took the key over; nothing of ours was written.

    ``result`` holds the value the late worker computed, when there is one, so a caller can
    still decide what to do with it.
    """

    def __init__(self, key: Key, owner: str, result: Any = None) -> None:
        super().__init__(f"lease on {key} held by owner {owner} was taken over by another worker")
        self.key = key
        self.owner = owner
        self.result = result


class ResultNotStored(IdempotencyError):
    """The key's work ran once, but its result could not be stored (it could not be encoded,
    or the store refused it), so there is nothing to replay. The work does not run again
    while the record lives (the layer's retention)."""

    def __init__(self, key: Key, reason: str) -> None:
        super().__init__(
            f"the work for {key} already ran, but its result was not stored ({reason}); "
            "it will not run again while the record lives"
        )
        self.key = key
        self.reason = reason


class InvalidIdempotencyKey(IdempotencyError, ValueError):
    """An idempotency key (an HTTP header, or a function's key) is empty, longer than 255
    characters or malformed."""
