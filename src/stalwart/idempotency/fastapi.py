# Copyright 2026 stalwart contributors
"""Idempotency-Key for FastAPI, as a route class.

Why a route class: an ASGI middleware runs before routing, so it cannot know the route
template, whether the route opted out, or tell request-validation failures (which must not be
stored) from handler results; a dependency cannot replace the response. A route class wraps
exactly the route's handler, after routing and around validation. Use it per router::

    router = APIRouter(route_class=idempotent_route_class(layer))

or for the whole app: ``app.router.route_class = idempotent_route_class(layer)`` before
adding routes.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Final

from stalwart._extras import require_extra

require_extra("fastapi", "fastapi", feature="stalwart.idempotency.fastapi")

from fastapi import Request, Response  # noqa: E402 - after the extra check on purpose
from fastapi.routing import APIRoute  # noqa: E402
from starlette.datastructures import URL  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402

from stalwart.idempotency._http import (  # noqa: E402
    MAX_KEY_CHARS,
    REPLAYED_HEADER,
    UNPARSED,
    HttpPolicy,
    HttpReply,
    HttpRequest,
    begin_plan,
    finish_plan,
    route_settings,
    wants_json,
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
    # response.headers.items(), read from the raw list it wraps (the same list, so later
    # edits through response.headers are seen) without building the MutableHeaders view.
    headers = tuple(
        [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers]
    )
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


def _observed(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an endpoint to record that it started (signature kept via ``__wrapped__``)."""
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def observed_async(*args: Any, **kwargs: Any) -> Any:
            flag = _ENDPOINT_STARTED.get()  # _mark_started(), inlined on the hot path
            if flag is not None:
                flag[0] = True
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


def _mark_started() -> None:
    flag = _ENDPOINT_STARTED.get()
    if flag is not None:
        flag[0] = True


_OFF: Final = (False, False)


def _guard(  # noqa: C901 - the whole guarded request in one coroutine, on purpose
    handler: _Handler,
    *,
    layer: AsyncIdempotency,
    policy: HttpPolicy,
    settings: dict[str, tuple[bool, bool]],
    route: str,
    principal: Principal | None,
    read_headers: Callable[[Request], dict[str, str]],
    observable: bool,
) -> _Handler:
    key_header = policy.header.lower()

    # One coroutine per request: describing, claiming, running and settling are inlined here
    # because every extra coroutine costs a fraction of a microsecond on the hot path.
    async def idempotent_handler(request: Request) -> Response:
        method: str = request.scope["method"]  # request.method, minus a property and a cast()
        enabled, required = settings.get(method, _OFF)
        if not enabled:
            return await handler(request)
        # Describe the request (what the layer needs to know about it).
        body = await request.body()
        who: str | None = None
        if principal is not None:
            named = principal(request)
            who = await named if inspect.isawaitable(named) else named
        headers = read_headers(request)
        path, query = _path_and_query(request)
        json_body = UNPARSED
        if key_header in headers and wants_json(headers, body):
            # FastAPI parses a JSON body with this very call and reuses its cached result, so
            # one parse serves both. A failure is left to the fingerprint, which parses again
            # and raises or falls back exactly as without this shortcut.
            try:  # noqa: SIM105 - contextlib.suppress costs ~0.3 us per request
                json_body = await request.json()
            except (ValueError, RecursionError):
                pass
        incoming = HttpRequest(method, route, path, query, body, headers, who, json_body)
        begin = await run_plan_async(
            layer.store, begin_plan(policy, layer.policy, incoming, required=required)
        )
        if begin is None:
            return await handler(request)
        if isinstance(begin, HttpReply):
            return _to_response(begin)
        lease = begin.lease
        started = [not observable]
        token = _ENDPOINT_STARTED.set(started)
        try:
            try:
                response = await handler(request)
            except HTTPException as exc:
                # Raised by the endpoint: its result, stored like a returned 4xx. Raised by a
                # dependency before it (auth, permissions): a rejection, not stored.
                handled = await _handled(request, exc) if started[0] else None
                if handled is None:
                    raise
                response = handled
        except BaseException:
            await run_plan_async(layer.store, finish_plan(policy, layer.policy, lease, None))
            raise
        finally:
            _ENDPOINT_STARTED.reset(token)
        reply, streamed = _to_reply(response)
        await run_plan_async(
            layer.store, finish_plan(policy, layer.policy, lease, reply, streamed=streamed)
        )
        return response

    return idempotent_handler


def _url_is_scope_path() -> bool:
    """Whether this Starlette's ``request.url`` path and query are the scope's, unchanged,
    for the plain paths :func:`_path_and_query` accepts (older releases prefixed the
    ``root_path``)."""
    url = URL(
        scope={
            "type": "http",
            "scheme": "http",
            "server": ("127.0.0.1", 8000),
            "root_path": "/mount",
            "path": "/mount/a/b.c;d=e",
            "query_string": b"x=1&y=%20",
            "headers": [(b"host", b"example.org:8080")],
        }
    )
    return url.path == "/mount/a/b.c;d=e" and url.query == "x=1&y=%20"


_FAST_URL: Final = _url_is_scope_path()
# Characters Starlette escapes in the path, or that urlsplit drops or splits on, and the
# bytes of a query it would cut or strip: with any of them, request.url decides.
_SPECIAL_PATH: Final = re.compile(r"[?#\\\t\r\n]")
_SPECIAL_QUERY: Final = re.compile(rb"[#\t\r\n]")


def _path_and_query(request: Request) -> tuple[str, str]:
    """``(request.url.path, request.url.query)`` without building the URL (a few
    microseconds: host parsing, urlunsplit, urlsplit) when the scope's values are plain."""
    scope = request.scope
    path: str = scope["path"]
    query: bytes = scope.get("query_string", b"")
    if (
        _FAST_URL
        and path[:1] == "/"
        and path[1:2] != "/"
        and _SPECIAL_PATH.search(path) is None
        and (not query or (query.isascii() and _SPECIAL_QUERY.search(query) is None))
    ):
        return path, query.decode("ascii")
    url = request.url
    return url.path, url.query


def _header_reader(names: tuple[str, ...]) -> Callable[[Request], dict[str, str]]:
    """``{name: request.headers.get(name)}`` for the present ``names``, in one pass over the
    scope's raw headers instead of one per name (first occurrence wins, as in Starlette)."""
    try:
        wanted = {name.encode("latin-1"): name for name in names}
    except UnicodeEncodeError:
        wanted = None  # Starlette raises for such a name on every request: keep that

    def slow(request: Request) -> dict[str, str]:
        headers = request.headers
        return {name: value for name in names if (value := headers.get(name)) is not None}

    def fast(request: Request) -> dict[str, str]:
        assert wanted is not None
        found: dict[str, str] = {}
        try:
            for raw_name, raw_value in request.scope["headers"]:
                name = wanted.get(raw_name)
                if name is not None and name not in found:
                    found[name] = raw_value.decode("latin-1")
        except (TypeError, AttributeError):  # not the bytes pairs ASGI servers send
            return slow(request)
        return found

    return slow if wanted is None else fast


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
    read_headers = _header_reader(http.header_names())

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
                read_headers=read_headers,
                observable=getattr(self, "_stalwart_observable", False),
            )

    return IdempotentRoute


__all__ = ["Principal", "idempotent_route_class", "openapi_extra"]
