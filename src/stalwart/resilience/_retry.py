"""Retry with exponential backoff, jitter, deadlines, Retry-After, a budget and hooks.

The policy is a frozen dataclass built once; decorating a function closes over its fields so
the success path is a ``try`` around the call and nothing else. Everything that happens after
a failure (waits, deadlines, budget, hooks, test mode) lives in :func:`_plan_next`, shared by
the sync and async decorators and by the loop form.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
)
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self, cast

from stalwart.resilience._budget import RetryBudget
from stalwart.resilience._deadline import _DEADLINE
from stalwart.resilience._decorate import is_coroutine_function

type ExceptionTypes = type[Exception] | tuple[type[Exception], ...]
type RetryOn = ExceptionTypes | Callable[[Exception], bool]


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """What a retry hook is told before each wait.

    ``attempt`` is the attempt that just failed (1-based), ``wait_s`` the wait before the next
    one, ``cause`` the exception of the failed attempt (``None`` when a result was retried) and
    ``result`` the retried result (``None`` when an exception was).
    """

    name: str
    attempt: int
    wait_s: float
    cause: BaseException | None
    result: object | None


class RetryHook(Protocol):
    """Called before every retry wait; see :func:`add_retry_hook` for global hooks."""

    def __call__(self, event: RetryEvent, /) -> None: ...


class RetryAfter(Protocol):
    """An exception that knows how long the server asked us to wait (HTTP Retry-After)."""

    retry_after_s: float | None


class Jitter(StrEnum):
    """How waits are randomised: full jitter (the default) or decorrelated jitter."""

    FULL = "full"
    DECORRELATED = "decorrelated"


_POWERS_OF_TWO = tuple(2.0**i for i in range(64))


def full_jitter(attempt: int, base_s: float, cap_s: float, rand: Callable[[], float]) -> float:
    """Uniform in ``[0, min(cap, base * 2**(attempt-1))]`` (AWS "full jitter").

    >>> full_jitter(3, 0.1, 10.0, lambda: 1.0)
    0.4
    """
    # A table instead of ``2.0 ** n``: cheaper, and a huge attempt count cannot overflow.
    ceiling = base_s * _POWERS_OF_TWO[attempt - 1] if attempt <= 64 else base_s * 2.0**63
    return rand() * (min(cap_s, ceiling))


def decorrelated_jitter(
    previous_s: float, base_s: float, cap_s: float, rand: Callable[[], float]
) -> float:
    """Uniform in ``[base, previous * 3]``, capped (AWS "decorrelated jitter").

    >>> decorrelated_jitter(0.1, 0.1, 10.0, lambda: 1.0)
    0.30000000000000004
    """
    low = base_s
    high = max(previous_s, base_s) * 3.0
    wait = low + rand() * (high - low)
    return min(cap_s, wait)


class _TestMode:
    """Process-wide test switch: read only after a failure, never on the success path."""

    __slots__ = ("attempts", "enabled")

    def __init__(self) -> None:
        self.enabled = False
        self.attempts: int | None = None


_TEST_MODE = _TestMode()
_LOG = logging.getLogger("stalwart.resilience")
_GLOBAL_HOOKS: list[RetryHook] = []


def set_testing(enabled: bool, *, attempts: int | None = None) -> None:  # noqa: FBT001
    """Turn test mode on or off: retries happen but never sleep.

    ``attempts`` overrides every policy's attempt count while test mode is on (``None`` keeps
    each policy's own).

    >>> set_testing(True, attempts=2)
    >>> set_testing(False)
    """
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be >= 1")
    _TEST_MODE.enabled = enabled
    _TEST_MODE.attempts = attempts if enabled else None


def is_testing() -> bool:
    """Whether test mode is on.

    >>> is_testing()
    False
    """
    return _TEST_MODE.enabled


@contextlib.contextmanager
def retry_testing(*, attempts: int | None = None) -> Iterator[None]:
    """Test mode for the duration of a ``with`` block, restoring the previous mode after.

    >>> with retry_testing(attempts=1):
    ...     is_testing()
    True
    """
    previous = (_TEST_MODE.enabled, _TEST_MODE.attempts)
    set_testing(True, attempts=attempts)
    try:
        yield
    finally:
        _TEST_MODE.enabled, _TEST_MODE.attempts = previous


def add_retry_hook(hook: RetryHook) -> Callable[[], None]:
    """Register a hook called for every retry of every policy; returns a function removing it.

    >>> events = []
    >>> remove = add_retry_hook(events.append)
    >>> remove()
    """
    _GLOBAL_HOOKS.append(hook)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _GLOBAL_HOOKS.remove(hook)

    return remove


def _never(_: object) -> bool:
    return False


_CLASS_HAS_RETRY_AFTER: dict[type[BaseException], bool] = {}


def _retry_after(cause: BaseException) -> float | None:
    """The ``retry_after_s`` of an exception following :class:`RetryAfter`, else ``None``.

    ``getattr(exc, name, None)`` costs an internal AttributeError for every exception that
    lacks the attribute (most of them), so look in the instance dict, then (once per class)
    whether the class defines it, e.g. as a property.
    """
    value = cause.__dict__.get("retry_after_s")
    if value is None:
        kind = type(cause)
        has = _CLASS_HAS_RETRY_AFTER.get(kind)
        if has is None:
            has = any("retry_after_s" in vars(k) for k in kind.__mro__)
            _CLASS_HAS_RETRY_AFTER[kind] = has
        if not has:
            return None
        value = getattr(cause, "retry_after_s", None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A retry policy, built once. Decorate with it, or loop over it.

    Use :func:`retry` to build one; see its docstring for the fields.
    """

    on: RetryOn
    attempts: int = 3
    base_s: float = 0.1
    cap_s: float = 10.0
    total_s: float | None = None
    jitter: Jitter = Jitter.FULL
    on_result: Callable[[Any], bool] | None = None
    budget: RetryBudget | None = None
    hooks: tuple[RetryHook, ...] = ()
    name: str = ""
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], object] = time.sleep
    async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
    rand: Callable[[], float] = random.random
    # What the wrappers catch, and the predicate still to pass (None when ``on`` are types):
    # ``except types`` costs nothing extra, a predicate call on every failure does.
    _catch: tuple[type[Exception], ...] = field(init=False, repr=False, compare=False)
    _pred: Callable[[Exception], bool] | None = field(init=False, repr=False, compare=False)
    _full_jitter: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("base_s and cap_s must be >= 0")
        if self.total_s is not None and self.total_s <= 0:
            raise ValueError("total_s must be > 0")
        on = self.on
        if isinstance(on, (type, tuple)):
            types = on if isinstance(on, tuple) else (on,)
            for kind in types:
                if not (isinstance(kind, type) and issubclass(kind, Exception)):
                    raise TypeError(f"retry on={kind!r}: expected Exception subclasses")
            catch: tuple[type[Exception], ...] = types
            pred: Callable[[Exception], bool] | None = None
        elif callable(on):
            catch, pred = (Exception,), on
        else:
            raise TypeError(f"retry on={on!r}: expected exception types or a predicate")
        object.__setattr__(self, "_catch", catch)
        object.__setattr__(self, "_pred", pred)
        object.__setattr__(self, "_full_jitter", self.jitter is Jitter.FULL)

    # -- decision, shared by every driver -------------------------------------------------------

    def matches(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an error this policy retries.

        >>> retry(on=ConnectionError).matches(ConnectionResetError())
        True
        """
        return isinstance(exc, self._catch) and (self._pred is None or self._pred(exc))

    def _plan_next(
        self,
        attempt: int,
        cause: BaseException | None,
        started: float | None,
        previous_wait: float,
    ) -> float | None:
        """The wait before attempt ``attempt + 1``, or ``None`` to stop retrying."""
        mode = _TEST_MODE
        if mode.enabled:
            if attempt >= (mode.attempts or self.attempts):
                return None
        elif attempt >= self.attempts:
            return None
        if self._full_jitter:
            wait = full_jitter(attempt, self.base_s, self.cap_s, self.rand) if self.base_s else 0.0
        else:
            wait = decorrelated_jitter(previous_wait, self.base_s, self.cap_s, self.rand)
        if cause is not None:
            server_wait = _retry_after(cause)
            if server_wait is not None and server_wait > wait:
                wait = server_wait
        if mode.enabled:
            wait = 0.0
        if (self.total_s is not None or _DEADLINE.get() is not None) and self._crosses_a_deadline(
            started, wait
        ):
            return None
        if self.budget is not None and not self.budget.try_withdraw(cause):
            return None
        return wait

    def _crosses_a_deadline(self, started: float | None, wait: float) -> bool:
        # Never start a wait that would end past our own deadline or the caller's: the attempt
        # after it could not finish in time, so surfacing the error now is strictly better.
        total = self.total_s
        if started is not None and total is not None and self.clock() - started + wait >= total:
            return True
        caller_deadline = _DEADLINE.get()
        return caller_deadline is not None and time.monotonic() + wait >= caller_deadline

    def _notify(
        self, name: str, attempt: int, wait: float, cause: BaseException | None, result: object
    ) -> None:
        if not self.hooks and not _GLOBAL_HOOKS:
            return
        event = RetryEvent(name, attempt, wait, cause, None if cause is not None else result)
        for hook in (*self.hooks, *_GLOBAL_HOOKS):
            try:
                hook(event)
            except Exception:  # noqa: BLE001 - observing a retry must not change its outcome
                _LOG.exception("retry hook %r failed", hook)

    def _refund(self, attempts_made: int, last_cause: BaseException | None) -> None:
        budget = self.budget
        if budget is not None:
            budget.refund(
                budget.cost_of(last_cause) if attempts_made > 1 else budget.success_refund
            )

    def _needs_full_path(self) -> bool:
        return self.on_result is not None or self.total_s is not None or self.budget is not None

    # -- decorator ------------------------------------------------------------------------------

    def __call__[**P, R](self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a sync or coroutine function."""
        if is_coroutine_function(fn, "retry"):
            return cast("Callable[P, R]", self._wrap_async(fn))
        return self._wrap_sync(fn)

    def _wrap_sync[**P, R](self, fn: Callable[P, R]) -> Callable[P, R]:
        name = self.name or getattr(fn, "__qualname__", repr(fn))
        catch, pred = self._catch, self._pred
        retry_sync = self._retry_sync

        if not self._needs_full_path():

            @functools.wraps(fn)
            def fast(*args: P.args, **kwargs: P.kwargs) -> R:
                try:
                    return fn(*args, **kwargs)
                except catch as exc:
                    if pred is not None and not pred(exc):
                        raise
                    cause: Exception | None = exc
                try:
                    return retry_sync(fn, name, args, kwargs, cause, None, None)
                finally:
                    cause = None  # the traceback references this frame: break the cycle

            return fast

        on_result = self.on_result or _never
        clock = self.clock
        track_time = self.total_s is not None
        refund = self._refund

        @functools.wraps(fn)
        def full(*args: P.args, **kwargs: P.kwargs) -> R:
            started = clock() if track_time else None
            try:
                result = fn(*args, **kwargs)
            except catch as exc:
                if pred is not None and not pred(exc):
                    raise
                cause: Exception | None = exc
            else:
                if not on_result(result):
                    refund(1, None)
                    return result
                cause = None
            # Outside the except block, so later errors get no misleading __context__.
            try:
                return retry_sync(
                    fn, name, args, kwargs, cause, result if cause is None else None, started
                )
            finally:
                cause = None  # the traceback references this frame: break the cycle

        return full

    def _retry_sync[R](  # noqa: PLR0917 - hot internal helper, called positionally
        self,
        fn: Callable[..., R],
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        cause: Exception | None,
        result: R | None,
        started: float | None,
    ) -> R:
        catch, pred = self._catch, self._pred
        on_result = self.on_result
        plan = self._plan_next
        hooks = self.hooks
        attempt = 1
        wait = self.base_s
        while True:
            wait_next = plan(attempt, cause, started, wait)
            if wait_next is None:
                if cause is not None:
                    try:
                        raise cause
                    finally:
                        cause = None  # no exception -> traceback -> frame -> exception cycle
                return cast("R", result)
            if hooks or _GLOBAL_HOOKS:
                self._notify(name, attempt, wait_next, cause, result)
            if wait_next > 0.0:
                self.sleep(wait_next)
            wait = wait_next
            attempt += 1
            try:
                result = fn(*args, **kwargs)
            except catch as exc:
                if pred is not None and not pred(exc):
                    raise
                cause, result = exc, None
                continue
            if on_result is None or not on_result(result):
                if self.budget is not None:
                    self._refund(attempt, cause)
                cause = None  # see above: leave no cycle for the garbage collector
                return result
            cause = None

    def _wrap_async[**P, T](
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        name = self.name or getattr(fn, "__qualname__", repr(fn))
        catch, pred = self._catch, self._pred
        retry_async = self._retry_async

        if not self._needs_full_path():

            @functools.wraps(fn)
            async def fast(*args: P.args, **kwargs: P.kwargs) -> T:
                try:
                    return await fn(*args, **kwargs)
                except catch as exc:
                    if pred is not None and not pred(exc):
                        raise
                    cause: Exception | None = exc
                try:
                    return await retry_async(fn, name, args, kwargs, cause, None, None)
                finally:
                    cause = None  # the traceback references this frame: break the cycle

            return fast

        on_result = self.on_result or _never
        clock = self.clock
        track_time = self.total_s is not None
        refund = self._refund

        @functools.wraps(fn)
        async def full(*args: P.args, **kwargs: P.kwargs) -> T:
            started = clock() if track_time else None
            try:
                result = await fn(*args, **kwargs)
            except catch as exc:
                if pred is not None and not pred(exc):
                    raise
                cause: Exception | None = exc
            else:
                if not on_result(result):
                    refund(1, None)
                    return result
                cause = None
            # Outside the except block, so later errors get no misleading __context__.
            try:
                return await retry_async(
                    fn, name, args, kwargs, cause, result if cause is None else None, started
                )
            finally:
                cause = None  # the traceback references this frame: break the cycle

        return full

    async def _retry_async[T](  # noqa: PLR0917 - same as _retry_sync
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        cause: Exception | None,
        result: T | None,
        started: float | None,
    ) -> T:
        catch, pred = self._catch, self._pred
        on_result = self.on_result
        plan = self._plan_next
        hooks = self.hooks
        attempt = 1
        wait = self.base_s
        while True:
            wait_next = plan(attempt, cause, started, wait)
            if wait_next is None:
                if cause is not None:
                    try:
                        raise cause
                    finally:
                        cause = None  # no exception -> traceback -> frame -> exception cycle
                return cast("T", result)
            if hooks or _GLOBAL_HOOKS:
                self._notify(name, attempt, wait_next, cause, result)
            if wait_next > 0.0:
                await self.async_sleep(wait_next)
            wait = wait_next
            attempt += 1
            try:
                result = await fn(*args, **kwargs)
            except catch as exc:
                if pred is not None and not pred(exc):
                    raise
                cause, result = exc, None
                continue
            if on_result is None or not on_result(result):
                if self.budget is not None:
                    self._refund(attempt, cause)
                cause = None  # see above: leave no cycle for the garbage collector
                return result
            cause = None

    # -- loop form ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Attempt]:
        """``for attempt in policy: with attempt: ...`` — sync loop form."""
        loop = _AttemptLoop(self)
        while True:
            attempt = loop.next_attempt()
            if attempt is None:
                return
            wait = loop.pending_wait
            if wait > 0.0:
                self.sleep(wait)
            yield attempt

    async def __aiter__(self) -> AsyncIterator[Attempt]:
        """``async for attempt in policy: with attempt: ...`` — async loop form."""
        loop = _AttemptLoop(self)
        while True:
            attempt = loop.next_attempt()
            if attempt is None:
                return
            wait = loop.pending_wait
            if wait > 0.0:
                await self.async_sleep(wait)
            yield attempt


class _AttemptLoop:
    """State of one run of the loop form; the policy itself stays immutable."""

    __slots__ = ("current", "pending_wait", "policy", "previous_wait", "started")

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = policy.clock()
        self.current: Attempt | None = None
        self.pending_wait = 0.0
        self.previous_wait = policy.base_s

    def next_attempt(self) -> Attempt | None:
        current = self.current
        if current is not None and not current.retrying:
            return None  # the previous attempt succeeded (or was never entered)
        number = 1 if current is None else current.number + 1
        self.pending_wait = 0.0 if current is None else current.wait_s
        if current is not None:
            self.previous_wait = current.wait_s
        self.current = Attempt(self, number)
        return self.current

    def on_failure(self, attempt: Attempt, exc: Exception) -> bool:
        policy = self.policy
        if not policy.matches(exc):
            return False
        wait = policy._plan_next(attempt.number, exc, self.started, self.previous_wait)  # noqa: SLF001
        if wait is None:
            return False
        policy._notify(policy.name, attempt.number, wait, exc, None)  # noqa: SLF001
        attempt.retrying = True
        attempt.wait_s = wait
        return True


class Attempt:
    """One attempt of the loop form; use it as a context manager around the work."""

    __slots__ = ("_loop", "number", "retrying", "wait_s")

    def __init__(self, loop: _AttemptLoop, number: int) -> None:
        self._loop = loop
        self.number = number
        self.retrying = False
        self.wait_s = 0.0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        # Returning True swallows the error so the loop retries; False lets it propagate as is.
        return self._loop.on_failure(self, exc)


def retry(
    on: RetryOn,
    *,
    attempts: int = 3,
    base_s: float = 0.1,
    cap_s: float = 10.0,
    total_s: float | None = None,
    jitter: Jitter = Jitter.FULL,
    on_result: Callable[[Any], bool] | None = None,
    budget: RetryBudget | None = None,
    hooks: tuple[RetryHook, ...] = (),
    name: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> RetryPolicy:
    """Build a retry policy: use it as a decorator (sync or async) or loop over it.

    - ``on``: exception types to retry, or a predicate on the exception. Anything else (and
      every ``BaseException`` such as cancellation) propagates at once.
    - ``attempts`` (including the first call), ``base_s`` and ``cap_s`` of the exponential
      backoff, ``jitter`` (full by default, or decorrelated).
    - ``total_s``: a deadline for the whole call, retries included. No wait is started that
      would end past it, nor past the caller's :func:`~stalwart.resilience.deadline`.
    - ``on_result``: retry when it returns true for a result (the last result is returned
      when attempts run out).
    - ``budget``: a shared :class:`RetryBudget`; when it is empty retrying stops.
    - An exception with a numeric ``retry_after_s`` attribute (:class:`RetryAfter`) makes the
      wait at least that long.
    - ``hooks`` are called before every wait with a :class:`RetryEvent`.
    - ``clock``, ``sleep``, ``async_sleep`` and ``rand`` are injectable for tests.

    When attempts, time or budget run out, the last exception of the call is re-raised as is.

    >>> calls = []
    >>> @retry(on=ConnectionError, attempts=3, base_s=0.0)
    ... def flaky() -> str:
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("reset")
    ...     return "ok"
    >>> flaky(), len(calls)
    ('ok', 3)
    """
    return RetryPolicy(
        on=on,
        attempts=attempts,
        base_s=base_s,
        cap_s=cap_s,
        total_s=total_s,
        jitter=jitter,
        on_result=on_result,
        budget=budget,
        hooks=hooks,
        name=name,
        clock=clock,
        sleep=sleep,
        async_sleep=async_sleep,
        rand=rand,
    )
