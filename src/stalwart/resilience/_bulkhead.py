"""Bulkhead: at most N calls at once, a bounded FIFO queue for the rest, sync and async.

One bulkhead can be shared by threads and event-loop tasks: a freed slot is handed directly to
the oldest waiter, whichever kind it is (a thread waits on an ``Event``, a task on a future of
its own loop, woken thread-safely).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, cast

from stalwart.resilience._deadline import remaining
from stalwart.resilience._decorate import is_coroutine_function
from stalwart.resilience._errors import BulkheadFull


class _Waiter:
    __slots__ = ("event", "future", "granted", "loop")

    def __init__(self) -> None:
        self.granted = False
        self.event: threading.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()
        elif self.loop is not None and self.future is not None:
            future = self.future
            self.loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead:
    """Limit concurrent calls to ``max_concurrent``; up to ``max_waiting`` callers may queue.

    A caller that finds the queue full, or waits longer than ``wait_timeout_s`` (or past its
    deadline), gets :class:`BulkheadFull`.

    >>> pool = Bulkhead(2, max_waiting=10, wait_timeout_s=1.0)
    >>> @pool
    ... def query() -> int:
    ...     return pool.active
    >>> query()
    1
    """

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_waiting: int = 0,
        wait_timeout_s: float | None = None,
        name: str = "",
    ) -> None:
        if callable(max_concurrent):
            raise TypeError(
                "Bulkhead needs a limit and parentheses, it is not a bare decorator: "
                "use @Bulkhead(10, ...)"
            )
        for option, value in (("max_concurrent", max_concurrent), ("max_waiting", max_waiting)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Bulkhead {option}={value!r}: expected an int")
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("max_concurrent must be >= 1 and max_waiting >= 0")
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.wait_timeout_s = wait_timeout_s
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def active(self) -> int:
        """Calls holding a slot right now."""
        return self._active

    @property
    def waiting(self) -> int:
        """Callers queued for a slot right now."""
        return len(self._waiters)

    def _enter_or_queue(self, make: Callable[[_Waiter], None]) -> _Waiter | None:
        with self._lock:
            if self._active < self.max_concurrent and not self._waiters:
                self._active += 1
                return None
            if len(self._waiters) >= self.max_waiting:
                raise BulkheadFull(self.name, f"{self._active} running, queue full")
            waiter = _Waiter()
            make(waiter)
            self._waiters.append(waiter)
            return waiter

    def _release(self) -> None:
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                # Hand the slot over directly: the active count does not change.
                waiter.granted = True
                waiter.wake()
            else:
                self._active -= 1

    def _abandon(self, waiter: _Waiter) -> bool:
        """A waiter gives up; returns True if it had been granted a slot meanwhile."""
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def _wait_budget(self) -> float | None:
        left = remaining()
        limit = self.wait_timeout_s
        if left is None:
            return limit
        return left if limit is None or left < limit else limit

    def acquire(self) -> None:
        """Take a slot, waiting in line if allowed (sync); pair with :meth:`release`."""
        waiter = self._enter_or_queue(_attach_event)
        if waiter is None:
            return
        assert waiter.event is not None
        waiter.event.wait(self._wait_budget())
        if not self._abandon(waiter):
            raise BulkheadFull(self.name, "timed out waiting for a slot")

    async def acquire_async(self) -> None:
        """Take a slot, waiting in line if allowed (async); pair with :meth:`release`."""
        waiter = self._enter_or_queue(_attach_future)
        if waiter is None:
            return
        assert waiter.future is not None
        try:
            async with asyncio.timeout(self._wait_budget()):
                await waiter.future
        except TimeoutError:
            if not self._abandon(waiter):
                raise BulkheadFull(self.name, "timed out waiting for a slot") from None
        except BaseException:
            # Cancelled while queued: leave the queue, or pass on a slot granted meanwhile.
            if self._abandon(waiter):
                self._release()
            raise

    def release(self) -> None:
        """Give back a slot taken with :meth:`acquire` / :meth:`acquire_async`."""
        self._release()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """``with bulkhead.slot():`` — hold a slot for the block (sync)."""
        self.acquire()
        try:
            yield
        finally:
            self._release()

    @contextlib.asynccontextmanager
    async def slot_async(self) -> AsyncIterator[None]:
        """``async with bulkhead.slot_async():`` — hold a slot for the block (async)."""
        await self.acquire_async()
        try:
            yield
        finally:
            self._release()

    def __call__[**P, R](self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a sync or coroutine function."""
        release = self._release
        if is_coroutine_function(fn, "Bulkhead"):
            afn = cast("Callable[P, Coroutine[Any, Any, object]]", fn)
            acquire_async = self.acquire_async

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> object:
                await acquire_async()
                try:
                    return await afn(*args, **kwargs)
                finally:
                    release()

            return cast("Callable[P, R]", async_wrapper)

        acquire = self.acquire

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            acquire()
            try:
                return fn(*args, **kwargs)
            finally:
                release()

        return wrapper


def _attach_event(waiter: _Waiter) -> None:
    waiter.event = threading.Event()


def _attach_future(waiter: _Waiter) -> None:
    loop = asyncio.get_running_loop()
    waiter.loop = loop
    waiter.future = loop.create_future()
