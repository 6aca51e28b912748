# Copyright 2026 stalwart contributors
"""Expired records are absent for every operation, and can be created again.

Time is moved with the test's ManualClock; one test uses the wall clock and real sleeps to show
the engine's physical expiry agrees with the contract (a record whose TTL was cleared survives).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from stalwart.storage import (
    Check,
    Create,
    Delete,
    Increment,
    Key,
    Replace,
    TransactionConflict,
    VersionConflict,
)

KEY = Key("sessions", "s-1")


async def test_record_is_live_until_its_expiry_and_absent_from_it(store, clock):
    created = await store.create(KEY, {"a": 1}, ttl=30)
    clock.advance(29.5)
    live = await store.get(KEY)
    assert live is not None
    assert live.expires_at == created.expires_at
    clock.advance(0.5)  # now == expires_at: expires_at <= now means absent
    assert await store.get(KEY) is None
    clock.advance(1000)
    assert await store.get(KEY) is None


async def test_expired_record_can_be_created_again(store, clock):
    await store.create(KEY, {"old": True}, ttl=10)
    await store.replace(KEY, {"old": "v2"}, expected_version=1, ttl=10)
    clock.advance(11)
    again = await store.create(KEY, {"new": True})
    assert (again.version, again.data, again.expires_at) == (1, {"new": True}, None)
    fetched = await store.get(KEY)
    assert fetched is not None
    assert (fetched.version, fetched.data, fetched.expires_at) == (1, {"new": True}, None)


async def test_expired_record_cannot_be_replaced(store, clock):
    await store.create(KEY, {"a": 1}, ttl=10)
    clock.advance(10.5)
    with pytest.raises(VersionConflict) as caught:
        await store.replace(KEY, {"a": 2}, expected_version=1)
    assert caught.value.current is None
    assert await store.get(KEY) is None


async def test_expired_record_is_not_deleted_as_live(store, clock):
    await store.create(KEY, {"a": 1}, ttl=10)
    await store.create(Key("sessions", "s-2"), {"a": 1}, ttl=10)
    clock.advance(10.5)
    assert await store.delete(KEY) is False
    with pytest.raises(VersionConflict) as caught:
        await store.delete(Key("sessions", "s-2"), expected_version=1)
    assert caught.value.current is None


async def test_increment_of_expired_record_starts_fresh(store, clock):
    await store.create(KEY, {"n": 100, "other": "gone"}, ttl=10)
    clock.advance(11)
    record = await store.increment(KEY, "n", 1)
    assert (record.data, record.version, record.expires_at) == ({"n": 1}, 1, None)
    with_ttl = await store.increment(Key("sessions", "s-2"), "n", 2, ttl=20)
    clock.advance(21)
    fresh = await store.increment(Key("sessions", "s-2"), "n", 3, ttl=40)
    assert (fresh.data, fresh.version) == ({"n": 3}, 1)
    assert with_ttl.expires_at is not None
    assert fresh.expires_at == pytest.approx(clock() + 40, abs=1e-3)


async def test_increment_keeps_expiry_so_counter_still_expires(store, clock):
    first = await store.increment(KEY, "n", ttl=10)
    clock.advance(5)
    second = await store.increment(KEY, "n")
    assert second.expires_at == pytest.approx(first.expires_at, abs=1e-3)
    assert second.data == {"n": 2}
    clock.advance(5)
    assert await store.get(KEY) is None


async def test_query_skips_expired_records(store, clock):
    await store.create(Key("p", "a"), {"n": 1}, ttl=10)
    await store.create(Key("p", "b"), {"n": 2})
    await store.create(Key("p", "c"), {"n": 3}, ttl=100)
    clock.advance(50)
    page = await store.query("p")
    assert [r.key.sort for r in page.records] == ["b", "c"]
    assert page.cursor is None
    clock.advance(100)
    page = await store.query("p")
    assert [r.key.sort for r in page.records] == ["b"]


async def test_transactions_treat_expired_records_as_absent(store, clock):
    gone = Key("p", "gone")
    counter = Key("p", "counter")
    await store.create(gone, {"old": 1}, ttl=10)
    await store.create(counter, {"n": 50, "x": 1}, ttl=10)
    clock.advance(10)
    with pytest.raises(TransactionConflict) as caught:
        await store.transact([Check(gone, 1)])
    assert caught.value.index == 0
    with pytest.raises(TransactionConflict) as caught:
        await store.transact([Check(Key("p", "other"), None), Replace(gone, {}, 1)])
    assert caught.value.index == 1
    with pytest.raises(TransactionConflict) as caught:
        await store.transact([Delete(gone, 1)])
    assert caught.value.index == 0
    results = await store.transact(
        [
            Check(gone, None),
            Increment(counter, "n", 2),
            Delete(Key("p", "never")),
        ]
    )
    assert results[0] is None
    assert results[1] is not None
    assert (results[1].data, results[1].version, results[1].expires_at) == ({"n": 2}, 1, None)
    created = await store.transact([Create(gone, {"new": 1})])
    assert created[0] is not None
    assert (created[0].data, created[0].version) == ({"new": 1}, 1)


async def test_wall_clock_expiry_and_physical_ttl_agree(store, clock):
    """Real time: a record whose TTL was cleared must survive the engine's physical expiry."""
    clock.thaw()
    cleared = Key("real", "cleared")
    expiring = Key("real", "expiring")
    counter = Key("real", "counter")
    # Long enough that a slow emulator on a busy machine still replaces the record before its
    # ttl runs out; then wait, from the last write with a ttl, until every ttl has.
    ttl = 2.0
    await store.create(cleared, {"n": 1}, ttl=ttl)
    await store.replace(cleared, {"n": 2}, expected_version=1)
    await store.create(expiring, {"n": 1}, ttl=ttl)
    await store.increment(counter, "n", ttl=ttl)
    last_ttl_written = time.monotonic()
    await store.increment(counter, "n")
    await asyncio.sleep(max(0.0, last_ttl_written + ttl + 0.4 - time.monotonic()))
    survivor = await store.get(cleared)
    assert survivor is not None
    assert (survivor.data, survivor.version, survivor.expires_at) == ({"n": 2}, 2, None)
    assert await store.get(expiring) is None
    assert await store.get(counter) is None
    again = await store.create(expiring, {"n": "again"})
    assert again.version == 1
    restarted = await store.increment(counter, "n")
    assert (restarted.data, restarted.version) == ({"n": 1}, 1)
