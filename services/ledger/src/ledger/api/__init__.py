"""The HTTP API under ``/v1``: every route needs an API key (``Authorization: Bearer``)."""

from fastapi import Depends, FastAPI

from ledger.api import accounts, assistant, transfers, webhooks
from ledger.api.deps import AUTH_RESPONSES, current_tenant
from stalwart.web import problem_responses

V1_DEPENDENCIES = (Depends(current_tenant),)
"""What every ``/v1`` route depends on: the caller's tenant (each route's ``MeteredRoute``
class emits its EMF document)."""


def include_api(app: FastAPI) -> None:
    """Add the ``/v1`` routes to ``app``.

    Each router carries its full path prefix and is included without one: FastAPI (0.165)
    keeps an included router's routes as they were declared, so a prefix given here would be
    missing from the route template the web kit logs (``/transfers`` for ``/v1/transfers``).
    """
    routers = (
        accounts.router,
        transfers.router,
        webhooks.endpoints_router,
        webhooks.events_router,
        assistant.router,
    )
    for router in routers:
        app.include_router(
            router,
            dependencies=list(V1_DEPENDENCIES),
            responses=problem_responses(*AUTH_RESPONSES),
        )


__all__ = ["V1_DEPENDENCIES", "include_api"]
