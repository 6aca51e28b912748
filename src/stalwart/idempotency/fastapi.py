# Copyright 2026 stalwart contributors
"""Idempotency-Key for FastAPI, as a route class.

Why a route class: an ASGI middleware runs before routing, so it cannot know the route
template, whether the route opted out, or tell request-validation failures (which must not be
stored) from handler results; a dependency cannot replace the response. A route class wraps
exactly the route's handler, after routing and around validation. Use it per router::

    router = APIRouter(route_class=idempotent_route_class(layer))

or for the whole app, before adding routes: ``install_idempotency(app, layer)`` (it refuses
an app that already has routes, which a route class set afterwards would silently skip).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Final

from stalwart._extras import require_extra

require_extra("fastapi", "fastapi", feature="stalwart.idempotency.fastapi")

from fastapi import APIRouter, FastAPI, Request, Response  # noqa: E402 - after the extra check
from fastapi.routing import APIRoute  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402

from stalwart.idempotency._core import MAX_KEY_CHARS  # noqa: E402
from stalwart.idempotency._http import (  # noqa: E402
    REPLAYED_HEADER,
    HttpPolicy,
    HttpReply,
    HttpRequest,
    begin_plan,
    finish_plan,
    route_settings,
)
from stalwart.idempotency._layer import AsyncIdempotency, run_plan_async  # noqa: E402
from stalwart.web import PROBLEM_JSON  # noqa: E402

type Principal = Callable[[Request], Awaitable[str | None] | str | None]
type _Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _to_response(reply: HttpReply) -> Response:
    response = Response(content=reply.body, status_code=reply.status)
    for name, value in reply.headers:
        response.headers.append(name, value)
    return response


def _to_reply(response: Response) -> tuple[HttpReply, bool]:
    headers = tuple(response.headers.items())
    body = getattr(response, "body", None)  # streaming and file responses have no body
    if isinstance(body, bytes):
        return HttpReply(response.status_code, headers, body), False
    return HttpReply(response.status_code, headers), True


async def _handled(request: Request, exc: HTTPException) -> Response | None:
    """The response the app's own handler makes for ``exc`` (so 4xx results are stored)."""
    handlers: dict[Any, Callable[..., Any]] = request.app.exception_handlers
    handler = handlers.get(exc.status_code)
    if handler is None:
        handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
    if handler is None:
        return None
    result = handler(request, exc)
    if inspect.isawaitable(result):
        result = await result
    return result if isinstance(result, Response) else None


def openapi_extra(policy: HttpPolicy, *, required: bool) -> dict[str, Any]:
    """The OpenAPI additions for one idempotent operation (header, 400/409/422, replay header)."""
    problem = {
        PROBLEM_JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"type": "string"},
                },
            }
        }
    }
    example = "8e03978e-40d5-43e8-bc93-6894a57f9324"
    return {
        "parameters": [
            {
                "name": policy.header,
                "in": "header",
                "required": required,
                "description": (
                    "Makes the request safe to retry: the first request with a key runs, later "
                    "ones with the same key and payload get the stored response with "
                    f"`{REPLAYED_HEADER}: true`. 1-{MAX_KEY_CHARS} characters, sent as a "
                    "structured-field string or a bare token."
                ),
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS + 2},
                "examples": {
                    "structured": {
                        "summary": "structured-field string (RFC 8941)",
                        "value": f'"{example}"',
                    },
                    "token": {"summary": "bare token", "value": example},
                },
            }
        ],
        "responses": {
            "400": {
                "description": "Missing (if required) or malformed Idempotency-Key",
                "content": problem,
            },
            "409": {
                "description": "A request with this key is still in progress",
                "headers": {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}
                },
                "content": problem,
            },
            "422": {"description": "The key was used with a different payload", "content": problem},
        },
    }


def _with_openapi(
    extra: dict[str, Any] | None, policy: HttpPolicy, *, required: bool, success: int
) -> dict[str, Any]:
    mine = dict(extra or {})
    ours = openapi_extra(policy, required=required)
    # Merged into the route's own success response by FastAPI (a deep update).
    ours["responses"][str(success)] = {
        "headers": {
            REPLAYED_HEADER: {
                "description": "`true` when this response is a replay of the first one",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    }
    mine["parameters"] = [*mine.get("parameters", []), *ours["parameters"]]
    mine["responses"] = {**ours["responses"], **mine.get("responses", {})}
    return mine


_ENDPOINT_STARTED: ContextVar[list[bool] | None] = ContextVar(
    "stalwart_idempotency_endpoint_started", default=None
)
"""Set per guarded request; the endpoint wrapper flips it, so a rejection by a dependency
(authentication, validation) is told apart from the handler's own result."""


def _mark_started() -> None:
    flag = _ENDPOINT_STARTED.get()
    if flag is not None:
        flag[0] = True


def _observed(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an endpoint to record that it started (signature kept via ``__wrapped__``)."""
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def observed_async(*args: Any, **kwargs: Any) -> Any:
            _mark_started()
            return await endpoint(*args, **kwargs)

        return observed_async
    if inspect.isfunction(endpoint) and not (
        inspect.isgeneratorfunction(endpoint) or inspect.isasyncgenfunction(endpoint)
    ):

        @functools.wraps(endpoint)
        def observed(*args: Any, **kwargs: Any) -> Any:
            _mark_started()  # the context (and this flag) is copied into the worker thread
            return endpoint(*args, **kwargs)

        return observed
    return endpoint  # generators and callables: treated as started once handling begins


async def _describe(
    request: Request, route: str, header_names: tuple[str, ...], principal: Principal | None
) -> HttpRequest:
    """What the layer needs to know about ``request`` (``header_names``: the policy's)."""
    who: str | None = None
    if principal is not None:
        named = principal(request)
        who = await named if inspect.isawaitable(named) else named
    headers = {
        name: value for name in header_names if (value := request.headers.get(name)) is not None
    }
    # The path and query as the server received them (ASGI scope), as Flask's request.path
    # and query_string: request.url rebuilds and re-parses a URL from them.
    return HttpRequest(
        request.method,
        route,
        request.scope["path"],
        request.scope["query_string"].decode("latin-1"),
        await request.body(),
        headers,
        who,
    )


async def _handler_response(handler: _Handler, request: Request, *, observable: bool) -> Response:
    """The route handler's response. An ``HTTPException`` the endpoint raised is its result,
    rendered by the app's handler (and stored like a returned 4xx); one raised by a dependency
    before the endpoint started (authentication, permissions) is a rejection and propagates."""
    started = [not observable]
    token = _ENDPOINT_STARTED.set(started)
    try:
        return await handler(request)
    except HTTPException as exc:
        handled = await _handled(request, exc) if started[0] else None
        if handled is None:
            raise
        return handled
    finally:
        _ENDPOINT_STARTED.reset(token)


_OFF: Final = (False, False)


def _guard(
    handler: _Handler,
    *,
    layer: AsyncIdempotency,
    policy: HttpPolicy,
    settings: dict[str, tuple[bool, bool]],
    route: str,
    principal: Principal | None,
    observable: bool,
) -> _Handler:
    header_names = policy.header_names()

    async def idempotent_handler(request: Request) -> Response:
        enabled, required = settings.get(request.method, _OFF)
        if not enabled:
            return await handler(request)
        incoming = await _describe(request, route, header_names, principal)
        begin = await run_plan_async(
            layer.store, begin_plan(policy, layer.policy, incoming, required=required)
        )
        if begin is None:
            return await handler(request)
        if isinstance(begin, HttpReply):
            return _to_response(begin)
        try:
            response = await _handler_response(handler, request, observable=observable)
        except BaseException:
            await run_plan_async(layer.store, finish_plan(policy, layer.policy, begin.lease, None))
            raise
        reply, streamed = _to_reply(response)
        await run_plan_async(
            layer.store, finish_plan(policy, layer.policy, begin.lease, reply, streamed=streamed)
        )
        return response

    return idempotent_handler


def idempotent_route_class(
    layer: AsyncIdempotency,
    policy: HttpPolicy | None = None,
    *,
    principal: Principal | None = None,
) -> type[APIRoute]:
    """A FastAPI route class applying ``Idempotency-Key`` semantics to its routes.

    ``principal(request)`` (sync or async) names the caller, so two tenants using the same key
    never share a response. Per route, ``@idempotency_options(...)`` opts in or out. The scope
    uses the route's template within its router (``/orders/{order_id}``).

    >>> from fastapi import APIRouter
    >>> from stalwart.storage import open_async_store
    >>> layer = AsyncIdempotency(open_async_store("sqlite:///:memory:?table=idem"))
    >>> router = APIRouter(route_class=idempotent_route_class(layer))
    """
    http = policy or HttpPolicy()

    class IdempotentRoute(APIRoute):
        def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
            wrapped = _observed(endpoint)
            self._stalwart_observable = wrapped is not endpoint
            super().__init__(path, wrapped, **kwargs)
            settings = [
                route_settings(http, method, endpoint) for method in sorted(self.methods or ())
            ]
            if any(on for on, _ in settings):
                self.openapi_extra = _with_openapi(
                    self.openapi_extra,
                    http,
                    required=all(req for on, req in settings if on),
                    success=self.status_code or 200,
                )

        def get_route_handler(self) -> _Handler:
            handler = super().get_route_handler()
            settings = {
                method: route_settings(http, method, self.endpoint) for method in self.methods or ()
            }
            if not any(on for on, _ in settings.values()):
                return handler
            return _guard(
                handler,
                layer=layer,
                policy=http,
                settings=settings,
                route=self.path_format,
                principal=principal,
                observable=getattr(self, "_stalwart_observable", False),
            )

    return IdempotentRoute


def install_idempotency(
    app: FastAPI | APIRouter,
    layer: AsyncIdempotency,
    policy: HttpPolicy | None = None,
    *,
    principal: Principal | None = None,
) -> type[APIRoute]:
    """Make every route added to ``app`` (or a router) from now on idempotent; returns the
    route class it installed.

    A route class only applies to routes created after it is set, so this raises
    ``RuntimeError`` when routes were already added (they would silently stay unguarded):
    call it right after creating the app, or give those routers their own route class.

    >>> from fastapi import FastAPI
    >>> from stalwart.storage import open_async_store
    >>> app = FastAPI()
    >>> _ = install_idempotency(app, AsyncIdempotency(open_async_store("sqlite:///:memory:")))
    >>> @app.post("/late")
    ... async def late() -> None: ...
    >>> install_idempotency(app, AsyncIdempotency(open_async_store("sqlite:///:memory:")))
    Traceback (most recent call last):
    RuntimeError: routes were added before install_idempotency() and stay unguarded: POST /late
    """
    router = app.router if isinstance(app, FastAPI) else app
    existing = [route for route in router.routes if isinstance(route, APIRoute)]
    if existing:
        names = ", ".join(
            f"{','.join(sorted(route.methods or ()))} {route.path}" for route in existing
        )
        raise RuntimeError(
            f"routes were added before install_idempotency() and stay unguarded: {names}"
        )
    route_class = idempotent_route_class(layer, policy, principal=principal)
    router.route_class = route_class
    return route_class


__all__ = ["Principal", "idempotent_route_class", "install_idempotency", "openapi_extra"]
