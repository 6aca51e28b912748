"""The transactional outbox: the records a transfer's change adds to its own ``transact``.

Every state change of a transfer writes two more records in the same transaction as the
change itself (so there is no event without its change, and no change without its event)::

    t/{tenant}/events    {event_id}                         the event (listable by time)
    webhooks/due         {due_ms:015d}/{tenant}/{event_id}  "deliver me": the worker's queue

An event id starts with its creation time in microseconds (``evt_<17 digits>_<16 hex>``), so
the tenant's event partition is in time order and the id alone addresses the record. The due
record is what the delivery worker reads: its partition holds only work not yet done (the
worker deletes each record when the event is fanned out to the tenant's endpoints, and each
endpoint's own due record when that delivery succeeded or was dead-lettered), so finding work
never scans the events ever written. One record cannot serve both: the tenant's list must keep
every event, while the queue must shrink as work is done.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Final

from stalwart.storage import Create, JSONObject, Key, Operation

DUE_PARTITION: Final = "webhooks/due"
OUTBOX_OPERATIONS: Final = 2
"""Store operations the outbox adds to a transact per event: the event and its due record."""


class EventType(StrEnum):
    """What happened to a transfer (its ``data.object`` is the transfer afterwards)."""

    CREATED = "transfer.created"
    POSTED = "transfer.posted"
    VOIDED = "transfer.voided"
    EXPIRED = "transfer.expired"
    REVERSED = "transfer.reversed"


def events_partition(tenant: str) -> str:
    return f"t/{tenant}/events"


def event_key(tenant: str, event_id: str) -> Key:
    return Key(events_partition(tenant), event_id)


def make_event_id(created_at: float, transfer_id: str, event_type: EventType) -> str:
    """Time-ordered and stable: a plan re-run after contention derives the same id.

    >>> make_event_id(1.5, "t1", EventType.CREATED)[:27]
    'evt_00000000001500000_9d6db'
    """
    digest = hashlib.sha256(f"{transfer_id}\n{event_type}".encode()).hexdigest()[:16]
    return f"evt_{round(created_at * 1_000_000):017d}_{digest}"


def due_key(due_at: float, tenant: str, event_id: str, suffix: str = "") -> Key:
    """A due record's key: ordered by due time; ``suffix`` tells an event's several due records
    apart (an endpoint's delivery, a resend)."""
    tail = f"/{suffix}" if suffix else ""
    return Key(DUE_PARTITION, f"{round(due_at * 1000):015d}/{tenant}/{event_id}{tail}")


def due_time(key: Key) -> float:
    """When the due record at ``key`` is due (epoch seconds)."""
    return int(key.sort.partition("/")[0]) / 1000


def outbox_operations(
    tenant: str, event_type: EventType, transfer: JSONObject, now: float
) -> list[Operation]:
    """The event of ``transfer``'s change (its stored data after the change) and its due
    record: append them to the change's own transact."""
    event_id = make_event_id(now, transfer["id"], event_type)
    event: JSONObject = {
        "id": event_id,
        "type": str(event_type),
        "tenant": tenant,
        "created_at": now,
        "transfer": {name: value for name, value in transfer.items() if name != "fingerprint"},
    }
    return [
        Create(event_key(tenant, event_id), event),
        Create(due_key(now, tenant, event_id), {"tenant": tenant, "event_id": event_id}),
    ]
