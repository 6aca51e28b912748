# Copyright 2026 stalwart contributors
"""Real contention: 16 writers (threads in sync mode, tasks in async mode) on one record.

Lost updates, double creates and torn transactions show up as wrong totals here.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from stalwart.storage import (
    AlreadyExists,
    Key,
    Record,
    Replace,
    TransactionConflict,
    VersionConflict,
)

WRITERS = 16


async def back_off(attempt: int) -> None:
    """Full-jitter backoff after a conflict, as a real client does: without it 16 writers spend
    most round trips colliding (the slow emulated servers then dominate the suite's time)."""
    await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 10))))


def newer_current(conflict: VersionConflict, stale: Record) -> Record:
    """The record always exists here, so a conflict must carry it, newer than ours."""
    current = conflict.current
    assert current is not None
    assert current.version > stale.version
    return current


def check_transfer_conflict(conflict: TransactionConflict) -> None:
    assert conflict.index in (-1, 0, 1)  # -1: the engine cannot tell which item collided


@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_read_modify_replace_loses_no_update(store):
    """16 writers x 250 updates. Slow on emulated servers (moto, secantusdb): every success
    costs up to 16 conflicting attempts; test_read_modify_replace_quick runs in every pass."""
    await read_modify_replace(store, per_writer=250)


async def test_read_modify_replace_quick(store):
    """The same contention as the slow test, 16 writers x 25 updates."""
    await read_modify_replace(store, per_writer=25)


async def read_modify_replace(store, *, per_writer: int) -> None:
    key = Key("contended", f"counter-{per_writer}")
    await store.create(key, {"n": 0})

    async def writer(_: int) -> int:
        conflicts = 0
        for _ in range(per_writer):
            current = await store.get(key)
            assert current is not None
            conflicts_this_update = 0
            while True:
                try:
                    await store.replace(
                        key, {"n": current.data["n"] + 1}, expected_version=current.version
                    )
                    break
                except VersionConflict as exc:
                    conflicts += 1
                    conflicts_this_update += 1
                    newer_current(exc, current)
                    # The carried record is stale once we have slept: read again after.
                    await back_off(conflicts_this_update)
                    current = await store.get(key)
                    assert current is not None
        return conflicts

    conflicts = await asyncio.gather(*(writer(i) for i in range(WRITERS)))
    final = await store.get(key)
    assert final is not None
    assert final.data == {"n": WRITERS * per_writer}
    assert final.version == WRITERS * per_writer + 1
    assert sum(conflicts) > 0, "the writers never contended; the test proved nothing"


async def test_concurrent_create_has_exactly_one_winner(store):
    for round_number in range(5):
        key = Key("race", f"round-{round_number}")
        outcomes = await asyncio.gather(
            *(store.create(key, {"writer": i}) for i in range(WRITERS)), return_exceptions=True
        )
        winners = [o for o in outcomes if isinstance(o, Record)]
        losers = [o for o in outcomes if isinstance(o, AlreadyExists)]
        assert len(winners) == 1, outcomes
        assert len(losers) == WRITERS - 1, outcomes
        winner = winners[0]
        assert winner.version == 1
        for loser in losers:
            assert loser.current is not None
            assert (loser.current.data, loser.current.version) == (winner.data, 1)
        stored = await store.get(key)
        assert stored is not None
        assert stored.data == winner.data


async def test_concurrent_increments_are_exact(store):
    key = Key("contended", "hits")
    per_writer = 50

    async def incrementer(_: int) -> list[int]:
        return [(await store.increment(key, "hits")).data["hits"] for _ in range(per_writer)]

    seen = await asyncio.gather(*(incrementer(i) for i in range(WRITERS)))
    total = WRITERS * per_writer
    # Every increment returns the value after it: all distinct, nothing lost or doubled.
    assert sorted(v for values in seen for v in values) == list(range(1, total + 1))
    final = await store.get(key)
    assert final is not None
    assert final.data == {"hits": total}
    assert final.version == total


async def test_increments_and_optimistic_replaces_do_not_overwrite_each_other(store):
    key = Key("contended", "mixed")
    per_writer = 40
    await store.create(key, {"incremented": 0, "replaced": 0})

    async def incrementer(_: int) -> None:
        for _ in range(per_writer):
            await store.increment(key, "incremented")

    async def replacer(_: int) -> None:
        for _ in range(per_writer):
            current = await store.get(key)
            assert current is not None
            while True:
                data = {**current.data, "replaced": current.data["replaced"] + 1}
                try:
                    await store.replace(key, data, expected_version=current.version)
                    break
                except VersionConflict as exc:
                    current = newer_current(exc, current)

    half = WRITERS // 2
    await asyncio.gather(
        *(incrementer(i) for i in range(half)), *(replacer(i) for i in range(half))
    )
    final = await store.get(key)
    assert final is not None
    assert final.data == {"incremented": half * per_writer, "replaced": half * per_writer}
    assert final.version == 1 + 2 * half * per_writer


async def test_concurrent_transfers_conserve_the_total(store):
    left, right = Key("bank", "left"), Key("bank", "right")
    start = 1000
    moves_per_worker = 15
    await store.create(left, {"balance": start})
    await store.create(right, {"balance": start})

    async def mover(worker: int) -> int:
        """Move money back and forth; return the net amount moved left -> right."""
        net = 0
        for move in range(moves_per_worker):
            amount = 1 + (worker * 7 + move) % 5
            to_right = (worker + move) % 2 == 0
            attempts = 0
            while True:
                a = await store.get(left)
                b = await store.get(right)
                assert a is not None
                assert b is not None
                source, target = (a, b) if to_right else (b, a)
                try:
                    await store.transact(
                        [
                            Replace(
                                source.key,
                                {"balance": source.data["balance"] - amount},
                                source.version,
                            ),
                            Replace(
                                target.key,
                                {"balance": target.data["balance"] + amount},
                                target.version,
                            ),
                        ]
                    )
                except TransactionConflict as exc:
                    check_transfer_conflict(exc)
                    attempts += 1
                    await back_off(attempts)
                    continue
                net += amount if to_right else -amount
                break
        return net

    nets = await asyncio.gather(*(mover(w) for w in range(WRITERS)))
    final_left = await store.get(left)
    final_right = await store.get(right)
    assert final_left is not None
    assert final_right is not None
    assert final_left.data["balance"] + final_right.data["balance"] == 2 * start
    assert final_left.data["balance"] == start - sum(nets)
    assert final_right.data["balance"] == start + sum(nets)
    # Every successful transfer bumped both records exactly once.
    assert final_left.version == final_right.version == 1 + WRITERS * moves_per_worker
