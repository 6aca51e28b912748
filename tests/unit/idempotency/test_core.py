# Copyright 2026 stalwart contributors
"""Unit tests of the idempotency state machine, on an in-memory store (tests only).

The real engines are exercised by tests/conformance/test_idempotency_*.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from stalwart.idempotency import (
    AsyncIdempotency,
    FingerprintMismatch,
    Idempotency,
    IdempotencyError,
    IdempotencyPolicy,
    InProgress,
    InvalidIdempotencyKey,
    Lease,
    LeaseLost,
    Replay,
    Status,
)
from stalwart.idempotency._core import decide, record_key
from stalwart.storage import MAX_TTL_S, AlreadyExists
from unit.idempotency.idem_memory_store import AsyncMemoryStore, MemoryStore


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(lease: float = 10.0) -> tuple[Idempotency, MemoryStore, FakeClock]:
    clock = FakeClock()
    store = MemoryStore()
    return Idempotency(store, IdempotencyPolicy(lease=lease, clock=clock)), store, clock


def test_error_tree() -> None:
    for error in (InProgress, FingerprintMismatch, LeaseLost, InvalidIdempotencyKey):
        assert issubclass(error, IdempotencyError)
    assert Status.IN_PROGRESS == "IN_PROGRESS"


def test_first_call_two_round_trips_replay_one() -> None:
    layer, store, _ = make()
    key = layer.key("ns", "k1")
    lease = layer.claim(key, "fp")
    assert isinstance(lease, Lease)
    layer.complete(lease, {"ok": 1})
    assert store.calls == ["create", "replace"]
    store.calls.clear()
    replay = layer.claim(key, "fp")
    assert replay == Replay(key, {"ok": 1})
    assert store.calls == ["create"]
    record = store.get(key)
    assert record is not None
    assert record.data["fingerprint"] == "fp"  # kept on completion (unlike Powertools/Redis)
    assert record.data["status"] == Status.COMPLETED


def test_in_progress_then_mismatch() -> None:
    layer, _, clock = make(lease=10)
    key = layer.key("ns", "k")
    assert isinstance(layer.claim(key, "fp"), Lease)
    clock.now += 2.5
    with pytest.raises(InProgress) as info:
        layer.claim(key, "fp")
    assert info.value.retry_after == 8
    with pytest.raises(FingerprintMismatch):
        layer.claim(key, "other")


def test_takeover_fences_the_late_owner(caplog: pytest.LogCaptureFixture) -> None:
    layer, store, clock = make(lease=10)
    key = layer.key("ns", "k")
    dead = layer.claim(key, "fp")
    assert isinstance(dead, Lease)
    clock.now += 11
    fresh = layer.claim(key, "fp")
    assert isinstance(fresh, Lease)
    assert fresh.took_over
    assert fresh.version == dead.version + 1
    with (
        caplog.at_level(logging.ERROR, logger="stalwart.idempotency"),
        pytest.raises(LeaseLost) as info,
    ):
        layer.complete(dead, {"by": "dead"})
    assert info.value.result == {"by": "dead"}
    assert "taken over" in caplog.text
    with pytest.raises(LeaseLost):
        layer.release(dead)
    with pytest.raises(LeaseLost):
        layer.heartbeat(dead)
    layer.complete(fresh, {"by": "fresh"})
    assert layer.claim(key, "fp") == Replay(key, {"by": "fresh"})
    assert store.get(key) is not None


def test_heartbeat_extends_and_bumps_version() -> None:
    layer, _, clock = make(lease=10)
    key = layer.key("ns", "k")
    lease = layer.claim(key, None)
    assert isinstance(lease, Lease)
    clock.now += 8
    beaten = layer.heartbeat(lease)
    assert beaten.version == lease.version + 1
    clock.now += 8  # past the first lease, within the second
    with pytest.raises(InProgress):
        layer.claim(key, None)
    with pytest.raises(LeaseLost):
        layer.complete(lease, 1)  # the old version is stale even for the same owner
    layer.complete(beaten, 2)
    assert layer.claim(key, None) == Replay(key, 2)


def test_release_allows_rerun() -> None:
    layer, _, _ = make()
    key = layer.key("ns", "k")
    lease = layer.claim(key, "fp")
    assert isinstance(lease, Lease)
    layer.release(lease)
    assert isinstance(layer.claim(key, "fp"), Lease)


def test_missing_current_falls_back_to_get() -> None:
    class Forgetful(MemoryStore):
        def create(self, key, data, *, ttl=None):
            try:
                return super().create(key, data, ttl=ttl)
            except AlreadyExists as exc:
                raise AlreadyExists(key, None) from exc

    store = Forgetful()
    layer = Idempotency(store)
    key = layer.key("ns", "k")
    lease = layer.claim(key, "fp")
    assert isinstance(lease, Lease)
    layer.complete(lease, "r")
    store.calls.clear()
    assert layer.claim(key, "fp") == Replay(key, "r")
    assert store.calls == ["create", "get"]


def test_decide_is_pure() -> None:
    key = record_key(IdempotencyPolicy(), "a")
    assert type(decide(key, None, "f", 0)).__name__ == "_Absent"


def test_scope_parts_cannot_run_together() -> None:
    policy = IdempotencyPolicy()
    assert record_key(policy, "a:b", "c") != record_key(policy, "a", "b:c")
    assert record_key(policy, "t1", "k") != record_key(policy, "t2", "k")


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="positive"):
        IdempotencyPolicy(lease=0)
    with pytest.raises(ValueError, match="outlive"):
        IdempotencyPolicy(retention=10, lease=20)
    # A retention the stores would refuse as a ttl fails here, not at the first claim.
    with pytest.raises(ValueError, match="100 years"):
        IdempotencyPolicy(retention=MAX_TTL_S * 2)
    assert IdempotencyPolicy(retention=MAX_TTL_S).retention == MAX_TTL_S


def test_thread_storm_runs_once_on_memory_store() -> None:
    layer, _, _ = make()
    key = layer.key("ns", "storm")
    outcomes: list[str] = []
    barrier = threading.Barrier(20)

    def worker() -> None:
        barrier.wait()
        try:
            claimed = layer.claim(key, "fp")
        except InProgress:
            outcomes.append("busy")
            return
        outcomes.append("lease" if isinstance(claimed, Lease) else "replay")

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("lease") == 1
    assert outcomes.count("busy") == 19


async def test_async_layer_same_semantics() -> None:
    clock = FakeClock()
    store = AsyncMemoryStore(MemoryStore(clock))
    layer = AsyncIdempotency(store, IdempotencyPolicy(lease=5, clock=clock))
    key = layer.key("ns", "k")
    results = await asyncio.gather(
        *(layer.claim(key, "fp") for _ in range(10)), return_exceptions=True
    )
    leases = [r for r in results if isinstance(r, Lease)]
    assert len(leases) == 1
    assert all(isinstance(r, InProgress) for r in results if r is not leases[0])
    clock.now += 6
    fresh = await layer.claim(key, "fp")
    assert isinstance(fresh, Lease)
    with pytest.raises(LeaseLost):
        await layer.complete(leases[0], "late")
    fresh = await layer.heartbeat(fresh)
    await layer.complete(fresh, "ok")
    assert await layer.claim(key, "fp") == Replay(key, "ok")
