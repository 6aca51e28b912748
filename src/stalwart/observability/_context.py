"""Per-request log context held in one ContextVar.

The whole context is one immutable-by-convention dict: binding replaces it with a new dict, so
a task or thread that binds never mutates a mapping another task can see. asyncio tasks copy
the context when they are created and threads start empty, so nothing bleeds between them.
"""

from __future__ import annotations

import random
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

_EMPTY: Mapping[str, Any] = {}
_context: ContextVar[Mapping[str, Any]] = ContextVar("stalwart_log_context", default=_EMPTY)
_debug_sampled: ContextVar[bool] = ContextVar("stalwart_debug_sampled", default=False)

CORRELATION_ID = "correlation_id"


def bind(**values: Any) -> None:
    """Add ``values`` to the log context of the current task or thread.

    >>> clear_context(); bind(order_id=42); get_context()
    {'order_id': 42}
    """
    _context.set({**_context.get(), **values})


def unbind(*keys: str) -> None:
    """Remove ``keys`` from the log context; unknown keys are ignored.

    >>> clear_context(); bind(a=1, b=2); unbind("a"); get_context()
    {'b': 2}
    """
    current = _context.get()
    _context.set({k: v for k, v in current.items() if k not in keys})


def clear_context() -> None:
    """Empty the log context of the current task or thread.

    >>> bind(a=1); clear_context(); get_context()
    {}
    """
    _context.set(_EMPTY)


def get_context() -> dict[str, Any]:
    """A copy of the current log context.

    >>> clear_context(); get_context()
    {}
    """
    return dict(_context.get())


def context_view() -> Mapping[str, Any]:
    """The current context without copying it (read-only by convention; for processors)."""
    return _context.get()


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind ``values`` for the duration of a ``with`` block, then restore the previous context.

    >>> clear_context()
    >>> with bound(user="ada"):
    ...     get_context()
    {'user': 'ada'}
    >>> get_context()
    {}
    """
    token = _context.set({**_context.get(), **values})
    try:
        yield
    finally:
        _context.reset(token)


def correlation_id() -> str | None:
    """The correlation id bound in the current context, if any.

    >>> with bound(correlation_id="abc"):
    ...     correlation_id()
    'abc'
    """
    value = _context.get().get(CORRELATION_ID)
    return None if value is None else str(value)


@contextmanager
def request_context(
    correlation_id: str | None = None,
    *,
    debug_sample_rate: float = 0.0,
    **values: Any,
) -> Iterator[str]:
    """Scope one request or job: bind a correlation id (a new UUID4 if none) and ``values``.

    With ``debug_sample_rate`` > 0, that fraction of requests logs at DEBUG through
    :func:`get_logger` loggers whatever their configured level, so a sample of requests
    carries full detail.

    >>> with request_context("req-1", route="/orders") as cid:
    ...     cid, get_context()
    ('req-1', {'correlation_id': 'req-1', 'route': '/orders'})
    """
    if not 0.0 <= debug_sample_rate <= 1.0:
        raise ValueError(f"debug_sample_rate must be within [0, 1], got {debug_sample_rate}")
    cid = correlation_id or str(uuid.uuid4())
    # Sampling decides per request, not per line, so a sampled request is complete.
    sampled = debug_sample_rate > 0.0 and random.random() < debug_sample_rate  # noqa: S311
    token = _context.set({**_context.get(), CORRELATION_ID: cid, **values})
    sample_token = _debug_sampled.set(sampled)
    try:
        yield cid
    finally:
        _debug_sampled.reset(sample_token)
        _context.reset(token)


def debug_sampled() -> bool:
    """Whether the current request was picked to log at DEBUG."""
    return _debug_sampled.get()
