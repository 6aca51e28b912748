"""One way to compose the pieces: fallback → deadline → retry → breaker → bulkhead → call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stalwart.resilience._deadline import with_deadline


class Decorator(Protocol):
    """Anything that wraps a callable and keeps its signature (every stalwart piece does)."""

    def __call__[**P, R](self, fn: Callable[P, R], /) -> Callable[P, R]: ...


def resilient[**P, R](
    *,
    fallback: Callable[[Callable[P, R]], Callable[P, R]] | None = None,
    deadline_s: float | None = None,
    retry: Decorator | None = None,
    breaker: Decorator | None = None,
    bulkhead: Decorator | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Compose the resilience pieces in the documented order, for sync or coroutine functions.

    From the outside in: ``fallback`` sees every failure, including stalwart's own
    (``CircuitOpen``, ``BulkheadFull``, ``DeadlineExceeded``); the ``deadline_s`` bounds the
    whole call, waits included, and retry never sleeps past it; ``retry`` runs each attempt
    through the ``breaker``, which therefore counts every attempt and stops the retries as soon
    as it opens; the ``bulkhead`` is innermost so a slot is held only while an attempt runs,
    never during a backoff wait, and an open breaker rejects callers before they take a slot.
    See ``docs/resilience.md`` for the reasoning.

    >>> from stalwart.resilience import CircuitBreaker, fallback, retry
    >>> @resilient(
    ...     fallback=fallback(on=ConnectionError, value="cached"),
    ...     deadline_s=2.0,
    ...     retry=retry(on=ConnectionError, attempts=2, base_s=0.0),
    ...     breaker=CircuitBreaker("quotes"),
    ... )
    ... def quote() -> str:
    ...     raise ConnectionError("down")
    >>> quote()
    'cached'
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        wrapped = fn
        if bulkhead is not None:
            wrapped = bulkhead(wrapped)
        if breaker is not None:
            wrapped = breaker(wrapped)
        if retry is not None:
            wrapped = retry(wrapped)
        if deadline_s is not None:
            wrapped = with_deadline(deadline_s)(wrapped)
        if fallback is not None:
            wrapped = fallback(wrapped)
        return wrapped

    return decorate
