# Copyright 2026 stalwart contributors
"""The web kit for Flask: the ``StalwartWeb`` extension (``StalwartWeb(app)`` or
``init_app``).

What it installs:

- request ids: a valid incoming ``X-Request-ID`` (see :func:`stalwart.web.is_valid_request_id`)
  is kept, else one is generated; it is bound into the log context (``correlation_id``) and
  the current span, and sent back on every response. Its ``before_request`` hook runs first
  and its ``after_request`` hook last, whatever the order extensions were set up in, so other
  hooks (and the problem bodies they send) see the id;
- error handlers: any exception a view raised becomes problem+json (an ``HttpProblem`` as is,
  a registered error by its rule, anything else a 500 without internals, logged with its
  stack); werkzeug's HTTP errors (404, 405, 415, ``abort(...)``) and a body that is not JSON
  (400 ``invalid-json``) too, in the same bytes as the FastAPI kit;
- one JSON line per request on ``stalwart.web.access`` (its duration runs until the response
  is ready, before the body is sent).

:func:`validated` parses the JSON body into a pydantic model and fails as FastAPI does (422
``validation-failed`` listing the errors), so both frameworks answer the same.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from stalwart._extras import require_extra

require_extra("flask", "flask", feature="stalwart.web.flask")

from flask import Flask, Request, Response, g, request  # noqa: E402 - after the extra check
from pydantic import BaseModel, ValidationError  # noqa: E402
from werkzeug.exceptions import BadRequest, HTTPException  # noqa: E402

from stalwart.observability import request_context  # noqa: E402
from stalwart.web._access_log import log_request  # noqa: E402
from stalwart.web._error_table import default_errors  # noqa: E402
from stalwart.web._flask_resources import (  # noqa: E402
    health_blueprint,
    if_match,
    if_none_match,
    not_modified,
    set_etag,
)
from stalwart.web._health import Health  # noqa: E402
from stalwart.web._registry import ErrorRegistry  # noqa: E402
from stalwart.web._render import (  # noqa: E402
    ProblemReply,
    exception_problem,
    http_error_problem,
    json_error_entry,
    problem_reply,
    validation_problem,
)
from stalwart.web._request_id import (  # noqa: E402
    REQUEST_ID_HEADER,
    accept_request_id,
    tag_current_span,
)

type Principal = Callable[[Request], str | None]

EXTENSION_NAME: Final = "stalwart.web"
_STATE: Final = "_stalwart_web"

logger = logging.getLogger("stalwart.web")


@dataclass(slots=True)
class _RequestState:
    request_id: str
    began: float
    context: contextlib.ExitStack
    json_error_at: int | None = None


def _response(reply: ProblemReply) -> Response:
    return Response(reply.body, status=reply.status, headers=list(reply.headers))


class StalwartWeb:
    """Flask extension: request ids, problem+json errors and the request log line.

    ``errors`` defaults to :func:`stalwart.web.default_errors` (register your domain errors on
    ``ext.errors``); ``principal(request)`` names the caller in the request log line;
    ``health`` serves ``GET /livez`` and ``GET /readyz`` (:func:`health_blueprint`).

    >>> from flask import Flask
    >>> web = StalwartWeb(Flask(__name__))
    >>> web.errors
    <ErrorRegistry 13 rules>
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        errors: ErrorRegistry | None = None,
        request_id_header: str = REQUEST_ID_HEADER,
        principal: Principal | None = None,
        health: Health | None = None,
    ) -> None:
        self.errors = errors if errors is not None else default_errors()
        self.request_id_header = request_id_header
        self.principal = principal
        self.health = health
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<StalwartWeb header={self.request_id_header!r}>"

    def init_app(self, app: Flask) -> None:
        """Install the hooks and error handlers on ``app``."""
        app.extensions[EXTENSION_NAME] = self
        # First before_request and last after_request (Flask runs those in reverse order).
        app.before_request_funcs.setdefault(None, []).insert(0, self._before)
        app.after_request_funcs.setdefault(None, []).insert(0, self._after)
        app.teardown_request(self._teardown)
        app.register_error_handler(HTTPException, self._http_error)
        app.register_error_handler(Exception, self._exception)
        if self.health is not None:
            app.register_blueprint(health_blueprint(self.health))

    def _state(self) -> _RequestState:
        """This request's state, created on first use (a hook that ran before ours, or a
        failure before any hook, still gets an id)."""
        state: _RequestState | None = g.get(_STATE)
        if state is None:
            request_id = accept_request_id(request.headers.get(self.request_id_header))
            context = contextlib.ExitStack()
            context.enter_context(request_context(request_id))
            state = _RequestState(request_id, time.perf_counter(), context)
            setattr(g, _STATE, state)
            _watch_json_loading(request, state)
        return state

    def _before(self) -> None:
        self._state()

    def _after(self, response: Response) -> Response:
        state = self._state()
        response.headers[self.request_id_header] = state.request_id
        # The span of OpenTelemetry's Flask instrumentation is active here, whatever the
        # order of the before_request hooks.
        tag_current_span(state.request_id)
        rule = request.url_rule
        log_request(
            method=request.method,
            route=rule.rule if rule is not None else None,
            status=response.status_code,
            duration_s=time.perf_counter() - state.began,
            request_id=state.request_id,
            principal=self._principal(),
        )
        return response

    def _teardown(self, _exc: BaseException | None) -> None:
        state: _RequestState | None = g.pop(_STATE, None)
        if state is not None:
            state.context.close()

    def _principal(self) -> str | None:
        if self.principal is None:
            return None
        try:
            return self.principal(request)
        except Exception:  # the log line must not fail a request that already succeeded
            logger.warning("the principal function failed", exc_info=True)
            return None

    def _http_error(self, exc: HTTPException) -> Response | HTTPException:
        if exc.response is not None or exc.code is None or exc.code < 400:
            return exc  # an abort(response) or a redirect: already what to send
        state = self._state()
        if isinstance(exc, BadRequest) and state.json_error_at is not None:
            error = validation_problem([json_error_entry(state.json_error_at)])
        else:
            # werkzeug's stock descriptions differ from Starlette's: only the app's own text.
            custom = exc.description != type(exc).description
            headers = {
                name: value for name, value in exc.get_headers() if name.lower() != "content-type"
            }
            error = http_error_problem(exc.code, exc.description if custom else None, headers)
        return _response(problem_reply(error, state.request_id))

    def _exception(self, exc: Exception) -> Response:
        state = self._state()
        conditional = "If-Match" in request.headers
        error = exception_problem(exc, self.errors, conditional=conditional)
        return _response(problem_reply(error, state.request_id))


def _watch_json_loading(incoming: Request, state: _RequestState) -> None:
    """Keep where this request's JSON body failed to parse (Flask's ``BadRequest`` hides it),
    through Flask's documented hook for that failure, wrapped on this request only."""
    original = incoming.on_json_loading_failed

    def failed(exc: ValueError | None) -> Any:
        if exc is not None:
            state.json_error_at = getattr(exc, "pos", 0)
        return original(exc)

    # An instance attribute shadows the method for this request only.
    setattr(incoming, "on_json_loading_failed", failed)  # noqa: B010


def validated[M: BaseModel](model: type[M]) -> M:
    """The request's JSON body as ``model``; invalid → 422 ``validation-failed`` with the
    errors at ``["body", ...]``, as FastAPI's body validation; not JSON → 400 ``invalid-json``.

    >>> from flask import Flask
    >>> from pydantic import BaseModel
    >>> class Order(BaseModel):
    ...     qty: int
    >>> app = Flask(__name__)
    >>> with app.test_request_context(json={"qty": 2}):
    ...     validated(Order).qty
    2
    """
    data = request.get_json()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**entry, "loc": ("body", *entry["loc"])} for entry in exc.errors()]
        raise validation_problem(errors) from None


__all__ = [
    "EXTENSION_NAME",
    "Principal",
    "StalwartWeb",
    "health_blueprint",
    "if_match",
    "if_none_match",
    "not_modified",
    "set_etag",
    "validated",
]
