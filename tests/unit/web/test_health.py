# Copyright 2026 stalwart contributors
"""The readiness core: statuses, the body, timeouts, no pile-up of hung runs, the cache."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest

from stalwart.resilience import CircuitBreaker
from stalwart.storage import StoreUnavailable, open_async_store, open_store
from stalwart.web import Health, ReadyStatus, breaker_check, store_check

TIMEOUT_S = 0.2
BOUND_S = TIMEOUT_S + 0.5
"""How long a readiness evaluation with a hung check may take (the timeout plus slack)."""


def failing() -> None:
    raise StoreUnavailable("connection refused to 10.0.0.7:6379 (password=hunter2)")


def test_all_up_is_ok():
    health = Health(cache_s=0)
    health.add("a", lambda: None)
    health.add("b", lambda: {"anything": "but False"}, required=False)
    readiness = health.check()
    assert (readiness.status, readiness.http_status) == (ReadyStatus.OK, 200)
    document = json.loads(readiness.body())
    assert document["status"] == "ok"
    assert {name: check["state"] for name, check in document["checks"].items()} == {
        "a": "up",
        "b": "up",
    }
    assert document["checks"]["b"]["required"] is False


def test_optional_down_is_degraded_required_down_is_503():
    health = Health(cache_s=0)
    health.add("db", lambda: True)
    health.add("cache", failing, required=False)
    degraded = health.check()
    assert (degraded.status, degraded.http_status) == (ReadyStatus.DEGRADED, 200)
    health.add("payments", lambda: False)
    down = health.check()
    assert (down.status, down.http_status) == (ReadyStatus.DOWN, 503)
    checks = json.loads(down.body())["checks"]
    assert checks["cache"]["error"] == "StoreUnavailable"
    assert checks["payments"] == {
        "state": "down",
        "required": True,
        "duration_ms": checks["payments"]["duration_ms"],
    }
    assert b"hunter2" not in down.body()
    assert b"10.0.0.7" not in down.body()


def test_a_hung_sync_check_times_out_and_holds_one_thread():
    release = threading.Event()
    started = []

    def hang() -> None:
        started.append(1)
        release.wait(30)

    health = Health(cache_s=0, timeout_s=TIMEOUT_S)
    health.add("hang", hang)
    health.add("fine", lambda: True)
    try:
        for _ in range(4):
            began = time.monotonic()
            readiness = health.check()
            assert time.monotonic() - began < BOUND_S
            assert readiness.http_status == 503
            by_name = {check.name: check for check in readiness.checks}
            assert by_name["hang"].error == "TimeoutError"
            assert by_name["fine"].state == "up"
            assert by_name["hang"].duration_ms >= TIMEOUT_S * 1000 * 0.9
        hung = [t for t in threading.enumerate() if t.name == "stalwart-health-hang"]
        assert len(hung) == 1
        assert started == [1]
    finally:
        release.set()
    # Released, the run in flight finishes (the next evaluation takes its outcome); the one
    # after that starts a fresh run.
    assert health.check().status is ReadyStatus.OK
    assert health.check().status is ReadyStatus.OK
    assert started == [1, 1]


async def test_a_hung_async_check_times_out_and_is_never_started_twice():
    release = asyncio.Event()
    started = []

    async def ignores_cancellation() -> None:
        started.append(1)
        while not release.is_set():
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                continue  # a badly behaved client: cancelling does not stop it

    health = Health(cache_s=0, timeout_s=TIMEOUT_S)
    health.add("stuck", ignores_cancellation)
    try:
        for _ in range(4):
            began = time.monotonic()
            readiness = await health.check_async()
            assert time.monotonic() - began < BOUND_S
            assert readiness.checks[0].error == "TimeoutError"
        assert started == [1]
    finally:
        release.set()
        await asyncio.sleep(0.1)


async def test_a_run_cancelled_late_reads_as_down():
    """A probe that ends an earlier cancellation while a later evaluation waits on it."""

    async def late() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # clean-up outlives the evaluation that cancelled it
            raise

    health = Health(cache_s=0, timeout_s=TIMEOUT_S)
    health.add("late", late)
    first = await health.check_async()
    second = await health.check_async()
    assert [first.checks[0].error, second.checks[0].error] == ["TimeoutError"] * 2


def test_state_changes_are_logged_once(caplog):
    healthy = [False]
    health = Health(cache_s=0)
    health.add("flappy", lambda: healthy[0] or failing())
    with caplog.at_level(logging.INFO, logger="stalwart.web.health"):
        for _ in range(3):
            health.check()
        healthy[0] = True
        for _ in range(3):
            health.check()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "health check 'flappy' is down"),
        ("INFO", "health check 'flappy' is up again"),
    ]
    assert caplog.records[0].exc_info is not None  # the stack goes to the log, not the body


async def test_a_hung_async_check_is_cancelled():
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    health = Health(cache_s=0, timeout_s=TIMEOUT_S)
    health.add("hang", hang)
    readiness = await health.check_async()
    assert readiness.status is ReadyStatus.DOWN
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_sync_checks_run_on_threads_in_async_mode():
    loop_thread = threading.get_ident()
    seen = []
    health = Health(cache_s=0)
    health.add("sync", lambda: seen.append(threading.get_ident()))
    assert (await health.check_async()).status is ReadyStatus.OK
    assert seen
    assert seen[0] != loop_thread


def test_async_checks_run_in_sync_mode():
    async def ok() -> bool:
        await asyncio.sleep(0)
        return True

    async def bad() -> None:
        failing()

    health = Health(cache_s=0)
    health.add("ok", ok)
    health.add("bad", bad, required=False)
    readiness = health.check()
    assert readiness.status is ReadyStatus.DEGRADED
    assert [c.error for c in readiness.checks] == [None, "StoreUnavailable"]


def test_concurrent_probes_share_one_run():
    calls = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.2)

    health = Health(cache_s=0)
    health.add("slow", slow)
    barrier = threading.Barrier(8)
    statuses = []

    def probe() -> None:
        barrier.wait(5)
        statuses.append(health.check().status)

    threads = [threading.Thread(target=probe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [ReadyStatus.OK] * 8
    assert calls == [1]


def test_the_outcome_is_cached_for_cache_s():
    now = [100.0]
    calls = []
    health = Health(cache_s=2.0, clock=lambda: now[0])
    health.add("counted", lambda: calls.append(1))
    first = health.check()
    now[0] += 1.9
    assert health.check() is first
    assert calls == [1]
    now[0] += 0.2
    assert health.check() is not first
    assert calls == [1, 1]


async def test_the_cache_is_shared_by_sync_and_async_callers():
    calls = []
    health = Health(cache_s=60)
    health.add("counted", lambda: calls.append(1))
    first = health.check()
    assert await health.check_async() is first
    assert calls == [1]


def test_registration_is_checked():
    health = Health()
    health.add("a", lambda: True)
    with pytest.raises(ValueError, match="unique"):
        health.add("a", lambda: True)
    with pytest.raises(ValueError, match="unique"):
        health.add("", lambda: True)
    with pytest.raises(ValueError, match="timeout_s"):
        health.add("b", lambda: True, timeout_s=0)
    with pytest.raises(ValueError, match="cache_s"):
        Health(cache_s=-1)


def test_breaker_check_follows_the_breaker():
    breaker = CircuitBreaker("payments")
    health = Health(cache_s=0)
    health.add("payments", breaker_check(breaker), required=False)
    assert health.check().status is ReadyStatus.OK
    breaker.trip()
    assert health.check().status is ReadyStatus.DEGRADED
    breaker.reset()
    assert health.check().status is ReadyStatus.OK


def test_store_check_reads_a_sync_store(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'h.db'}?table=t") as store:
        health = Health(cache_s=0)
        health.add("store", store_check(store))
        assert health.check().status is ReadyStatus.OK


async def test_store_check_reads_an_async_store(tmp_path):
    store = open_async_store(f"sqlite:///{tmp_path / 'h.db'}?table=t")
    try:
        health = Health(cache_s=0)
        health.add("store", store_check(store))
        assert (await health.check_async()).status is ReadyStatus.OK
    finally:
        await store.close()
