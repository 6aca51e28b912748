# Copyright 2026 stalwart contributors
"""The web kit for FastAPI: ``install(app)`` once, right after creating the app.

What it installs, outermost first:

- asgi-correlation-id's ``CorrelationIdMiddleware``: keeps a valid incoming ``X-Request-ID``
  (see :func:`stalwart.web.is_valid_request_id`), else generates one, and sends it back on
  every response;
- the kit's middleware: binds the id into the log context (``correlation_id``) and the current
  span, answers any exception a handler raised as problem+json (an ``HttpProblem`` as is, a
  registered error by its rule, anything else as a 500 without internals, logged with its
  stack), and logs one JSON line per request on ``stalwart.web.access``;
- exception handlers for FastAPI's request validation errors (422 ``validation-failed`` or 400
  ``invalid-json``, with the errors listed in ``errors``) and for ``HTTPException`` (404, 405,
  an app's ``raise HTTPException(...)``), as problem+json;
- the OpenAPI declarations of those problem responses on every operation.

At lifespan startup it calls :func:`stalwart.observability.reclaim_loggers`: a
``uvicorn.Config`` created after ``configure_logging`` re-attaches uvicorn's own (coloured,
plain text) handlers, and this routes uvicorn's lines to the JSON handler again.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from stalwart._extras import require_extra

require_extra("fastapi", "fastapi", feature="stalwart.web.fastapi")
require_extra("asgi_correlation_id", "fastapi", feature="stalwart.web.fastapi")

from asgi_correlation_id import CorrelationIdMiddleware  # noqa: E402 - after the extra check
from asgi_correlation_id import correlation_id as asgi_request_id  # noqa: E402
from fastapi import FastAPI, Request, Response  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from stalwart.observability import reclaim_loggers, request_context  # noqa: E402
from stalwart.web._access_log import log_request  # noqa: E402
from stalwart.web._error_table import default_errors  # noqa: E402
from stalwart.web._errors import HttpProblem  # noqa: E402
from stalwart.web._fastapi_resources import (  # noqa: E402
    health_router,
    if_match,
    if_none_match,
    not_modified,
    read_responses,
    set_etag,
    write_responses,
)
from stalwart.web._health import Health  # noqa: E402
from stalwart.web._openapi_kit import declare_problem_responses  # noqa: E402
from stalwart.web._registry import ErrorRegistry  # noqa: E402
from stalwart.web._render import (  # noqa: E402
    ProblemReply,
    exception_problem,
    http_error_problem,
    problem_reply,
    validation_problem,
)
from stalwart.web._request_id import (  # noqa: E402
    REQUEST_ID_HEADER,
    current_request_id,
    is_valid_request_id,
    new_request_id,
    tag_current_span,
)

type Principal = Callable[[Request], Awaitable[str | None] | str | None]

logger = logging.getLogger("stalwart.web")


def _response(reply: ProblemReply) -> Response:
    return Response(reply.body, status_code=reply.status, headers=dict(reply.headers))


async def _http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code < 400:  # e.g. a 304 raised as an exception: no body to describe
        return Response(status_code=exc.status_code, headers=exc.headers)
    # Starlette fills a missing detail with the reason phrase: only the app's own text is sent.
    custom = isinstance(exc.detail, str) and exc.detail != HTTPStatus(exc.status_code).phrase
    error = http_error_problem(exc.status_code, exc.detail if custom else None, exc.headers)
    return _response(problem_reply(error, current_request_id()))


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _response(problem_reply(validation_problem(exc.errors()), current_request_id()))


def _body_too_large(limit: int) -> HttpProblem:
    """The 413 problem of a request body over ``limit`` bytes."""
    return http_error_problem(413, f"the request body exceeds {limit} bytes")


def _headers_too_large(limit: int) -> HttpProblem:
    """The 431 problem of request headers over ``limit`` bytes in all."""
    return http_error_problem(431, f"the request's headers exceed {limit} bytes")


class _KitMiddleware:
    """Request context, exceptions as problems, and the request log line (pure ASGI)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        errors: ErrorRegistry,
        principal: Principal | None,
        max_body_bytes: int | None,
        max_header_bytes: int | None,
        body_limit_exempt: tuple[str, ...],
    ) -> None:
        self.app = app
        self.errors = errors
        self.principal = principal
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.body_limit_exempt = body_limit_exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                # uvicorn applied its log_config after the app's configure_logging.
                reclaim_loggers()
            await self.app(scope, receive, send)
            return
        # CorrelationIdMiddleware (outside this one) has validated or generated it.
        request_id = asgi_request_id.get() or new_request_id()
        began = time.perf_counter()
        status = 500
        response_started = False

        async def watched_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
            await send(message)

        with request_context(request_id):
            tag_current_span(request_id)
            try:
                self._check_header_size(scope)
                await self.app(scope, self._limit_body(scope, receive), watched_send)
            except Exception as exc:
                if response_started:  # too late for a problem: the server closes the stream
                    raise
                conditional = any(name == b"if-match" for name, _ in scope["headers"])
                error = exception_problem(exc, self.errors, conditional=conditional)
                reply = problem_reply(error, request_id)
                await watched_send(
                    {
                        "type": "http.response.start",
                        "status": reply.status,
                        "headers": [
                            (name.encode("latin-1"), value.encode("latin-1"))
                            for name, value in (
                                *reply.headers,
                                ("content-length", str(len(reply.body))),
                            )
                        ],
                    }
                )
                await watched_send({"type": "http.response.body", "body": reply.body})
            finally:
                route = scope.get("route")
                log_request(
                    method=scope["method"],
                    route=getattr(route, "path_format", None),
                    status=status,
                    duration_s=time.perf_counter() - began,
                    request_id=request_id,
                    principal=await self._principal(scope),
                )

    def _check_header_size(self, scope: Scope) -> None:
        """431 for a request whose header names and values add up to more than the limit
        (uvicorn's httptools parser has no limit of its own)."""
        if self.max_header_bytes is None:
            return
        size = sum(len(name) + len(value) for name, value in scope["headers"])
        if size > self.max_header_bytes:
            raise _headers_too_large(self.max_header_bytes)

    def _limit_body(self, scope: Scope, receive: Receive) -> Receive:
        """``receive``, refusing a body larger than the limit with 413: at once when its
        ``Content-Length`` says so, else when the bytes received pass it (a chunked body).

        The second case raises an ``HTTPException`` from ``receive``: FastAPI passes those
        through its body parsing to the kit's handler (any other exception becomes its 400).
        """
        limit = self.max_body_bytes
        if limit is None or scope["path"].startswith(self.body_limit_exempt):
            return receive
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _body_too_large(limit)
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, _body_too_large(limit).detail)
            return message

        return limited

    async def _principal(self, scope: Scope) -> str | None:
        if self.principal is None:
            return None
        try:
            named = self.principal(Request(scope))
            return await named if inspect.isawaitable(named) else named
        except Exception:  # the log line must not fail a request that already succeeded
            logger.warning("the principal function failed", exc_info=True)
            return None


def install(
    app: FastAPI,
    *,
    errors: ErrorRegistry | None = None,
    request_id_header: str = REQUEST_ID_HEADER,
    principal: Principal | None = None,
    health: Health | None = None,
    max_body_bytes: int | None = None,
    max_header_bytes: int | None = None,
    body_limit_exempt: Sequence[str] = (),
) -> ErrorRegistry:
    """Install the web kit on ``app``; returns the error registry it uses (register your
    domain errors on it, before or after this call).

    ``errors`` defaults to :func:`stalwart.web.default_errors`; ``principal(request)`` (sync
    or async, called once the response is sent) names the caller in the request log line;
    ``health`` serves ``GET /livez`` and ``GET /readyz`` (:func:`health_router`);
    ``max_body_bytes`` answers a larger request body with 413 ``request-entity-too-large``
    (before reading it when ``Content-Length`` says so); ``max_header_bytes`` answers a
    request whose header names and values add up to more with 431
    ``request-header-fields-too-large``, before any handler runs. ``None`` (the default):
    no limit but the server's, and uvicorn has none on bodies, nor (with httptools) on headers.
    ``body_limit_exempt``: path prefixes the body limit does not apply to (a mounted app that
    sets its own, such as a Flask app's ``MAX_CONTENT_LENGTH`` for file uploads).

    >>> from fastapi import FastAPI
    >>> errors = install(FastAPI())
    >>> errors
    <ErrorRegistry 13 rules>
    """
    registry = errors if errors is not None else default_errors()
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_exception)
    # add_middleware puts each one outside the ones added before it.
    app.add_middleware(
        _KitMiddleware,
        errors=registry,
        principal=principal,
        max_body_bytes=max_body_bytes,
        max_header_bytes=max_header_bytes,
        body_limit_exempt=tuple(body_limit_exempt),
    )
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name=request_id_header,
        generator=new_request_id,
        validator=is_valid_request_id,
    )
    if health is not None:
        app.include_router(health_router(health))
    _declare_on_every_operation(
        app,
        registry,
        headers_too_large=None
        if max_header_bytes is None
        else _headers_too_large(max_header_bytes),
        body_too_large=None if max_body_bytes is None else _body_too_large(max_body_bytes),
    )
    return registry


def _declare_on_every_operation(
    app: FastAPI,
    errors: ErrorRegistry,
    *,
    headers_too_large: HttpProblem | None,
    body_too_large: HttpProblem | None,
) -> None:
    """Wrap ``app.openapi`` (FastAPI's documented extension point) so the generated schema
    declares the kit's problem responses on every operation."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            declare_problem_responses(
                generate(),
                errors,
                headers_too_large=headers_too_large,
                body_too_large=body_too_large,
            )
        return generate()  # the cached, now extended, schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = [
    "Principal",
    "health_router",
    "if_match",
    "if_none_match",
    "install",
    "not_modified",
    "read_responses",
    "set_etag",
    "write_responses",
]
