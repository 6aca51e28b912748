"""Webhook delivery end to end on Redis: real ``ledger serve``, real ``ledger worker``
processes, a real receiver (werkzeug) that verifies signatures and records overlaps."""

from __future__ import annotations

import contextlib
import json
import signal
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from api_support import ledger_serve
from webhook_scenarios import (
    FAST_WORKER_ENV,
    HERE,
    Receiver,
    ReceiverServer,
    run_webhook_scenario,
    start_worker,
    stop,
    tenant_with_endpoint,
    wait_until,
    workers,
)

pytestmark = pytest.mark.slow  # processes: collected first so xdist starts them first
WAIT_S = 60
"""Bounds every wait; a passing run waits far less (a worker process's start-up dominates on
a loaded machine, several seconds)."""


@pytest.fixture
def redis_url(store_url_factory: Callable[[str], Callable[[], str]]) -> str:
    return store_url_factory("redis")()


def _delivery(tenant: Any, event_id: str) -> dict[str, Any]:
    """The event's one delivery (``{}`` before the worker fanned it out)."""
    deliveries = tenant.api.get(f"/v1/events/{event_id}").json()["deliveries"]
    assert len(deliveries) <= 1
    return dict(deliveries[0]) if deliveries else {}


def test_signed_retried_dead_lettered_and_resent(redis_url: str) -> None:
    receiver = Receiver(fail_first=1)
    env = FAST_WORKER_ENV | {"LEDGER_WEBHOOK_RETRY_SCHEDULE_S": json.dumps([0.2, 0.2])}
    with (
        ReceiverServer(receiver) as server,
        # The worker inside the API process this time.
        ledger_serve("--store", redis_url, "--with-worker", cwd=HERE, env=env) as served,
        contextlib.ExitStack() as stack,
    ):
        tenant = stack.enter_context(tenant_with_endpoint(served.base, redis_url, server))
        first = tenant.transfer()
        [event_id] = tenant.event_ids()
        assert wait_until(lambda: event_id in receiver.delivered_ids(), timeout_s=WAIT_S)
        # Answered 500 first, then 200: both signed with the endpoint's secret.
        assert [(d.event_id, d.status, d.verified) for d in receiver.deliveries] == [
            (event_id, 500, True),
            (event_id, 200, True),
        ]
        assert receiver.deliveries[0].event_type == "transfer.created"
        delivery = _delivery(tenant, event_id)
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
        event = tenant.api.get(f"/v1/events/{event_id}").json()
        assert event["data"]["object"]["id"] == first["id"]

        # Always 500: three attempts (the first and the schedule's two), then dead.
        receiver.status = 500
        tenant.transfer()
        last = tenant.event_ids()[-1]
        assert wait_until(lambda: _delivery(tenant, last).get("status") == "dead", timeout_s=WAIT_S)
        assert _delivery(tenant, last)["attempts"] == 3
        assert [d.status for d in receiver.deliveries if d.event_id == last] == [500] * 3

        # Resend (idempotent by key): delivered once more.
        receiver.status = 200
        key = {"Idempotency-Key": str(uuid.uuid4())}
        resent = tenant.api.post(f"/v1/events/{last}/resend", headers=key)
        assert resent.status_code == 202, resent.text
        again = tenant.api.post(f"/v1/events/{last}/resend", headers=key)
        assert again.headers["Idempotent-Replayed"] == "true"
        delivered = lambda: _delivery(tenant, last)["status"] == "delivered"  # noqa: E731
        assert wait_until(delivered, timeout_s=WAIT_S)
        assert [d.status for d in receiver.deliveries if d.event_id == last] == [500] * 3 + [200]


def test_two_workers_never_deliver_one_event_at_once(redis_url: str) -> None:
    receiver = Receiver(delay_s=0.05)
    with (
        ReceiverServer(receiver) as server,
        ledger_serve("--store", redis_url, cwd=HERE) as served,
        workers(redis_url, 2),
        contextlib.ExitStack() as stack,
    ):
        tenant = stack.enter_context(tenant_with_endpoint(served.base, redis_url, server))
        for _ in range(30):
            tenant.transfer()
        events = set(tenant.event_ids())
        assert len(events) == 30
        assert wait_until(lambda: events <= receiver.delivered_ids(), timeout_s=WAIT_S)
        # Each delivery the receiver saw is an attempt the ledger recorded: no worker sent an
        # event another worker was sending (a slow answer may time out and be sent again:
        # at least once, but then as a recorded attempt).
        recorded = lambda: {e: _delivery(tenant, e) for e in events}  # noqa: E731
        assert wait_until(
            lambda: all(d.get("status") == "delivered" for d in recorded().values()),
            timeout_s=WAIT_S,
            step_s=0.5,
        )
        attempts = {e: d["attempts"] for e, d in recorded().items()}
        assert attempts == Counter(receiver.arrivals)
    assert receiver.concurrent_duplicates == 0


def test_a_worker_killed_mid_delivery_is_taken_over_after_its_lease(redis_url: str) -> None:
    receiver = Receiver(stall_first_s=4)
    env = {"LEDGER_WEBHOOK_TIMEOUT_S": "5", "LEDGER_WEBHOOK_LEASE_S": "6"}
    with (
        ReceiverServer(receiver) as server,
        ledger_serve("--store", redis_url, cwd=HERE) as served,
        workers(redis_url, 1, env=env) as procs,
        contextlib.ExitStack() as stack,
    ):
        tenant = stack.enter_context(tenant_with_endpoint(served.base, redis_url, server))
        tenant.transfer()
        [event_id] = tenant.event_ids()
        assert wait_until(lambda: receiver.arrivals == [event_id], timeout_s=WAIT_S)
        procs[0].send_signal(signal.SIGKILL)  # while the receiver holds its delivery
        procs[0].wait(timeout=5)
        successor = start_worker(redis_url, env)
        try:
            # The stalled delivery ends (answered, to a dead worker); the successor delivers
            # again once the lease expired, and records it.
            assert wait_until(lambda: len(receiver.arrivals) == 2, timeout_s=WAIT_S)
            delivered = lambda: _delivery(tenant, event_id).get("status") == "delivered"  # noqa: E731
            assert wait_until(delivered, timeout_s=WAIT_S)
        finally:
            stop(successor)
    # Seen twice, always under its one id (the receiver deduplicates on it), never at once.
    assert receiver.arrivals == [event_id, event_id]
    assert receiver.concurrent_duplicates == 0


def test_receiver_down_and_a_worker_killed_lose_nothing(redis_url: str) -> None:
    counts = run_webhook_scenario(redis_url, seconds=4)
    assert counts["events"] > 10
    assert counts["lost"] == 0
    assert counts["delivered"] == counts["events"]
    assert counts["concurrent_duplicates"] == 0
