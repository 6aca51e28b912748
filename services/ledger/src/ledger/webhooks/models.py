"""The webhook API's models: endpoints, events and their deliveries (every field described,
with an example: they are the OpenAPI schemas)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from ledger.domain.models import Transfer
from ledger.webhooks.outbox import EventType

ALL_EVENTS: Final = "*"
MAX_URL_CHARS: Final = 2048
_ENDPOINT_ID: Final = "we_3f1c9a7be0d24c6e8a5b19d07f42c6aa"
_EVENT_ID: Final = "evt_01764770401123456_9d6db4a1c3e2f087"
_URL: Final = "https://example.com/ledger/webhooks"

EventTypes = Annotated[
    list[EventType | Annotated[str, Field(pattern=r"^\*$")]],
    Field(
        min_length=1,
        max_length=len(EventType) + 1,
        description='The event types sent to this endpoint, or `["*"]` for all of them.',
        examples=[["transfer.created", "transfer.posted"]],
    ),
]
Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="Where events are POSTed: https (http only to 127.0.0.1/localhost in "
        "development).",
        examples=[_URL],
    ),
]
Description = Annotated[
    str | None,
    Field(max_length=500, description="Your note about this endpoint.", examples=["ERP sync"]),
]


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class NewWebhookEndpoint(BaseModel):
    """An endpoint to register."""

    model_config = ConfigDict(extra="forbid")

    url: Url
    enabled_events: EventTypes
    description: Description = None


class WebhookEndpointUpdate(BaseModel):
    """The fields to change (those omitted stay as they are)."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=MAX_URL_CHARS)] | None = Field(
        default=None, description="A new URL (https).", examples=[_URL]
    )
    enabled_events: (
        Annotated[
            list[EventType | Annotated[str, Field(pattern=r"^\*$")]],
            Field(min_length=1, max_length=len(EventType) + 1),
        ]
        | None
    ) = Field(
        default=None,
        description='New event types, or `["*"]` for all.',
        examples=[["*"]],
    )
    description: Description = None
    status: EndpointStatus | None = Field(
        default=None,
        description="`disabled` stops deliveries to it (due ones are dropped); `enabled` resumes.",
        examples=["disabled"],
    )


class WebhookEndpoint(BaseModel):
    """A registered endpoint (its signing secret is shown only when it is created)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="The endpoint's id.", examples=[_ENDPOINT_ID])
    url: Url
    enabled_events: EventTypes
    description: Description
    status: EndpointStatus = Field(description="enabled or disabled.", examples=["enabled"])
    created_at: datetime = Field(
        description="When it was registered (UTC).", examples=["2025-12-03T14:00:01Z"]
    )


class WebhookEndpointWithSecret(WebhookEndpoint):
    """A new endpoint, with its signing secret: store it now, it is never shown again."""

    secret: str = Field(
        description="Verify each delivery's `Ledger-Signature` with it (docs/ledger.md).",
        examples=["whsec_5f0c6d0e8f1a4b2c9d3e7f6a1b2c3d4e5f6a7b8c9d0e1f2a"],
    )


class EventData(BaseModel):
    """What the event is about."""

    model_config = ConfigDict(frozen=True)

    object: Transfer = Field(description="The transfer as it was right after the change.")


class Event(BaseModel):
    """Something that happened to a transfer; the body of a webhook delivery."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(
        description="Stable: every delivery of this event carries it (deduplicate on it).",
        examples=[_EVENT_ID],
    )
    type: EventType = Field(description="What happened.", examples=["transfer.created"])
    created_at: datetime = Field(
        description="When the change committed (UTC); the list is ordered by it.",
        examples=["2025-12-03T14:00:01.123456Z"],
    )
    data: EventData = Field(description="The transfer after the change.")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    DEAD = "dead"
    CANCELED = "canceled"


class Delivery(BaseModel):
    """One endpoint's delivery of an event."""

    model_config = ConfigDict(frozen=True)

    endpoint_id: str = Field(description="The endpoint.", examples=[_ENDPOINT_ID])
    status: DeliveryStatus = Field(
        description="pending, retrying (an attempt failed; another is scheduled), delivered "
        "(a 2xx answer), dead (the retry schedule ran out) or canceled (the endpoint was "
        "disabled or deleted).",
        examples=["delivered"],
    )
    attempts: int = Field(description="Attempts made so far.", examples=[1])
    last_attempt_at: datetime | None = Field(
        description="When the last attempt was made.", examples=["2025-12-03T14:00:02Z"]
    )
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due (pending or retrying).", examples=[None]
    )
    last_status_code: int | None = Field(
        description="The HTTP status of the last attempt (null: no answer).", examples=[200]
    )
    last_error: str | None = Field(
        description="Why the last attempt failed, if it did.", examples=[None]
    )


class EventWithDeliveries(Event):
    """An event and its delivery to each endpoint it was sent to."""

    deliveries: list[Delivery] = Field(description="One per endpoint the event was sent to.")
