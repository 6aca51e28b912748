"""The outbox: each change of a transfer commits its event in the same transact, on every
engine, sync and async; a refused or replayed change writes none."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from ledger.domain.errors import InsufficientFunds
from ledger.domain.models import NormalBalance
from ledger.webhooks.outbox import DUE_PARTITION, events_partition

T = "acme"  # the ledger fixture's tenant


async def _records(ledger: Any, partition: str) -> list[Any]:
    if ledger.mode == "sync":
        loop = asyncio.get_running_loop()
        page = await loop.run_in_executor(
            None, lambda: ledger.sync_store.query(partition, limit=1000)
        )
    else:
        page = await ledger.async_store.query(partition, limit=1000)
    return list(page.records)


async def _events(ledger: Any) -> list[tuple[str, str]]:
    """(type, transfer id) of the tenant's events, in list (time) order."""
    return [
        (r.data["type"], r.data["transfer"]["id"])
        for r in await _records(ledger, events_partition(T))
    ]


async def test_each_change_commits_its_event_and_a_refused_one_none(ledger: Any) -> None:
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice", no_overdraft=True)
    paid, _ = await ledger.create_transfer(T, ledger.draft(cash, alice, 500), idempotency_key="p")
    assert await _events(ledger) == [("transfer.created", paid.id)]
    due = await _records(ledger, DUE_PARTITION)
    assert [r.data["event_id"] for r in due] == [
        r.key.sort for r in await _records(ledger, events_partition(T))
    ]
    event = (await _records(ledger, events_partition(T)))[0].data
    assert event["transfer"]["status"] == "posted"
    assert "fingerprint" not in event["transfer"]

    # Refused (insufficient funds) and replayed (same key, same body): no event.
    with pytest.raises(InsufficientFunds):
        await ledger.create_transfer(T, ledger.draft(alice, cash, 501), idempotency_key="x")
    _, replayed = await ledger.create_transfer(
        T, ledger.draft(cash, alice, 500), idempotency_key="p"
    )
    assert replayed
    assert len(await _events(ledger)) == 1

    ledger.clock.advance(1)
    hold, _ = await ledger.create_transfer(
        T, ledger.draft(alice, cash, 100, pending=True), idempotency_key="h"
    )
    await ledger.post_transfer(T, hold.id, amount=60)
    ledger.clock.advance(1)
    void, _ = await ledger.create_transfer(
        T, ledger.draft(alice, cash, 10, pending=True), idempotency_key="v"
    )
    await ledger.void_transfer(T, void.id)
    ledger.clock.advance(1)
    timed, _ = await ledger.create_transfer(
        T, ledger.draft(alice, cash, 5, pending=True, timeout_s=5), idempotency_key="t"
    )
    ledger.clock.advance(6)
    assert await ledger.expire_pending(T) == 1
    small, _ = await ledger.create_transfer(T, ledger.draft(cash, alice, 7), idempotency_key="s")
    reversal, _ = await ledger.reverse_transfer(T, small.id, idempotency_key="r")
    await ledger.reverse_transfer(T, small.id, idempotency_key="r")  # replayed: no event
    assert Counter(await _events(ledger)) == Counter(
        [
            ("transfer.created", paid.id),
            ("transfer.created", hold.id),
            ("transfer.posted", hold.id),
            ("transfer.created", void.id),
            ("transfer.voided", void.id),
            ("transfer.created", timed.id),
            ("transfer.expired", timed.id),
            ("transfer.created", small.id),
            ("transfer.created", reversal.id),
            ("transfer.reversed", small.id),
        ]
    )
    listed = await _records(ledger, events_partition(T))
    assert [r.data["created_at"] for r in listed] == sorted(r.data["created_at"] for r in listed)
    assert len(await _records(ledger, DUE_PARTITION)) == len(listed)
    assert await ledger.invariants() == []  # which checks one event per change, too


async def test_a_batch_commits_one_event_per_transfer_and_a_failed_one_none(
    ledger: Any,
) -> None:
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice", no_overdraft=True)
    good = [ledger.draft(cash, alice, 100), ledger.draft(cash, alice, 60)]
    with pytest.raises(InsufficientFunds):
        await ledger.create_batch(T, [*good, ledger.draft(alice, cash, 161)], idempotency_key="b1")
    assert await _events(ledger) == []
    assert await _records(ledger, DUE_PARTITION) == []
    created, _ = await ledger.create_batch(T, good, idempotency_key="b2")
    await ledger.create_batch(T, good, idempotency_key="b2")  # replayed
    assert Counter(await _events(ledger)) == Counter(("transfer.created", t.id) for t in created)
    assert await ledger.invariants() == []
