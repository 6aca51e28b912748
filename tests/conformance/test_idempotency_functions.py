# Copyright 2026 stalwart contributors
"""Idempotency guarantees on every engine, sync (threads) and async (tasks), via @idempotent.

Leases and retention run on the test's ManualClock, shared with the store, so lease expiry
and record expiry are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

from conformance.idem_support import LayerRunner
from stalwart.idempotency import (
    FingerprintMismatch,
    IdempotencyPolicy,
    InProgress,
    Lease,
    LeaseLost,
    Replay,
    ResultNotStored,
    idempotent,
)

STORM = 200
ROUNDS = 3
WORK_S = 0.05


def make_job(runner: LayerRunner, counter: Counter[str]) -> Any:
    """The same job as a sync or async function, decorated for the runner's layer."""
    lock = threading.Lock()
    if runner.mode == "sync":

        def job(order_id: str, cents: int) -> dict[str, Any]:
            with lock:
                counter[order_id] += 1
            time.sleep(WORK_S)
            return {"order_id": order_id, "cents": cents}

        return idempotent(runner.layer, key_args=["order_id"])(job)

    async def async_job(order_id: str, cents: int) -> dict[str, Any]:
        counter[order_id] += 1
        await asyncio.sleep(WORK_S)
        return {"order_id": order_id, "cents": cents}

    return idempotent(runner.layer, key_args=["order_id"])(async_job)


async def storm(runner: LayerRunner, job: Any, order_id: str, n: int = STORM) -> Counter[str]:
    """``n`` concurrent identical calls; tally of outcomes."""
    start = asyncio.Event()

    async def one() -> str:
        await start.wait()
        try:
            result = await runner.run(job, order_id, 100)
        except InProgress:
            return "in_progress"
        assert result == {"order_id": order_id, "cents": 100}
        return "result"

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0)
    start.set()
    return Counter(await asyncio.gather(*tasks))


@pytest.fixture
def runner(store, clock):
    runner = LayerRunner(store, IdempotencyPolicy(lease=10, clock=clock), workers=STORM)
    yield runner
    runner.close()


async def test_duplicate_storm_runs_once(runner):
    counter: Counter[str] = Counter()
    job = make_job(runner, counter)
    for round_ in range(ROUNDS):
        order_id = f"storm-{round_}"
        outcomes = await storm(runner, job, order_id)
        assert counter[order_id] == 1, (round_, counter)
        assert outcomes["result"] + outcomes["in_progress"] == STORM
        assert outcomes["result"] >= 1
        # After completion every caller gets the replay.
        assert await runner.run(job, order_id, 100) == {"order_id": order_id, "cents": 100}
        assert counter[order_id] == 1


async def test_round_trips_first_call_two_replay_one(runner, store):
    calls: list[str] = []
    for name in ("create", "replace", "delete", "get"):
        original = getattr(store.raw, name)

        def counting(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kw)

        setattr(store.raw, name, counting)
    job = make_job(runner, Counter())
    await runner.run(job, "rt", 1)
    assert calls == ["create", "replace"]
    calls.clear()
    await runner.run(job, "rt", 1)
    assert calls == ["create"]


async def test_crash_takeover_and_fenced_late_completion(runner, clock):
    counter: Counter[str] = Counter()
    job = make_job(runner, counter)
    layer_key = runner.layer.key(f"{job.__module__}.{job.__qualname__}", '["crashy"]')
    # A worker claims with the job's own key and fingerprint, then "dies".
    from stalwart.idempotency._core import canonical_json, sha256_hex  # noqa: PLC0415
    from stalwart.idempotency._function import jsonable  # noqa: PLC0415 - test-only internals

    fingerprint = sha256_hex(canonical_json(jsonable({"order_id": "crashy", "cents": 100})))
    dead = await runner.call("claim", layer_key, fingerprint)
    assert isinstance(dead, Lease)

    outcomes = await storm(runner, job, "crashy", n=20)
    assert outcomes == Counter({"in_progress": 20})
    assert counter["crashy"] == 0

    clock.advance(10.5)  # the dead worker's lease is over
    outcomes = await storm(runner, job, "crashy", n=50)
    assert counter["crashy"] == 1
    assert outcomes["result"] >= 1

    with pytest.raises(LeaseLost):
        await runner.call("complete", dead, {"order_id": "crashy", "cents": -1})
    with pytest.raises(LeaseLost):
        await runner.call("release", dead)
    # The new owner's record is intact.
    replay = await runner.call("claim", layer_key, fingerprint)
    assert isinstance(replay, Replay)
    assert replay.result == {"order_id": "crashy", "cents": 100}


async def test_heartbeat_keeps_the_lease_and_is_fenced(runner, clock):
    key = runner.layer.key("hb", "k")
    lease = await runner.call("claim", key, "fp")
    clock.advance(8)
    beaten = await runner.call("heartbeat", lease)
    assert beaten.version == lease.version + 1
    clock.advance(8)  # past the first lease, inside the extended one
    with pytest.raises(InProgress):
        await runner.call("claim", key, "fp")
    with pytest.raises(LeaseLost):
        await runner.call("complete", lease, "stale version")
    await runner.call("complete", beaten, "done")
    assert await runner.call("claim", key, "fp") == Replay(key, "done")


async def test_mismatch(runner):
    job = make_job(runner, Counter())
    await runner.run(job, "mm", 100)
    with pytest.raises(FingerprintMismatch):
        await runner.run(job, "mm", 999)


async def test_exceptions_release_and_rerun(runner):
    attempts: list[int] = []

    if runner.mode == "sync":

        def flaky(n: int) -> int:
            attempts.append(n)
            if len(attempts) == 1:
                raise RuntimeError("boom")
            return n

    else:

        async def flaky(n: int) -> int:  # type: ignore[misc]
            attempts.append(n)
            if len(attempts) == 1:
                raise RuntimeError("boom")
            return n

    job = idempotent(runner.layer)(flaky)
    with pytest.raises(RuntimeError):
        await runner.run(job, 5)
    assert await runner.run(job, 5) == 5
    assert await runner.run(job, 5) == 5
    assert attempts == [5, 5]


async def test_expired_record_runs_again(runner, clock):
    counter: Counter[str] = Counter()
    job = make_job(runner, counter)
    await runner.run(job, "exp", 100)
    await runner.run(job, "exp", 100)
    assert counter["exp"] == 1
    clock.advance(24 * 3600 + 1)  # past the default 24 h retention
    await runner.run(job, "exp", 100)
    assert counter["exp"] == 2


class _Opaque:
    """A result the default codec cannot encode."""


async def test_result_that_cannot_be_stored_runs_once(runner):
    runs: list[int] = []

    if runner.mode == "sync":

        def charge(n: int) -> Any:
            runs.append(n)
            return _Opaque()

    else:

        async def charge(n: int) -> Any:  # type: ignore[misc]
            runs.append(n)
            return _Opaque()

    job = idempotent(runner.layer)(charge)
    assert isinstance(await runner.run(job, 1), _Opaque)
    for _ in range(2):
        with pytest.raises(ResultNotStored):
            await runner.run(job, 1)
    assert runs == [1]
