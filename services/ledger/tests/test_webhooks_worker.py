"""The delivery worker in this process, on real stores and a real receiver: fan-out to the
endpoints that want an event, a breaker that defers instead of spending attempts, and a lease
that fences off a worker whose lease expired."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from ledger.domain.models import NewAccount, NewTransfer, NormalBalance
from ledger.service import Ledger
from ledger.webhooks.outbox import DUE_PARTITION
from ledger.webhooks.records import delivery_key, endpoint_key
from ledger.webhooks.worker import DeliveryPolicy, DeliveryWorker
from webhook_scenarios import Receiver, ReceiverServer, wait_until

from stalwart.storage import AsyncStore, Create, open_async_store

T = "acme"


@pytest.fixture(params=["sqlite", "redis"])
async def store(
    request: pytest.FixtureRequest, store_url_factory: Callable[[str], Callable[[], str]]
) -> AsyncIterator[AsyncStore]:
    opened = open_async_store(store_url_factory(request.param)())
    try:
        yield opened
    finally:
        await opened.close()


async def _endpoint(
    store: AsyncStore, tenant: str, url: str, events: list[str], *, status: str = "enabled"
) -> str:
    """An endpoint record as the API writes it (the API itself: test_webhooks_api.py)."""
    endpoint_id = f"we_{len(url)}{events[0][-3:]}{status[:3]}"
    data = {
        "id": endpoint_id,
        "url": url,
        "enabled_events": events,
        "description": None,
        "status": status,
        "created_at": time.time(),
        "secret": "whsec_test",
    }
    await store.transact([Create(endpoint_key(tenant, endpoint_id), data)])
    return endpoint_id


async def _transfers(store: AsyncStore, tenant: str, count: int, **fields: Any) -> Ledger:
    ledger = Ledger(store)
    cash = await ledger.create_account(
        tenant, NewAccount(currency="USD", name="cash", normal_balance=NormalBalance.DEBIT)
    )
    wallet = await ledger.create_account(tenant, NewAccount(currency="USD", name="wallet"))
    for i in range(count):
        new = NewTransfer(
            debit_account_id=cash.id, credit_account_id=wallet.id, amount=1, currency="USD"
        )
        await ledger.create_transfer(tenant, new.model_copy(update=fields), idempotency_key=f"{i}")
    return ledger


async def _drain(*workers: DeliveryWorker, rounds: int = 30) -> None:
    """Rounds until none of the workers finds due work."""
    for _ in range(rounds):
        if not sum(await asyncio.gather(*(w.run_once() for w in workers))):
            return
    raise AssertionError("the workers kept finding work")


async def test_an_event_goes_to_the_enabled_endpoints_that_want_it(store: AsyncStore) -> None:
    receiver = Receiver(secret="whsec_test")
    with ReceiverServer(receiver) as server:
        everything = await _endpoint(store, T, server.url + "?to=all", ["*"])
        await _endpoint(store, T, server.url + "?to=posted", ["transfer.posted"])
        await _endpoint(store, T, server.url + "?to=off", ["*"], status="disabled")
        await _transfers(store, T, 1)
        await _transfers(store, "no-endpoints", 1)  # its event is listed, sent nowhere
        worker = DeliveryWorker(store, DeliveryPolicy(timeout_s=5, lease_s=10))
        try:
            await _drain(worker)
        finally:
            await worker.aclose()
    assert [(d.path, d.event_type, d.verified) for d in receiver.deliveries] == [
        ("/hooks/ledger?to=all", "transfer.created", True)
    ]
    [event_id] = {d.event_id for d in receiver.deliveries}
    delivery = await store.get(delivery_key(T, event_id, everything))
    assert delivery is not None
    assert (delivery.data["status"], delivery.data["attempts"]) == ("delivered", 1)
    assert (await store.query(DUE_PARTITION, limit=10)).records == []  # the queue is empty


async def test_an_open_breaker_defers_deliveries_without_spending_attempts(
    store: AsyncStore,
) -> None:
    receiver = Receiver(secret="whsec_test", status=500)
    policy = DeliveryPolicy(
        schedule_s=(60.0,), timeout_s=5, lease_s=10, batch=1, breaker_min_calls=2
    )
    with ReceiverServer(receiver) as server:
        endpoint_id = await _endpoint(store, T, server.url, ["*"])
        await _transfers(store, T, 3)
        worker = DeliveryWorker(store, policy)
        try:
            await _drain(worker)  # 3 fan-outs, 2 failed attempts, then the breaker is open
        finally:
            await worker.aclose()
    assert len(receiver.deliveries) == 2
    events = (await store.query(f"t/{T}/events", limit=10)).records
    states = []
    for event in events:
        record = await store.get(delivery_key(T, event.key.sort, endpoint_id))
        assert record is not None
        states.append((record.data["status"], record.data["attempts"]))
    assert sorted(states) == [("pending", 0), ("retrying", 1), ("retrying", 1)]
    due = (await store.query(DUE_PARTITION, limit=10)).records
    assert len(due) == 3  # two retries in a minute; the deferred one when the breaker probes


async def test_a_worker_whose_lease_expired_cannot_record_its_attempt(store: AsyncStore) -> None:
    receiver = Receiver(secret="whsec_test", stall_first_s=1.0)
    policy = DeliveryPolicy(timeout_s=5, lease_s=10)
    with ReceiverServer(receiver) as server:
        endpoint_id = await _endpoint(store, T, server.url, ["*"])
        await _transfers(store, T, 1)
        slow = DeliveryWorker(store, policy, name="slow")
        # A worker whose clock is 100 s ahead: to it, the slow worker's lease has expired.
        later = DeliveryWorker(store, policy, name="later", clock=lambda: time.time() + 100)
        try:
            assert await slow.run_once() == 1  # the fan-out
            stalled = asyncio.create_task(slow.run_once())  # its POST is held for 1 s
            assert await asyncio.to_thread(wait_until, lambda: bool(receiver.arrivals), 10)
            assert await later.run_once() == 1  # takes the delivery over and delivers it
            await stalled  # the slow worker's attempt ends: its transact must fail
        finally:
            await slow.aclose()
            await later.aclose()
    [event_id] = set(receiver.arrivals)
    assert len(receiver.arrivals) == 2
    delivery = await store.get(delivery_key(T, event_id, endpoint_id))
    assert delivery is not None
    assert (delivery.data["status"], delivery.data["attempts"]) == ("delivered", 1)
    assert (await store.query(DUE_PARTITION, limit=10)).records == []
