"""``/v1/webhook-endpoints`` (register, list, read, update, delete) and ``/v1/events`` (list,
read with deliveries, resend). Tenant-scoped like accounts: another tenant's ids are 404.

No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.
"""

import time
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from ledger.api.deps import (
    IDEMPOTENCY_KEY_INVALID,
    IDEMPOTENCY_KEY_MISSING,
    Cursor,
    IdempotencyKey,
    LedgerDep,
    Limit,
    MeteredRoute,
    Tenant,
)
from ledger.api.problems import ledger_responses
from ledger.api.transfers import REPLAYED_HEADER
from ledger.domain.errors import (
    Contention,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidRequest,
    InvalidWebhookUrl,
    NotFound,
)
from ledger.domain.models import Page
from ledger.service import paged
from ledger.settings import Environment, LedgerSettings
from ledger.webhooks import records
from ledger.webhooks.models import (
    Event,
    EventWithDeliveries,
    NewWebhookEndpoint,
    WebhookEndpoint,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from ledger.webhooks.outbox import EventType

endpoints_router = APIRouter(
    prefix="/v1/webhook-endpoints", tags=["webhooks"], route_class=MeteredRoute
)
events_router = APIRouter(prefix="/v1/events", tags=["webhooks"], route_class=MeteredRoute)


async def _development(request: Request) -> bool:
    """Whether http:// endpoint URLs to loopback hosts are allowed (development only)."""
    settings: LedgerSettings = request.app.state.settings
    return settings.env is Environment.DEVELOPMENT


Development = Annotated[bool, Depends(_development)]


@endpoints_router.post(
    "",
    status_code=201,
    summary="Register a webhook endpoint (its signing secret is shown only now)",
    responses=ledger_responses(InvalidWebhookUrl, InvalidRequest),
)
async def create_webhook_endpoint(
    *,
    new: NewWebhookEndpoint,
    response: Response,
    tenant: Tenant,
    ledger: LedgerDep,
    development: Development,
) -> WebhookEndpointWithSecret:
    now = time.time()
    plan = partial(records.create_endpoint_plan, tenant, new, now, development=development)
    created = await ledger.run_plan(plan)
    response.headers["Location"] = f"/v1/webhook-endpoints/{created.id}"
    return created


@endpoints_router.get(
    "", summary="List webhook endpoints", responses=ledger_responses(InvalidCursor)
)
async def list_webhook_endpoints(
    *, tenant: Tenant, ledger: LedgerDep, limit: Limit = 10, cursor: Cursor = None
) -> Page[WebhookEndpoint]:
    return await ledger.run_plan(
        lambda: paged(WebhookEndpoint, records.list_endpoints_plan(tenant, limit, cursor))
    )


@endpoints_router.get(
    "/{endpoint_id}", summary="Get a webhook endpoint", responses=ledger_responses(NotFound)
)
async def get_webhook_endpoint(
    endpoint_id: str, tenant: Tenant, ledger: LedgerDep
) -> WebhookEndpoint:
    return await ledger.run_plan(lambda: records.get_endpoint_plan(tenant, endpoint_id))


@endpoints_router.patch(
    "/{endpoint_id}",
    summary="Update a webhook endpoint (enable/disable, URL, event types, description)",
    responses=ledger_responses(NotFound, InvalidWebhookUrl, InvalidRequest, Contention),
)
async def update_webhook_endpoint(
    *,
    endpoint_id: str,
    update: WebhookEndpointUpdate,
    tenant: Tenant,
    ledger: LedgerDep,
    development: Development,
) -> WebhookEndpoint:
    plan = partial(
        records.update_endpoint_plan, tenant, endpoint_id, update, development=development
    )
    return await ledger.run_plan(plan)


@endpoints_router.delete(
    "/{endpoint_id}",
    status_code=204,
    summary="Delete a webhook endpoint (its pending deliveries are canceled)",
    responses=ledger_responses(NotFound, Contention),
)
async def delete_webhook_endpoint(endpoint_id: str, tenant: Tenant, ledger: LedgerDep) -> None:
    await ledger.run_plan(lambda: records.delete_endpoint_plan(tenant, endpoint_id))


@events_router.get(
    "",
    summary="List events (oldest first)",
    responses=ledger_responses(InvalidCursor),
)
async def list_events(
    *,
    tenant: Tenant,
    ledger: LedgerDep,
    limit: Limit = 10,
    cursor: Cursor = None,
    type: Annotated[  # noqa: A002 - the API's parameter name (Stripe's)
        EventType | None, Query(description="Only events of this type.")
    ] = None,
) -> Page[Event]:
    return await ledger.run_plan(
        lambda: paged(Event, records.list_events_plan(tenant, limit, cursor, type))
    )


@events_router.get(
    "/{event_id}",
    summary="Get an event and its delivery to each endpoint",
    responses=ledger_responses(NotFound),
)
async def get_event(event_id: str, tenant: Tenant, ledger: LedgerDep) -> EventWithDeliveries:
    return await ledger.run_plan(lambda: records.get_event_plan(tenant, event_id))


@events_router.post(
    "/{event_id}/resend",
    status_code=202,
    summary="Send an event again to every endpoint it matches (Idempotency-Key required)",
    responses={
        202: {
            "description": "Queued, or replayed",
            "headers": {
                REPLAYED_HEADER: {
                    "description": "`true` when this answer replays an earlier request with "
                    "the same Idempotency-Key (nothing was queued again)",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
        **ledger_responses(
            NotFound,
            IdempotencyKeyReused,
            more=(IDEMPOTENCY_KEY_MISSING, IDEMPOTENCY_KEY_INVALID),
        ),
    },
)
async def resend_event(
    *,
    event_id: str,
    response: Response,
    tenant: Tenant,
    ledger: LedgerDep,
    idempotency_key: IdempotencyKey,
) -> EventWithDeliveries:
    plan = partial(records.resend_event_plan, tenant, event_id, idempotency_key, time.time())
    event, replayed = await ledger.run_plan(plan)
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return event


__all__ = ["endpoints_router", "events_router"]
