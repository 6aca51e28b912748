# Copyright 2026 stalwart contributors
"""Idempotency-Key for Flask, as an extension with ``init_app``.

The claim is taken in ``before_request`` (after routing, so the route template is known), the
response is stored or the claim released in ``after_request``, and ``teardown_request``
releases a claim whose request ended in an exception that skipped ``after_request``.
Register it after any ``before_request`` hook your ``principal`` function relies on.

A request whose JSON body cannot be loaded (``request.get_json()`` fails: malformed JSON, or
not JSON) is rejected as invalid and its 4xx is not stored, as FastAPI's request validation
failures are not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from stalwart._extras import require_extra

require_extra("flask", "flask", feature="stalwart.idempotency.flask")

from flask import Flask, Request, Response, current_app, g, request  # noqa: E402
from werkzeug.wsgi import ClosingIterator  # noqa: E402

from stalwart.idempotency._http import (  # noqa: E402
    HttpPolicy,
    HttpReply,
    HttpRequest,
    Proceed,
    begin_plan,
    finish_plan,
    route_settings,
)
from stalwart.idempotency._layer import Idempotency, run_plan  # noqa: E402

type Principal = Callable[[Request], str | None]

_LEASE: Final = "_stalwart_idempotency_lease"
_JSON_FAILED: Final = "_stalwart_idempotency_json_failed"
EXTENSION_NAME: Final = "stalwart.idempotency"


class FlaskIdempotency:
    """Flask extension: ``Idempotency-Key`` semantics for POST/PATCH views (configurable).

    >>> from flask import Flask
    >>> from stalwart.storage import open_store
    >>> app = Flask(__name__)
    >>> FlaskIdempotency(app, layer=Idempotency(open_store("sqlite:///:memory:?table=i")))
    <FlaskIdempotency namespace='http'>
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        layer: Idempotency,
        policy: HttpPolicy | None = None,
        principal: Principal | None = None,
    ) -> None:
        self.layer = layer
        self.policy = policy or HttpPolicy()
        self.principal = principal
        self._header_names = self.policy.header_names()
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<FlaskIdempotency namespace={self.policy.namespace!r}>"

    def init_app(self, app: Flask) -> None:
        """Install the request hooks on ``app``."""
        app.extensions[EXTENSION_NAME] = self
        app.before_request(self._before)
        app.after_request(self._after)
        app.teardown_request(self._teardown)

    def _before(self) -> Response | None:
        rule = request.url_rule
        if rule is None:  # 404/405: nothing runs, nothing to guard
            return None
        view = current_app.view_functions.get(request.endpoint or "")
        enabled, required = route_settings(self.policy, request.method, view)
        if not enabled:
            return None
        headers = {
            name: value
            for name in self._header_names
            if (value := request.headers.get(name)) is not None
        }
        incoming = HttpRequest(
            request.method,
            rule.rule,
            request.path,
            request.query_string.decode("latin-1"),
            request.get_data(cache=True),
            headers,
            self.principal(request) if self.principal is not None else None,
        )
        begin = run_plan(
            self.layer.store,
            begin_plan(self.policy, self.layer.policy, incoming, required=required),
        )
        if isinstance(begin, Proceed):
            setattr(g, _LEASE, begin.lease)
            _watch_json_loading(request)
            return None
        if begin is None:
            return None
        return Response(begin.body, status=begin.status, headers=list(begin.headers))

    def _after(self, response: Response) -> Response:
        lease = g.pop(_LEASE, None)
        if lease is None:
            return response
        if g.pop(_JSON_FAILED, False) and 400 <= response.status_code < 500:
            # An invalid request, not the handler's result: released, never replayed.
            run_plan(self.layer.store, finish_plan(self.policy, self.layer.policy, lease, None))
            return response
        # abort()/HTTPException responses arrive wrapped in a ClosingIterator by force_type;
        # they are small error pages, not streams, so they are buffered and stored.
        streamed = response.direct_passthrough or (
            response.is_streamed and not isinstance(response.response, ClosingIterator)
        )
        reply = HttpReply(
            response.status_code,
            tuple(response.headers.items()),
            b"" if streamed else response.get_data(),
        )
        run_plan(
            self.layer.store,
            finish_plan(self.policy, self.layer.policy, lease, reply, streamed=streamed),
        )
        return response

    def _teardown(self, _exc: BaseException | None) -> None:
        lease = g.pop(_LEASE, None)
        if lease is not None:
            run_plan(self.layer.store, finish_plan(self.policy, self.layer.policy, lease, None))


def _watch_json_loading(incoming: Request) -> None:
    """Note in ``g`` when this request's ``get_json()`` fails (Flask's documented hook for
    that failure, ``on_json_loading_failed``, wrapped on this request only)."""
    original = incoming.on_json_loading_failed

    def failed(exc: ValueError | None) -> Any:
        setattr(g, _JSON_FAILED, True)
        return original(exc)

    # An instance attribute shadows the method for this request only (mypy refuses a plain
    # assignment to a method).
    setattr(incoming, "on_json_loading_failed", failed)  # noqa: B010


__all__ = ["FlaskIdempotency", "Principal"]
