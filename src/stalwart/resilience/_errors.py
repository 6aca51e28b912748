"""Errors raised by stalwart.resilience itself.

The tree::

    ResilienceError
    ├── CircuitOpen          the breaker rejected the call (carries ``retry_after_s``)
    ├── BulkheadFull         no concurrency slot and no room (or time) to wait for one
    └── DeadlineExceeded     the caller's deadline passed (also a ``TimeoutError``)

Errors of the protected call are never wrapped: when retries are exhausted the caller's own
last exception is re-raised unchanged.
"""

from __future__ import annotations


class ResilienceError(Exception):
    """Root of every error stalwart.resilience raises on its own behalf."""


class CircuitOpen(ResilienceError):
    """The circuit breaker rejected the call without running it.

    ``retry_after_s`` is the time until the breaker admits probes again (``0.0`` while it is
    half-open and all probe permits are taken). It follows the Retry-After protocol, so a retry
    policy that retries ``CircuitOpen`` waits at least that long, or gives up when that would
    cross a deadline.
    """

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry after {retry_after_s:.3f}s")
        self.name = name
        self.retry_after_s = retry_after_s


class BulkheadFull(ResilienceError):
    """The bulkhead had no free slot and its wait queue was full or the wait timed out."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"bulkhead {name!r} is full: {reason}")
        self.name = name


class DeadlineExceeded(ResilienceError, TimeoutError):
    """The deadline of the current context passed before the work finished."""
