"""RedisCircuitBreaker against a real redis-server: exact probes across processes, no writes
per success, trips shared between processes, recovery from lost probes."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from integration.shared_breaker_worker import ProbeExperiment, open_elapsed
from servers import RunningServer
from stalwart.resilience import (
    CircuitOpen,
    CircuitState,
    CountWindow,
    RedisCircuitBreaker,
    TimeWindow,
)

WRITE_COMMANDS = frozenset(
    {
        "hset",
        "hincrby",
        "hdel",
        "hsetnx",
        "hmset",
        "del",
        "unlink",
        "set",
        "setex",
        "incr",
        "incrby",
        "expire",
        "pexpire",
    }
)


def redis_writes(client: redis.Redis) -> tuple[int, int]:
    """(write commands executed, keys changed) so far, from INFO commandstats / persistence."""
    stats = client.info("commandstats")
    calls = sum(
        int(v["calls"]) for k, v in stats.items() if k.removeprefix("cmdstat_") in WRITE_COMMANDS
    )
    dirty = int(client.info("persistence")["rdb_changes_since_last_save"])
    return calls, dirty


@pytest.fixture
def client(redis_srv: RunningServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_srv.url, socket_timeout=5) as c:
        yield c


@pytest.mark.slow
def test_8_processes_x_8_callers_admit_exactly_n_probes(
    redis_srv: RunningServer, client: redis.Redis
) -> None:
    probes = 3
    name = f"shared-{uuid.uuid4().hex[:8]}"
    with ProbeExperiment(redis_srv.url, client, name, probes=probes, processes=8, callers=8) as run:
        for _ in range(3):
            admitted, outcomes = run.run_round()
            assert admitted == probes, outcomes
            assert outcomes.count("ok") == probes
            assert outcomes.count("rejected") == 64 - probes
            assert client.hget(name, "state") == b"closed"  # all probes passed
    assert run.returncodes == [0] * 8


def test_no_redis_write_per_success_in_steady_state(client: redis.Redis) -> None:
    name = f"steady-{uuid.uuid4().hex[:8]}"
    breaker = RedisCircuitBreaker(
        name, client=client, prefix="", window=CountWindow(10), min_calls=5, sync_s=0.05
    )

    @breaker
    def ok() -> str:
        return "ok"

    for _ in range(20):  # warm the window up
        ok()
    before = redis_writes(client)
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 0.3 or n < 2000:  # spans several refreshes
        ok()
        n += 1
    after = redis_writes(client)
    assert after == before
    assert client.exists(name) == 0  # nothing was ever written for a healthy breaker


def test_a_trip_in_one_process_is_seen_by_the_others(client: redis.Redis) -> None:
    name = f"trip-{uuid.uuid4().hex[:8]}"
    options = {
        "prefix": "",
        "window": CountWindow(4),
        "min_calls": 4,
        "sync_s": 0.05,
        "open_s": 30.0,
    }
    a = RedisCircuitBreaker(name, client=client, **options)
    b = RedisCircuitBreaker(name, client=client, **options)

    @a
    def failing() -> None:
        raise ConnectionError

    @b
    def fine() -> str:
        return "ok"

    assert fine() == "ok"
    for _ in range(4):
        with pytest.raises(ConnectionError):
            failing()
    assert a.state is CircuitState.OPEN
    assert client.hget(name, "state") == b"open"
    time.sleep(0.06)
    with pytest.raises(CircuitOpen) as info:
        fine()
    assert 25 < info.value.retry_after_s <= 30
    assert b.state is CircuitState.OPEN
    client.delete(name)


def test_failed_probe_reopens_and_successful_probes_close(client: redis.Redis) -> None:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    breaker = RedisCircuitBreaker(
        name, client=client, prefix="", half_open_probes=2, sync_s=0.05, open_s=30
    )
    calls = {"fail": True}

    @breaker
    def call() -> str:
        if calls["fail"]:
            raise ConnectionError
        return "ok"

    open_elapsed(client, name)
    breaker.refresh()
    with pytest.raises(ConnectionError):
        call()  # probe 1 fails: 1/2 >= 50% -> open again
    assert client.hget(name, "state") == b"open"
    with pytest.raises(CircuitOpen):
        call()
    open_elapsed(client, name)
    breaker.refresh()
    calls["fail"] = False
    assert call() == "ok"
    assert client.hget(name, "state") == b"half_open"
    assert call() == "ok"
    assert client.hget(name, "state") == b"closed"
    assert breaker.refresh() is CircuitState.CLOSED
    client.delete(name)


def test_probe_permits_of_lost_probes_are_recovered(client: redis.Redis) -> None:
    name = f"lost-{uuid.uuid4().hex[:8]}"
    breaker = RedisCircuitBreaker(
        name, client=client, prefix="", half_open_probes=1, sync_s=0.05, probe_timeout_s=0.3
    )
    open_elapsed(client, name)
    # A probe is admitted and its process "dies" (never reports).
    script = client.register_script(breaker._scripts["acquire"].script)
    assert script(keys=[name], args=[1, 300])[3] == 1
    breaker.refresh()

    @breaker
    def call() -> str:
        return "ok"

    with pytest.raises(CircuitOpen):
        call()
    time.sleep(0.35)
    assert call() == "ok"  # the stale half-open handed out a fresh permit
    assert client.hget(name, "state") == b"closed"
    client.delete(name)


def test_redis_down_fails_closed_only_when_coordination_is_needed() -> None:
    # redis-py retries refused connections with backoff by default; the breaker must cope with
    # the error, not wait for the client's retries.
    dead = redis.Redis(
        host="127.0.0.1",
        port=1,
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    breaker = RedisCircuitBreaker("down", client=dead, sync_s=0.05, min_calls=1)

    @breaker
    def ok() -> str:
        return "ok"

    @breaker
    def failing() -> None:
        raise ConnectionError

    assert ok() == "ok"  # refresh failed: the cached (closed) view is kept
    with pytest.raises(ConnectionError):
        failing()  # trips; the trip cannot be written, so the circuit opens locally
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpen):
        ok()


async def test_async_64_tasks_admit_exactly_n_probes(
    redis_srv: RunningServer, client: redis.Redis
) -> None:
    name = f"async-{uuid.uuid4().hex[:8]}"
    async_client = redis.asyncio.Redis.from_url(redis_srv.url, socket_timeout=5)
    try:
        breaker = RedisCircuitBreaker(
            name, async_client=async_client, prefix="", half_open_probes=4, sync_s=0.05
        )
        for _ in range(5):
            open_elapsed(client, name)
            await asyncio.sleep(0.06)
            hold = asyncio.Event()
            entered = []

            @breaker
            async def probe(entered: list[int], hold: asyncio.Event) -> None:
                entered.append(1)
                await hold.wait()

            async def caller(entered: list[int], hold: asyncio.Event, fn=probe) -> str:
                try:
                    await fn(entered, hold)
                except CircuitOpen:
                    return "rejected"
                return "ok"

            tasks = [asyncio.create_task(caller(entered, hold)) for _ in range(64)]
            while sum(t.done() for t in tasks) < 60:  # noqa: ASYNC110 - a count, not an event
                await asyncio.sleep(0.01)
            assert len(entered) == 4
            hold.set()
            outcomes = await asyncio.gather(*tasks)
            assert outcomes.count("ok") == 4
            assert outcomes.count("rejected") == 60
            assert client.hget(name, "state") == b"closed"
    finally:
        await async_client.aclose()
        client.delete(name)


def test_64_threads_in_one_process_admit_exactly_n_probes(client: redis.Redis) -> None:
    """64 threads in one process against the shared state: exactly N probes."""
    name = f"threads-{uuid.uuid4().hex[:8]}"
    breaker = RedisCircuitBreaker(name, client=client, prefix="", half_open_probes=2, sync_s=0.05)
    for _ in range(3):
        open_elapsed(client, name)
        time.sleep(0.06)
        entered: list[int] = []
        outcomes: list[str] = []
        barrier = threading.Barrier(64)
        release = threading.Event()

        def protected(entered: list[int] = entered, release: threading.Event = release) -> None:
            entered.append(1)
            release.wait(5)

        wrapped = breaker(protected)

        def caller(
            outcomes: list[str] = outcomes, barrier: threading.Barrier = barrier, wrapped=wrapped
        ) -> None:
            barrier.wait()
            try:
                wrapped()
                outcomes.append("ok")
            except CircuitOpen:
                outcomes.append("rejected")

        threads = [threading.Thread(target=caller) for _ in range(64)]
        for t in threads:
            t.start()
        give_up = time.monotonic() + 10
        while len(outcomes) < 62 and time.monotonic() < give_up:
            time.sleep(0.005)
        release.set()
        for t in threads:
            t.join()
        assert len(entered) == 2
        assert outcomes.count("rejected") == 62
    client.delete(name)


def test_sync_interval_must_be_shorter_than_the_open_period(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="sync_s"):
        RedisCircuitBreaker("x", client=client, sync_s=5.0, open_s=5.0)
    with pytest.raises(TypeError, match="client"):
        RedisCircuitBreaker("x")
    with pytest.raises(TypeError, match="CountWindow"):
        RedisCircuitBreaker("x", client=client, window=TimeWindow(10))


async def test_async_trip_and_cancelled_probe_releases_its_permit(
    redis_srv: RunningServer, client: redis.Redis
) -> None:
    name = f"acancel-{uuid.uuid4().hex[:8]}"
    async_client = redis.asyncio.Redis.from_url(redis_srv.url, socket_timeout=5)
    try:
        breaker = RedisCircuitBreaker(
            name,
            async_client=async_client,
            prefix="",
            window=CountWindow(4),
            min_calls=4,
            half_open_probes=1,
            sync_s=0.05,
        )
        gate = asyncio.Event()

        @breaker
        async def call(fail: bool, block: bool) -> str:
            if block:
                await gate.wait()
            if fail:
                raise ConnectionError
            return "ok"

        for _ in range(4):
            with pytest.raises(ConnectionError):
                await call(True, False)
        assert client.hget(name, "state") == b"open"  # tripped through the async client
        with pytest.raises(CircuitOpen):
            await call(False, False)

        open_elapsed(client, name)
        await breaker.refresh_async()
        probe = asyncio.create_task(call(False, True))
        await asyncio.sleep(0.05)
        assert client.hget(name, "admitted") == b"1"
        with pytest.raises(CircuitOpen):
            await call(False, False)  # the only permit is taken
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert client.hget(name, "admitted") == b"0"  # cancellation gave the permit back
        assert await call(False, False) == "ok"  # a new probe, which closes the circuit
        assert client.hget(name, "state") == b"closed"
    finally:
        await async_client.aclose()
        client.delete(name)
