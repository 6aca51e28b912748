"""Deadlines carried in a context variable, inherited by every nested call.

A deadline is an absolute ``time.monotonic()`` instant. Nested deadlines take the minimum, so a
callee can only shorten its caller's budget, never extend it. Async code gets real cancellation
(``asyncio.timeout``) turned into :class:`DeadlineExceeded`; sync code cannot be interrupted
safely, so it reads :func:`remaining` / :func:`timeout_for` to size its client timeouts.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Self, cast

from stalwart.resilience._decorate import is_coroutine_function
from stalwart.resilience._errors import DeadlineExceeded

_DEADLINE: ContextVar[float | None] = ContextVar("stalwart_deadline", default=None)


def current_deadline() -> float | None:
    """The absolute ``time.monotonic()`` deadline of this context, or ``None``.

    >>> current_deadline() is None
    True
    """
    return _DEADLINE.get()


def remaining() -> float | None:
    """Seconds left before the current deadline (never negative), or ``None`` without one.

    >>> with deadline(5):
    ...     0 < remaining() <= 5
    True
    """
    at = _DEADLINE.get()
    if at is None:
        return None
    left = at - time.monotonic()
    return max(0.0, left)


def timeout_for(default_s: float) -> float:
    """A client timeout: ``default_s`` capped by the time left before the current deadline.

    Raises :class:`DeadlineExceeded` when no time is left, since a zero timeout would mean
    "block forever" to several clients.

    >>> with deadline(0.5):
    ...     timeout_for(10.0) <= 0.5
    True
    """
    at = _DEADLINE.get()
    if at is None:
        return default_s
    left = at - time.monotonic()
    if left <= 0.0:
        raise DeadlineExceeded("deadline passed before the call started")
    return min(default_s, left)


def check_deadline() -> None:
    """Raise :class:`DeadlineExceeded` if the current deadline has passed.

    >>> check_deadline()  # no deadline: nothing happens
    """
    at = _DEADLINE.get()
    if at is not None and time.monotonic() >= at:
        raise DeadlineExceeded("deadline passed")


class deadline:  # noqa: N801 - used like a function: ``with deadline(2.0):``
    """Bound the enclosed block (and everything it calls) to ``seconds`` from now.

    Sync (``with``): sets the deadline that :func:`remaining` reports; the block is not
    interrupted. Async (``async with``): also cancels the block at the deadline and raises
    :class:`DeadlineExceeded` (a ``TimeoutError``).

    >>> with deadline(2.0):
    ...     with deadline(10.0):  # nested: the earlier deadline wins
    ...         remaining() <= 2.0
    True
    """

    __slots__ = ("_at", "_timeout", "_token")

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"deadline seconds must be >= 0, got {seconds}")
        self._at = seconds
        self._token: Token[float | None] | None = None
        self._timeout: asyncio.Timeout | None = None

    def _enter(self) -> float:
        at = time.monotonic() + self._at
        outer = _DEADLINE.get()
        if outer is not None and outer < at:
            at = outer
        self._token = _DEADLINE.set(at)
        return at

    def _exit(self) -> None:
        assert self._token is not None
        _DEADLINE.reset(self._token)
        self._token = None

    def __enter__(self) -> Self:
        self._enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit()

    async def __aenter__(self) -> Self:
        at = self._enter()
        # asyncio.timeout_at uses the loop clock, which is time.monotonic() by default; convert
        # through "seconds left" so a custom loop clock still gets the right instant.
        loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout_at(loop.time() + (at - time.monotonic()))
        await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timeout = self._timeout
        assert timeout is not None
        self._timeout = None
        try:
            await timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as error:
            if timeout.expired():
                raise DeadlineExceeded(f"deadline of {self._at}s exceeded") from error
            raise
        finally:
            self._exit()


def with_deadline[**P, R](seconds: float) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of :func:`deadline` for sync and coroutine functions.

    >>> @with_deadline(1.0)
    ... def work() -> float | None:
    ...     return remaining()
    >>> 0 < work() <= 1.0
    True
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if is_coroutine_function(fn, "with_deadline"):
            afn = cast("Callable[P, Awaitable[object]]", fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> object:
                async with deadline(seconds):
                    return await afn(*args, **kwargs)

            return cast("Callable[P, R]", async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with deadline(seconds):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
