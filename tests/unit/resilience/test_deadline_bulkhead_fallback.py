"""Deadlines, bulkhead, fallback and the composed pipeline."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from stalwart.resilience import (
    Bulkhead,
    BulkheadFull,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    CountWindow,
    DeadlineExceeded,
    ResilienceError,
    check_deadline,
    current_deadline,
    deadline,
    fallback,
    remaining,
    resilient,
    retry,
    timeout_for,
    with_deadline,
)

# -- deadline -------------------------------------------------------------------------------------


def test_no_deadline_by_default() -> None:
    assert remaining() is None
    assert current_deadline() is None
    assert timeout_for(7.0) == 7.0
    check_deadline()


def test_nested_deadlines_take_the_minimum_and_restore() -> None:
    with deadline(1.0):
        outer = current_deadline()
        with deadline(10.0):
            assert current_deadline() == outer
        with deadline(0.1):
            inner = current_deadline()
            assert inner is not None
            assert outer is not None
            assert inner < outer
            assert timeout_for(5.0) <= 0.1
        assert current_deadline() == outer
    assert current_deadline() is None


def test_expired_deadline_raises_from_helpers() -> None:
    with deadline(0.0):
        assert remaining() == 0.0
        with pytest.raises(DeadlineExceeded):
            timeout_for(1.0)
        with pytest.raises(DeadlineExceeded):
            check_deadline()


def test_deadline_exceeded_is_a_timeout_and_a_resilience_error() -> None:
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert issubclass(DeadlineExceeded, ResilienceError)
    with pytest.raises(ValueError, match=">= 0"):
        deadline(-1)


async def test_async_deadline_cancels_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async with deadline(0.05):
            await asyncio.sleep(5)
    assert time.monotonic() - started < 1.0
    assert current_deadline() is None


async def test_async_nested_deadline_inherits_the_shorter_outer_one() -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async with deadline(0.05), deadline(10):
            await asyncio.sleep(5)
    assert time.monotonic() - started < 1.0


async def test_async_deadline_passes_other_errors_and_results() -> None:
    async with deadline(1.0):
        assert 0 < (remaining() or 0) <= 1.0
    with pytest.raises(KeyError):
        async with deadline(1.0):
            raise KeyError


async def test_deadlines_are_per_task() -> None:
    seen: dict[str, float | None] = {}

    async def with_budget() -> None:
        async with deadline(1.0):
            await asyncio.sleep(0.01)
            seen["inside"] = remaining()

    async def without() -> None:
        await asyncio.sleep(0.01)
        seen["other"] = remaining()

    await asyncio.gather(with_budget(), without())
    assert seen["inside"] is not None
    assert seen["other"] is None


async def test_with_deadline_decorator_sync_and_async() -> None:
    @with_deadline(0.5)
    def sync_budget() -> float | None:
        return remaining()

    @with_deadline(0.02)
    async def too_slow() -> None:
        await asyncio.sleep(1)

    budget = sync_budget()
    assert budget is not None
    assert 0 < budget <= 0.5
    with pytest.raises(DeadlineExceeded):
        await too_slow()


# -- bulkhead -------------------------------------------------------------------------------------


def test_bulkhead_limits_concurrency_across_threads() -> None:
    bulkhead = Bulkhead(3, max_waiting=100, wait_timeout_s=5)
    peak = []
    lock = threading.Lock()
    current = [0]

    @bulkhead
    def work() -> None:
        with lock:
            current[0] += 1
            peak.append(current[0])
        time.sleep(0.01)
        with lock:
            current[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(peak) == 3
    assert len(peak) == 30
    assert bulkhead.active == 0
    assert bulkhead.waiting == 0


def test_bulkhead_rejects_when_the_queue_is_full() -> None:
    bulkhead = Bulkhead(1, max_waiting=0, name="db")
    bulkhead.acquire()
    try:
        with pytest.raises(BulkheadFull, match="db"):
            bulkhead.acquire()
    finally:
        bulkhead.release()
    with bulkhead.slot():
        assert bulkhead.active == 1
    assert bulkhead.active == 0


def test_bulkhead_wait_times_out_and_respects_the_deadline() -> None:
    bulkhead = Bulkhead(1, max_waiting=5, wait_timeout_s=0.05)
    bulkhead.acquire()
    try:
        started = time.monotonic()
        with pytest.raises(BulkheadFull, match="timed out"):
            bulkhead.acquire()
        assert 0.04 < time.monotonic() - started < 1.0
        assert bulkhead.waiting == 0
        patient = Bulkhead(1, max_waiting=5)
        patient.acquire()
        started = time.monotonic()
        with deadline(0.05), pytest.raises(BulkheadFull):
            patient.acquire()
        assert time.monotonic() - started < 1.0
    finally:
        bulkhead.release()


def test_bulkhead_hands_slots_to_waiters_in_order() -> None:
    bulkhead = Bulkhead(1, max_waiting=10, wait_timeout_s=5)
    order: list[int] = []
    bulkhead.acquire()

    def waiter(i: int) -> None:
        with bulkhead.slot():
            order.append(i)

    threads = []
    for i in range(5):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        while bulkhead.waiting < i + 1:
            time.sleep(0.001)
    bulkhead.release()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4]


async def test_bulkhead_async_limits_and_queues() -> None:
    bulkhead = Bulkhead(2, max_waiting=4, wait_timeout_s=5)
    running = [0]
    peak = [0]

    @bulkhead
    async def work() -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.01)
        running[0] -= 1

    results = await asyncio.gather(*(work() for _ in range(8)), return_exceptions=True)
    rejected = [r for r in results if isinstance(r, BulkheadFull)]
    assert peak[0] == 2
    assert len(rejected) == 2  # 2 running + 4 queued, the last 2 rejected
    assert bulkhead.active == 0


async def test_bulkhead_async_cancellation_while_queued_leaves_the_queue() -> None:
    bulkhead = Bulkhead(1, max_waiting=2)
    await bulkhead.acquire_async()
    waiting = asyncio.create_task(bulkhead.acquire_async())
    await asyncio.sleep(0.01)
    assert bulkhead.waiting == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert bulkhead.waiting == 0
    bulkhead.release()
    assert bulkhead.active == 0
    async with bulkhead.slot_async():
        assert bulkhead.active == 1


async def test_bulkhead_shared_by_threads_and_tasks() -> None:
    bulkhead = Bulkhead(1, max_waiting=10, wait_timeout_s=5)
    bulkhead.acquire()  # held by "a thread"
    task = asyncio.create_task(bulkhead.acquire_async())
    await asyncio.sleep(0.01)
    assert not task.done()
    threading.Thread(target=bulkhead.release).start()  # released from another thread
    await asyncio.wait_for(task, 2)
    assert bulkhead.active == 1
    bulkhead.release()
    assert bulkhead.active == 0


async def test_bulkhead_async_wait_timeout() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, wait_timeout_s=0.02)
    await bulkhead.acquire_async()
    with pytest.raises(BulkheadFull, match="timed out"):
        await bulkhead.acquire_async()
    assert bulkhead.waiting == 0
    bulkhead.release()


# -- fallback -------------------------------------------------------------------------------------


def test_fallback_value_and_function() -> None:
    @fallback(on=ConnectionError, value=[])
    def empty() -> list[int]:
        raise ConnectionError

    @fallback(on=(ConnectionError, CircuitOpen), call=lambda exc: [type(exc).__name__])
    def named() -> list[str]:
        raise CircuitOpen("x", 1.0)

    @fallback(on=ConnectionError, value=0)
    def other() -> int:
        raise KeyError

    assert empty() == []
    assert named() == ["CircuitOpen"]
    with pytest.raises(KeyError):
        other()
    with pytest.raises(TypeError):
        fallback(on=KeyError)
    with pytest.raises(TypeError):
        fallback(on=KeyError, value=1, call=lambda _: 2)


async def test_fallback_async_with_async_handler() -> None:
    async def from_cache(exc: BaseException) -> str:
        await asyncio.sleep(0)
        return f"cached after {type(exc).__name__}"

    @fallback(on=TimeoutError, call=from_cache)
    async def fetch() -> str:
        raise DeadlineExceeded

    @fallback(on=TimeoutError, value="plain")
    async def fetch_plain() -> str:
        raise TimeoutError

    assert await fetch() == "cached after DeadlineExceeded"
    assert await fetch_plain() == "plain"


# -- pipeline -------------------------------------------------------------------------------------


def test_pipeline_order_retry_sees_the_breaker_open() -> None:
    breaker = CircuitBreaker("svc", min_calls=2, window=CountWindow(4), open_s=60)
    calls = []

    @resilient(
        fallback=fallback(on=(ConnectionError, CircuitOpen), call=lambda e: type(e).__name__),
        deadline_s=5.0,
        retry=retry(on=ConnectionError, attempts=5, base_s=0.0),
        breaker=breaker,
        bulkhead=Bulkhead(4),
    )
    def call() -> str:
        calls.append(remaining())
        raise ConnectionError

    # Two attempts fail, the breaker opens, the third attempt gets CircuitOpen, which the retry
    # does not retry (not in on=), and the fallback turns it into a value.
    assert call() == "CircuitOpen"
    assert len(calls) == 2
    assert all(left is not None and left <= 5.0 for left in calls)
    assert breaker.state is CircuitState.OPEN


async def test_pipeline_async_deadline_cancels_and_falls_back() -> None:
    @resilient(
        fallback=fallback(on=DeadlineExceeded, value="late"),
        deadline_s=0.05,
        retry=retry(on=ConnectionError, attempts=3, base_s=0.0),
        breaker=CircuitBreaker("slow"),
        bulkhead=Bulkhead(2, max_waiting=2),
    )
    async def slow() -> str:
        await asyncio.sleep(5)
        return "never"

    started = time.monotonic()
    assert await slow() == "late"
    assert time.monotonic() - started < 1.0


def test_generator_functions_are_refused_by_every_decorator() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    async def anumbers() -> AsyncIterator[int]:
        yield 1

    decorators = [
        retry(on=ValueError),
        CircuitBreaker("g"),
        Bulkhead(1),
        fallback(on=ValueError, value=0),
        with_deadline(1.0),
    ]
    for decorate in decorators:
        for fn in (numbers, anumbers):
            with pytest.raises(TypeError, match="generator function"):
                decorate(fn)  # type: ignore[operator]


def test_bare_bulkhead_fails_at_decoration_with_usage() -> None:
    with pytest.raises(TypeError, match=r"use @Bulkhead\(10, \.\.\.\)"):

        @Bulkhead  # type: ignore[arg-type]
        def query() -> None: ...

    with pytest.raises(TypeError, match=r"max_concurrent=2\.5"):
        Bulkhead(2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_waiting=True"):
        Bulkhead(2, max_waiting=True)
