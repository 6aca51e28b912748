"""The routes' dependencies (the caller's tenant, the ledger, the Idempotency-Key) and their
route class (metrics).

No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.

Every dependency here is ``async def`` although none of them awaits anything but the store:
FastAPI runs a plain ``def`` dependency on a worker thread (a thread hop per dependency per
request, measured at about a quarter of a transfer's server time), an ``async def`` one inline.
"""

import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import Depends, Header, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.auth import UNAUTHORIZED_EXAMPLE, authenticate
from ledger.domain.models import MAX_PAGE_LIMIT
from ledger.service import Ledger
from stalwart.idempotency import parse_idempotency_key
from stalwart.observability import MetricUnit, bind, metrics_scope, put_metric
from stalwart.web import HttpProblem

bearer = HTTPBearer(
    auto_error=False,  # a missing key gets the ledger's 401 problem, not FastAPI's 403
    scheme_name="ApiKey",
    bearerFormat="ldg_<key id>_<secret>",
    description="An API key (`ledger keys create --tenant NAME`; in development `ledger "
    "serve` prints one on its first start). Each key acts for one tenant.",
)

IDEMPOTENCY_KEY_MISSING: Final = HttpProblem(
    400,
    "idempotency-key-missing",
    "this request needs an Idempotency-Key header (a UUID4 you generate per logical request)",
)
IDEMPOTENCY_KEY_INVALID: Final = HttpProblem(
    400, "idempotency-key-invalid", "the Idempotency-Key is empty"
)


async def ledger_of(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


async def current_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The tenant of the request's API key (401 without a valid one)."""
    state = request.app.state
    presented = credentials.credentials if credentials else None
    tenant = await authenticate(state.store, presented, state.key_cache)
    request.state.tenant = tenant  # the request log line's principal
    bind(tenant=tenant)  # every log line of this request names it
    return tenant


def tenant_of_request(request: Request) -> str | None:
    """The web kit's ``principal``: the authenticated tenant, if any."""
    tenant: str | None = getattr(request.state, "tenant", None)
    return tenant


async def idempotency_key(
    value: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Required (400 without it): a unique key per logical request, e.g. a "
            "UUID4; a retry with the same key and body returns the first answer, with "
            "`Idempotent-Replayed: true`. Scoped to your tenant.",
            examples=["8e03978e-40d5-43e8-bc93-6894a57f9324"],
        ),
    ] = None,
) -> str:
    """The request's parsed ``Idempotency-Key`` (400 when missing or malformed)."""
    if value is None:
        raise IDEMPOTENCY_KEY_MISSING
    return parse_idempotency_key(value)  # InvalidIdempotencyKey: 400 by the kit's table


class MeteredRoute(APIRoute):
    """A ``/v1`` route: one EMF document per request, with its latency and what the handler
    counted (dimension ``operation``: the route's name).

    A route class rather than a ``yield`` dependency: FastAPI solves one of those per request
    with an exit stack, a cancel scope and a shielded exit, which cost 5-6% of a transfer's
    server CPU (see the commit message); wrapping the route's handler costs one ``with``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        dimensions = {"operation": self.name}

        async def metered(request: Request) -> Response:
            began = time.perf_counter()
            with metrics_scope(dimensions=dimensions):
                response = await handle(request)
                put_metric("Latency", (time.perf_counter() - began) * 1000, MetricUnit.MILLISECONDS)
            return response

        return metered


Tenant = Annotated[str, Depends(current_tenant)]
Limit = Annotated[
    int, Query(ge=1, le=MAX_PAGE_LIMIT, description="Page size, 1-100.", examples=[10])
]
Cursor = Annotated[
    str | None,
    Query(description="`next_cursor` of the previous page; omitted: the first page."),
]
LedgerDep = Annotated[Ledger, Depends(ledger_of)]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]
AUTH_RESPONSES: Final = (UNAUTHORIZED_EXAMPLE,)
