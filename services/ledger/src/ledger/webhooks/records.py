"""Webhook endpoints, events and resends as plans on the ledger's store (run by
:func:`ledger.store.run_async` / :func:`~ledger.store.run_sync` like every ledger plan).

Records, beside the outbox's (:mod:`ledger.webhooks.outbox`)::

    t/{tenant}/webhook-endpoints        {endpoint_id}     url, event types, status, secret
    t/{tenant}/deliveries/{event_id}    {endpoint_id}     that endpoint's delivery state
    t/{tenant}/event-resends            {resend_id}       a resend, once per Idempotency-Key
"""

from __future__ import annotations

import secrets
import uuid
from typing import Final
from urllib.parse import urlsplit

from ledger.domain.errors import IdempotencyKeyReused, InvalidRequest, InvalidWebhookUrl, NotFound
from ledger.domain.models import Transfer
from ledger.domain.transfers import transfer_id
from ledger.settings import LOCAL_HOSTS
from ledger.store import Get, Plan, Query, Transact, _commit, _plain, known_id, scan_plan
from ledger.webhooks.models import (
    ALL_EVENTS,
    Delivery,
    EndpointStatus,
    Event,
    EventData,
    EventWithDeliveries,
    NewWebhookEndpoint,
    WebhookEndpoint,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from ledger.webhooks.outbox import due_key, event_key, events_partition
from stalwart.storage import (
    Create,
    Delete,
    JSONObject,
    Key,
    Page,
    Record,
    Replace,
    TransactionConflict,
)

MAX_ENDPOINTS: Final = 16
"""Endpoints per tenant: an event fans out to all of them in one transact (two operations
each, under every engine's 100)."""


def endpoints_partition(tenant: str) -> str:
    return f"t/{tenant}/webhook-endpoints"


def endpoint_key(tenant: str, endpoint_id: str) -> Key:
    return Key(endpoints_partition(tenant), endpoint_id)


def deliveries_partition(tenant: str, event_id: str) -> str:
    return f"t/{tenant}/deliveries/{event_id}"


def delivery_key(tenant: str, event_id: str, endpoint_id: str) -> Key:
    return Key(deliveries_partition(tenant, event_id), endpoint_id)


def resend_key(tenant: str, resend_id: str) -> Key:
    return Key(f"t/{tenant}/event-resends", resend_id)


def check_url(url: str, *, development: bool) -> str:
    """A URL events can be POSTed to: https, or http to a loopback host in development.

    >>> check_url("http://127.0.0.1:9000/hook", development=True)
    'http://127.0.0.1:9000/hook'
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookUrl(f"a webhook URL must be an http(s) URL with a host, got {url!r}")
    if parts.scheme == "http" and not (development and parts.hostname in LOCAL_HOSTS):
        raise InvalidWebhookUrl(
            "a webhook URL must be https (http is allowed only to 127.0.0.1/localhost in "
            "development)"
        )
    return url


def matches(endpoint: JSONObject, event_type: str) -> bool:
    """Whether ``endpoint`` (its record data) is enabled and takes events of ``event_type``."""
    wanted = endpoint["enabled_events"]
    enabled = endpoint["status"] == EndpointStatus.ENABLED
    return enabled and (ALL_EVENTS in wanted or event_type in wanted)


def _checked_id(object_id: str, prefix: str, what: str) -> str:
    """An id of ours (``prefix``, then what :func:`~ledger.store.known_id` accepts); anything
    else is NotFound."""
    if not (isinstance(object_id, str) and object_id.startswith(prefix)):
        raise NotFound(f"{what} {object_id!r} not found")
    return known_id(object_id, what)


# ---------------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------------


def endpoint_from_record(record: Record) -> WebhookEndpoint:
    return WebhookEndpoint.model_validate(record.data)


def create_endpoint_plan(
    tenant: str, new: NewWebhookEndpoint, now: float, *, development: bool
) -> Plan[WebhookEndpointWithSecret]:
    check_url(new.url, development=development)
    page: Page = yield Query(endpoints_partition(tenant), MAX_ENDPOINTS)
    if len(page.records) >= MAX_ENDPOINTS:
        raise InvalidRequest(f"a tenant has at most {MAX_ENDPOINTS} webhook endpoints")
    endpoint_id = f"we_{uuid.uuid4().hex}"
    data: JSONObject = {
        "id": endpoint_id,
        **new.model_dump(mode="json"),
        "status": str(EndpointStatus.ENABLED),
        "created_at": now,
        "secret": f"whsec_{secrets.token_hex(24)}",
    }
    created: list[Record | None] = yield Transact([Create(endpoint_key(tenant, endpoint_id), data)])
    record = created[0]
    assert record is not None
    return WebhookEndpointWithSecret.model_validate(record.data)


def _endpoint_record(tenant: str, endpoint_id: str) -> Plan[Record]:
    key = endpoint_key(tenant, _checked_id(endpoint_id, "we_", "webhook endpoint"))
    record: Record | None = yield Get(key)
    if record is None:
        raise NotFound(f"webhook endpoint {endpoint_id!r} not found")
    return record


def get_endpoint_plan(tenant: str, endpoint_id: str) -> Plan[WebhookEndpoint]:
    return endpoint_from_record((yield from _endpoint_record(tenant, endpoint_id)))


def list_endpoints_plan(
    tenant: str, limit: int, cursor: str | None
) -> Plan[tuple[list[WebhookEndpoint], str | None]]:
    def convert(record: Record) -> Plan[WebhookEndpoint | None]:
        return _plain(endpoint_from_record(record))

    return (yield from scan_plan(endpoints_partition(tenant), limit, cursor, convert))


def update_endpoint_plan(
    tenant: str, endpoint_id: str, update: WebhookEndpointUpdate, *, development: bool
) -> Plan[WebhookEndpoint]:
    record = yield from _endpoint_record(tenant, endpoint_id)
    changes = update.model_dump(mode="json", exclude_unset=True)
    for required in ("url", "enabled_events", "status"):
        if changes.get(required, "") is None:
            raise InvalidRequest(f"{required} cannot be null")
    if "url" in changes:
        check_url(changes["url"], development=development)
    written = yield from _commit(
        [Replace(record.key, {**record.data, **changes}, record.version)], "endpoint update"
    )
    replaced = written[0]
    assert replaced is not None
    return endpoint_from_record(replaced)


def delete_endpoint_plan(tenant: str, endpoint_id: str) -> Plan[None]:
    """Delete an endpoint; its due deliveries are canceled when the worker meets them."""
    record = yield from _endpoint_record(tenant, endpoint_id)
    yield from _commit([Delete(record.key, expected_version=record.version)], "endpoint delete")


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


def event_from_record(record: Record) -> Event:
    data = record.data
    return Event(
        id=data["id"],
        type=data["type"],
        created_at=data["created_at"],
        data=EventData(object=Transfer.model_validate(data["transfer"])),
    )


def list_events_plan(
    tenant: str, limit: int, cursor: str | None, event_type: str | None
) -> Plan[tuple[list[Event], str | None]]:
    """The tenant's events, oldest first (their ids sort by creation time)."""

    def convert(record: Record) -> Plan[Event | None]:
        keep = event_type is None or record.data["type"] == event_type
        return _plain(event_from_record(record) if keep else None)

    return (yield from scan_plan(events_partition(tenant), limit, cursor, convert))


def get_event_plan(tenant: str, event_id: str) -> Plan[EventWithDeliveries]:
    record: Record | None = yield Get(event_key(tenant, _checked_id(event_id, "evt_", "event")))
    if record is None:
        raise NotFound(f"event {event_id!r} not found")
    deliveries: list[Delivery] = []
    cursor: str | None = None
    while True:
        page: Page = yield Query(deliveries_partition(tenant, event_id), 100, cursor)
        deliveries += [Delivery.model_validate(r.data) for r in page.records]
        cursor = page.cursor
        if cursor is None:
            break
    event = event_from_record(record)
    return EventWithDeliveries(**event.model_dump(), deliveries=deliveries)


def resend_event_plan(
    tenant: str, event_id: str, idempotency_key: str, now: float
) -> Plan[tuple[EventWithDeliveries, bool]]:
    """Queue the event again for every endpoint it matches now (one whose delivery is still
    pending or retrying keeps that one); once per idempotency key."""
    event = yield from get_event_plan(tenant, event_id)
    resend_id = transfer_id(tenant, idempotency_key, "resend")
    key = resend_key(tenant, resend_id)
    due = due_key(now, tenant, event.id, f"resend-{resend_id}")
    try:
        yield Transact(
            [
                Create(key, {"event_id": event.id}),
                Create(due, {"tenant": tenant, "event_id": event.id}),
            ]
        )
    except TransactionConflict:
        earlier: Record | None = yield Get(key)
        if earlier is None:
            raise
        if earlier.data["event_id"] != event.id:
            raise IdempotencyKeyReused(
                "this idempotency key was used with another request; nothing was written"
            ) from None
        return event, True
    return event, False
