# Copyright 2026 stalwart contributors
"""FastAPI shells of health checks and conditional requests (re-exported by
``stalwart.web.fastapi``).

No ``from __future__ import annotations`` here: FastAPI reads the dependencies' annotations at
runtime, and the ``Depends(key)`` of :func:`if_match` names a closure variable.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Annotated, Any, Final

from stalwart._extras import require_extra

require_extra("fastapi", "fastapi", feature="stalwart.web.fastapi")

from fastapi import APIRouter, Depends, Header, Request, Response  # noqa: E402

from stalwart.storage import Key, Record  # noqa: E402
from stalwart.web._conditional import (  # noqa: E402
    IfNoneMatch,
    Precondition,
    evaluate_if_match,
    field_value,
    invalid_precondition,
    precondition_failed,
    precondition_required,
    read_if_none_match,
    record_etag,
)
from stalwart.web._health import HEALTH_JSON, LIVE_BODY, Health  # noqa: E402
from stalwart.web._openapi import problem_responses  # noqa: E402

NO_STORE: Final = {"Cache-Control": "no-store"}

_READY_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "down"]},
        "checks": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["state", "required", "duration_ms"],
                "properties": {
                    "state": {"type": "string", "enum": ["up", "down"]},
                    "required": {"type": "boolean"},
                    "duration_ms": {"type": "number"},
                    "error": {"type": "string", "description": "the error's type name"},
                },
            },
        },
    },
}


def _ready_example(status: str, state: str, error: str | None = None) -> dict[str, Any]:
    check: dict[str, Any] = {"state": state, "required": True, "duration_ms": 1.3}
    if error is not None:
        check["error"] = error
    return {"status": status, "checks": {"store": check}}


def health_router(
    health: Health,
    *,
    livez: str = "/livez",
    readyz: str = "/readyz",
    tags: list[str] | None = None,
    include_in_schema: bool = True,
) -> APIRouter:
    """An ``APIRouter`` with ``GET /livez`` and ``GET /readyz`` (``app.include_router(...)``).

    >>> from fastapi import FastAPI
    >>> app = FastAPI()
    >>> app.include_router(health_router(Health()))
    """
    router = APIRouter(tags=list(tags or ["health"]), include_in_schema=include_in_schema)

    @router.get(
        livez,
        summary="Liveness: the process serves requests",
        response_class=Response,
        responses={
            200: {
                "description": "Alive (no dependency is checked)",
                "content": {HEALTH_JSON: {"example": {"status": "ok"}}},
            }
        },
    )
    async def live() -> Response:
        return Response(LIVE_BODY, media_type=HEALTH_JSON, headers=NO_STORE)

    @router.get(
        readyz,
        summary="Readiness: every required dependency answers",
        response_class=Response,
        responses={
            200: {
                "description": "Ready (`degraded`: only optional checks are down)",
                "content": {
                    HEALTH_JSON: {"schema": _READY_SCHEMA, "example": _ready_example("ok", "up")}
                },
            },
            503: {
                "description": "Not ready: a required check is down",
                "content": {
                    HEALTH_JSON: {
                        "schema": _READY_SCHEMA,
                        "example": _ready_example("down", "down", "StoreUnavailable"),
                    }
                },
            },
        },
    )
    async def ready() -> Response:
        readiness = await health.check_async()
        return Response(
            readiness.body(),
            status_code=readiness.http_status,
            media_type=HEALTH_JSON,
            headers=NO_STORE,
        )

    # HEAD as well, as Flask answers it for every GET (some load balancers probe with HEAD);
    # left out of the schema, whose operation ids would clash.
    router.add_api_route(livez, live, methods=["HEAD"], include_in_schema=False)
    router.add_api_route(readyz, ready, methods=["HEAD"], include_in_schema=False)
    return router


_ETAG_HEADER: Final = {
    "ETag": {"description": "The resource's strong entity-tag", "schema": {"type": "string"}}
}


def read_responses(success: int = 200) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a GET that honours ``If-None-Match`` (304, 400; ETag on 2xx).

    >>> sorted(map(str, read_responses()))
    ['200', '304', '400']
    """
    return {
        str(success): {"headers": _ETAG_HEADER},  # merged into the route's own (deep update)
        304: {
            "description": f"{HTTPStatus.NOT_MODIFIED.phrase}: If-None-Match matched (no body)",
            "headers": _ETAG_HEADER,
        },
        **problem_responses(invalid_precondition("If-None-Match")),
    }


def write_responses(success: int = 200, *, etag: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a write that requires ``If-Match`` (400, 412, 428), and the
    new ``ETag`` on its ``success`` response unless ``etag=False`` (a DELETE).

    >>> sorted(map(str, write_responses()))
    ['200', '400', '412', '428']
    """
    declared: dict[int | str, dict[str, Any]] = (
        {str(success): {"headers": _ETAG_HEADER}} if etag else {}
    )
    return {
        **declared,
        **problem_responses(
            invalid_precondition("If-Match"),
            precondition_failed(),
            precondition_failed("weak ETags never match If-Match"),
            precondition_required(),
        ),
    }


def if_none_match(
    request: Request,
    # Declares the header in OpenAPI; the value is read below from every field line (FastAPI
    # would keep only one of a repeated header).
    _declared: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            description="ETags the client holds: 304 without a body when one is current "
            "(weak comparison; `*` matches any existing resource).",
        ),
    ] = None,
) -> IfNoneMatch:
    """Dependency: the request's parsed ``If-None-Match`` (400 if malformed).

    Use with :func:`not_modified` and :func:`set_etag`; declare :func:`read_responses`.
    """
    return read_if_none_match(field_value(request.headers.getlist("if-none-match")))


type KeyDependency = Callable[..., Key] | Callable[..., Awaitable[Key]]


def if_match(key: KeyDependency) -> Callable[..., AsyncIterator[Precondition]]:
    """Dependency factory: the write's :class:`Precondition` for the record at ``key``.

    ``key`` is itself a dependency (its parameters are path parameters, other dependencies...)
    returning the record's :class:`~stalwart.storage.Key`. Without ``If-Match`` the request is
    refused with 428, malformed with 400, stale or weak with 412; a ``VersionConflict`` the
    store raises for that key inside the handler becomes 412 too. Declare
    :func:`write_responses` on the route.

    >>> from fastapi import FastAPI
    >>> app = FastAPI()
    >>> def item_key(item_id: str) -> Key:
    ...     return Key("items", item_id)
    >>> @app.delete("/items/{item_id}", status_code=204, responses=write_responses(204, etag=False))
    ... async def delete_item(
    ...     precondition: Annotated[Precondition, Depends(if_match(item_key))],
    ... ) -> None: ...
    """

    async def precondition(
        request: Request,
        resource: Annotated[Key, Depends(key)],
        _declared: Annotated[  # for OpenAPI only, as in if_none_match
            str | None,
            Header(
                alias="If-Match",
                description="Required: the ETag the client read (428 without it; 412 when "
                "stale or weak; `*`: the resource must exist).",
            ),
        ] = None,
    ) -> AsyncIterator[Precondition]:
        condition = evaluate_if_match(field_value(request.headers.getlist("if-match")), resource)
        with condition.conflicts_as_412():
            yield condition

    return precondition


def set_etag(response: Response, record: Record) -> None:
    """Put ``record``'s ETag on ``response`` (e.g. the ``response: Response`` parameter)."""
    response.headers["ETag"] = record_etag(record)


def not_modified(record: Record) -> Response:
    """The 304 answer for ``record``: its ETag, no body."""
    return Response(status_code=304, headers={"ETag": record_etag(record)})


__all__ = [
    "health_router",
    "if_match",
    "if_none_match",
    "not_modified",
    "read_responses",
    "set_etag",
    "write_responses",
]
