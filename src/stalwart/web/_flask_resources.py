# Copyright 2026 stalwart contributors
"""Flask shells of health checks and conditional requests (re-exported by
``stalwart.web.flask``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

from stalwart._extras import require_extra

require_extra("flask", "flask", feature="stalwart.web.flask")

from flask import Blueprint, Response, request  # noqa: E402

from stalwart.storage import Key, Record  # noqa: E402
from stalwart.web._conditional import (  # noqa: E402
    IfNoneMatch,
    evaluate_if_match,
    field_value,
    read_if_none_match,
    record_etag,
)
from stalwart.web._health import HEALTH_JSON, LIVE_BODY, Health  # noqa: E402

NO_STORE: Final = {"Cache-Control": "no-store"}


def health_blueprint(
    health: Health,
    *,
    livez: str = "/livez",
    readyz: str = "/readyz",
    name: str = "stalwart_health",
) -> Blueprint:
    """A ``Blueprint`` with ``GET /livez`` and ``GET /readyz`` (``app.register_blueprint``).

    Checks run on threads (see :meth:`Health.check`); register sync checks (a sync store):
    an async check runs in its own event loop there, so it must not use a client bound to
    another loop.

    >>> from flask import Flask
    >>> app = Flask(__name__)
    >>> app.register_blueprint(health_blueprint(Health()))
    >>> app.test_client().get("/livez").data
    b'{"status":"ok"}'
    """
    blueprint = Blueprint(name, __name__)

    @blueprint.get(livez)
    def live() -> Response:
        return Response(LIVE_BODY, content_type=HEALTH_JSON, headers=NO_STORE)

    @blueprint.get(readyz)
    def ready() -> Response:
        readiness = health.check()
        return Response(
            readiness.body(),
            status=readiness.http_status,
            content_type=HEALTH_JSON,
            headers=NO_STORE,
        )

    return blueprint


def if_none_match() -> IfNoneMatch:
    """The current request's parsed ``If-None-Match`` (400 ``HttpProblem`` if malformed)."""
    return read_if_none_match(field_value(request.headers.getlist("If-None-Match")))


def if_match[R](key: Callable[..., Key]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorator of a write view: it gets ``precondition=`` (a :class:`Precondition` for the
    record at ``key(**view_args)``) as a keyword argument.

    Without ``If-Match`` the request is refused with 428, malformed with 400, stale or weak
    with 412 (``HttpProblem``\\ s raised before the view runs); a ``VersionConflict`` the store
    raises for that key inside the view becomes a 412 ``HttpProblem`` too.

    >>> from flask import Flask
    >>> from stalwart.web import Precondition
    >>> app = Flask(__name__)
    >>> @app.delete("/items/<item_id>")
    ... @if_match(lambda item_id: Key("items", item_id))
    ... def delete_item(item_id: str, precondition: Precondition) -> tuple[str, int]:
    ...     return "", 204
    """

    def decorate(view: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(view)
        def conditional_view(*args: Any, **kwargs: Any) -> R:
            condition = evaluate_if_match(
                field_value(request.headers.getlist("If-Match")), key(**kwargs)
            )
            with condition.conflicts_as_412():
                return view(*args, precondition=condition, **kwargs)

        return conditional_view

    return decorate


def set_etag(response: Response, record: Record) -> Response:
    """Put ``record``'s ETag on ``response``; returns it."""
    response.headers["ETag"] = record_etag(record)
    return response


def not_modified(record: Record) -> Response:
    """The 304 answer for ``record``: its ETag, no body."""
    return Response(status=304, headers={"ETag": record_etag(record)})


__all__ = [
    "health_blueprint",
    "if_match",
    "if_none_match",
    "not_modified",
    "set_etag",
]
