"""The delivery worker: takes due work from the outbox's queue under a lease and POSTs each
event to each endpoint that wants it, signed, retried on a schedule, then dead-lettered.

One round (:meth:`DeliveryWorker.run_once`) reads the head of ``webhooks/due`` (ordered by due
time) and *claims* each due, unleased record with a conditional write: ``Replace`` at the
version read, adding this worker's name and ``lease_until``. Of several workers reading one
record, one wins; the others get ``VersionConflict`` and skip it. Whatever a claim leads to is
written in one transact that starts with ``Delete(due record, expected_version=<claimed>)``: a
worker whose lease expired and was taken over (the version moved on) cannot mark anything, its
transact fails. An attempt starts only if it ends (``timeout_s``) before the lease does, so two
workers never deliver one event to one endpoint at the same time.

A due record without an endpoint is an event not yet *fanned out*: the worker replaces it by
one delivery record and one due record per endpoint whose event types match (none: it is just
deleted). A due record of an endpoint is one delivery attempt: 2xx is delivered; anything else,
a timeout or a network error is a failed attempt, scheduled again after the next wait of
``schedule_s``; after the last one the delivery is dead. Each endpoint has its own circuit
breaker: while it is open, that endpoint's deliveries are moved to when it probes again,
without spending an attempt.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from ledger.settings import LedgerSettings
from ledger.webhooks.models import DeliveryStatus, EndpointStatus
from ledger.webhooks.outbox import DUE_PARTITION, due_key, due_time, event_key
from ledger.webhooks.records import (
    MAX_ENDPOINTS,
    delivery_key,
    endpoint_key,
    endpoints_partition,
    event_from_record,
    matches,
)
from ledger.webhooks.signature import SIGNATURE_HEADER, signature_header
from stalwart.http import ClientPolicy, async_client
from stalwart.observability import MetricUnit, get_logger, metrics_scope, put_metric
from stalwart.resilience import (
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpen,
    CountWindow,
    DeadlineExceeded,
)
from stalwart.storage import (
    AsyncStore,
    Create,
    Delete,
    JSONObject,
    Operation,
    Record,
    Replace,
    StorageError,
    TransactionConflict,
    VersionConflict,
)

DEFAULT_SCHEDULE_S: Final = (60.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 86400.0)
"""Waits after each failed attempt: 1 min, 5 min, 30 min, 2 h, 5 h, 10 h, 24 h (8 attempts
over ~1.7 days), then the delivery is dead."""
_LEASE_FIELDS: Final = ("owner", "lease_until")
type _Outcome = tuple[int | None, str | None, float]
log = get_logger("ledger.webhooks")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How the worker delivers. ``lease_s`` must exceed ``timeout_s``: an attempt starts only
    when it can end before the lease does."""

    schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    timeout_s: float = 10.0
    lease_s: float = 60.0
    poll_s: float = 1.0
    batch: int = 20
    breaker_min_calls: int = 5
    breaker_open_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.schedule_s or any(wait <= 0 for wait in self.schedule_s):
            raise ValueError("a retry schedule is one or more waits, each > 0 seconds")
        if not 0 < self.timeout_s < self.lease_s:
            raise ValueError("the delivery timeout must be > 0 and shorter than the lease")
        if self.poll_s <= 0 or self.batch < 1:
            raise ValueError("poll_s must be > 0 and batch >= 1")


def delivery_policy(settings: LedgerSettings) -> DeliveryPolicy:
    """The worker's policy from the ``LEDGER_WEBHOOK_*`` settings."""
    return DeliveryPolicy(
        schedule_s=tuple(settings.webhook_retry_schedule_s),
        timeout_s=settings.webhook_timeout_s,
        lease_s=settings.webhook_lease_s,
        poll_s=settings.webhook_poll_s,
        breaker_open_s=settings.webhook_breaker_open_s,
    )


def _without_lease(data: JSONObject) -> JSONObject:
    return {name: value for name, value in data.items() if name not in _LEASE_FIELDS}


class DeliveryWorker:
    """Delivers due webhook events from ``store``; several may run at once (processes or
    tasks), each with its own ``name``. ``transport`` replaces the network (tests)."""

    def __init__(
        self,
        store: AsyncStore,
        policy: DeliveryPolicy | None = None,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.policy = policy if policy is not None else DeliveryPolicy()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        timeout = self.policy.timeout_s
        # Sent once: a POST is repeated only when httpx proves nothing was sent (connect
        # errors); every other failure is an attempt of the schedule. The breaker is ours, per
        # endpoint, not the client's per host.
        client_policy = ClientPolicy(
            attempts=2,
            total_s=timeout,
            attempt_timeout_s=timeout,
            connect_timeout_s=min(5.0, timeout),
            read_timeout_s=timeout,
            write_timeout_s=timeout,
            pool_timeout_s=min(5.0, timeout),
            auto_key_methods=frozenset(),
            breaker=None,
            retry_budget_tokens=None,
        )
        options: dict[str, Any] = {"follow_redirects": False}
        if transport is not None:
            options["transport"] = transport
        self.http = async_client(client_policy, **options)
        open_s = self.policy.breaker_open_s
        min_calls = self.policy.breaker_min_calls
        self.breakers = BreakerRegistry(
            lambda endpoint_id: CircuitBreaker(
                f"webhook {endpoint_id}",
                window=CountWindow(max(10, min_calls)),
                min_calls=min_calls,
                failure_rate=0.5,
                open_s=open_s,
            )
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def run_forever(self) -> None:
        """Rounds until cancelled; idle rounds are ``poll_s`` apart (jittered). A failed round
        (store down) is logged and the next one tries again."""
        log.info("webhook worker started", worker=self.name)
        while True:
            try:
                handled = await self.run_once()
            except Exception:
                log.warning("webhook round failed; the next one retries", exc_info=True)
                handled = 0
            if not handled:
                await asyncio.sleep(self.policy.poll_s * random.uniform(0.5, 1.5))  # noqa: S311

    async def run_once(self) -> int:
        """Claim up to ``batch`` due records and handle them concurrently; return how many."""
        now = self.clock()
        page = await self.store.query(DUE_PARTITION, limit=self.policy.batch * 4)
        claimed: list[Record] = []
        for record in page.records:
            if due_time(record.key) > now or len(claimed) == self.policy.batch:
                break
            if record.data.get("lease_until", 0) > now:
                continue  # another worker holds it
            # The lease runs from this claim (the round's earlier claims took time).
            lease_until = self.clock() + self.policy.lease_s
            leased = {**record.data, "owner": self.name, "lease_until": lease_until}
            try:
                claimed.append(
                    await self.store.replace(record.key, leased, expected_version=record.version)
                )
            except VersionConflict:
                continue  # claimed (or finished) by another worker meanwhile
        await asyncio.gather(*(self._handle(record) for record in claimed))
        return len(claimed)

    async def _handle(self, claim: Record) -> None:
        # One EMF document per claim: what the attempt, the lease or the breaker counted.
        with metrics_scope(dimensions={"operation": "webhook_delivery"}):
            await self._handle_claim(claim)

    async def _handle_claim(self, claim: Record) -> None:
        try:
            if claim.data.get("endpoint_id") is None:
                await self._fan_out(claim)
            else:
                await self._deliver(claim)
        except TransactionConflict:
            log.warning(
                "webhook lease lost: another worker took this delivery over",
                worker=self.name,
                event_id=claim.data["event_id"],
            )
            put_metric("WebhookLeaseLost", 1)
        except (StorageError, OSError):
            # The lease expires and another round (this worker's or another's) retries it.
            log.warning("webhook delivery failed on the store", exc_info=True)

    async def _fan_out(self, claim: Record) -> None:
        tenant, event_id = claim.data["tenant"], claim.data["event_id"]
        now = self.clock()
        operations: list[Operation] = [Delete(claim.key, expected_version=claim.version)]
        event = await self.store.get(event_key(tenant, event_id))
        if event is not None:
            page = await self.store.query(endpoints_partition(tenant), limit=MAX_ENDPOINTS)
            targets = [r.data for r in page.records if matches(r.data, event.data["type"])]
            keys = [delivery_key(tenant, event_id, target["id"]) for target in targets]
            existing = await asyncio.gather(*(self.store.get(key) for key in keys))
            for target, key, found in zip(targets, keys, existing, strict=True):
                if found is not None and found.data["status"] in _IN_FLIGHT:
                    continue  # a resend while a delivery is on its way: that one goes on
                fresh: JSONObject = {
                    "endpoint_id": target["id"],
                    "status": str(DeliveryStatus.PENDING),
                    "attempts": 0,
                    "last_attempt_at": None,
                    "next_attempt_at": now,
                    "last_status_code": None,
                    "last_error": None,
                }
                operations.append(
                    Create(key, fresh) if found is None else Replace(key, fresh, found.version)
                )
                operations.append(
                    Create(
                        due_key(now, tenant, event_id, target["id"]),
                        {"tenant": tenant, "event_id": event_id, "endpoint_id": target["id"]},
                    )
                )
        await self.store.transact(operations)

    async def _deliver(self, claim: Record) -> None:
        tenant, event_id = claim.data["tenant"], claim.data["event_id"]
        endpoint_id: str = claim.data["endpoint_id"]
        endpoint, event, delivery = await asyncio.gather(
            self.store.get(endpoint_key(tenant, endpoint_id)),
            self.store.get(event_key(tenant, event_id)),
            self.store.get(delivery_key(tenant, event_id, endpoint_id)),
        )
        done = Delete(claim.key, expected_version=claim.version)
        if event is None or delivery is None:
            await self.store.transact([done])  # nothing left to deliver
            return
        if endpoint is None or endpoint.data["status"] != EndpointStatus.ENABLED:
            canceled = {**delivery.data, "status": str(DeliveryStatus.CANCELED)}
            canceled["next_attempt_at"] = None
            await self.store.transact([done, Replace(delivery.key, canceled, delivery.version)])
            return
        breaker = self.breakers.get(endpoint_id)
        try:
            ticket = breaker.admit()
        except CircuitOpen as exc:
            await self._defer(claim, delivery, max(exc.retry_after_s, 1.0))
            return
        if self.clock() + self.policy.timeout_s >= claim.data["lease_until"]:
            breaker.release(ticket)  # the lease would end mid-attempt: leave it to a later round
            return
        body = event_from_record(event).model_dump_json().encode()
        url: str = endpoint.data["url"]
        status_code, error, elapsed_s = await self._post(url, endpoint.data["secret"], body)
        delivered = status_code is not None and 200 <= status_code < 300
        if delivered:
            breaker.record_success(ticket, elapsed_s)
        else:
            breaker.record_failure(ticket, elapsed_s)
        await self._record_attempt(claim, delivery, status_code, error, delivered=delivered)
        put_metric("WebhookAttempts", 1)
        put_metric("WebhookDelivered" if delivered else "WebhookFailed", 1)
        put_metric("WebhookLatency", elapsed_s * 1000, MetricUnit.MILLISECONDS)
        log.info(
            "webhook delivery attempt",
            worker=self.name,
            tenant=tenant,
            event_id=event_id,
            endpoint_id=endpoint_id,
            attempt=delivery.data["attempts"] + 1,
            status_code=status_code,
            error=error,
            delivered=delivered,
            elapsed_ms=round(elapsed_s * 1000, 1),
        )

    async def _post(self, url: str, secret: str, body: bytes) -> _Outcome:
        """POST ``body`` signed; (status code or None, error or None, seconds taken)."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ledger-webhooks/1",
            SIGNATURE_HEADER: signature_header(secret, body),
        }
        began = time.perf_counter()
        try:
            response = await self.http.post(url, content=body, headers=headers)
        except (httpx.HTTPError, DeadlineExceeded) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300], time.perf_counter() - began
        elapsed_s = time.perf_counter() - began
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return response.status_code, error, elapsed_s

    async def _record_attempt(
        self,
        claim: Record,
        delivery: Record,
        status_code: int | None,
        error: str | None,
        *,
        delivered: bool,
    ) -> None:
        """The attempt's outcome, conditional on the claim (the lease) still being ours."""
        now = self.clock()
        attempts = delivery.data["attempts"] + 1
        schedule = self.policy.schedule_s
        state: JSONObject = {
            **delivery.data,
            "attempts": attempts,
            "last_attempt_at": now,
            "last_status_code": status_code,
            "last_error": error,
            "next_attempt_at": None,
        }
        operations: list[Operation] = [Delete(claim.key, expected_version=claim.version)]
        if delivered:
            state["status"] = str(DeliveryStatus.DELIVERED)
        elif attempts > len(schedule):
            state["status"] = str(DeliveryStatus.DEAD)
            put_metric("WebhookDeadLettered", 1)
            log.warning(
                "webhook delivery dead-lettered",
                event_id=claim.data["event_id"],
                endpoint_id=delivery.data["endpoint_id"],
                attempts=attempts,
            )
        else:
            retry_at = now + schedule[attempts - 1]
            state["status"] = str(DeliveryStatus.RETRYING)
            state["next_attempt_at"] = retry_at
            operations.append(self._due_again(claim, retry_at))
        operations.append(Replace(delivery.key, state, delivery.version))
        await self.store.transact(operations)

    def _due_again(self, claim: Record, at: float) -> Create:
        data = _without_lease(claim.data)
        return Create(due_key(at, data["tenant"], data["event_id"], data["endpoint_id"]), data)

    async def _defer(self, claim: Record, delivery: Record, wait_s: float) -> None:
        """Move a delivery to when its endpoint's breaker probes again (no attempt spent)."""
        at = max(self.clock() + wait_s, due_time(claim.key) + 0.001)
        state = {**delivery.data, "next_attempt_at": at}
        await self.store.transact(
            [
                Delete(claim.key, expected_version=claim.version),
                self._due_again(claim, at),
                Replace(delivery.key, state, delivery.version),
            ]
        )
        put_metric("WebhookDeferred", 1)


_IN_FLIGHT: Final = frozenset({DeliveryStatus.PENDING, DeliveryStatus.RETRYING})
