# Copyright 2026 stalwart contributors
"""Exceptions, framework HTTP errors and validation errors as problem replies.

Both web shells call these functions, so the same error gives the same bytes on both.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from stalwart.web._error_table import INTERNAL_ERROR
from stalwart.web._errors import HttpProblem
from stalwart.web._problem import PROBLEM_JSON, problem_bytes
from stalwart.web._registry import ErrorRegistry

logger = logging.getLogger("stalwart.web")

JSON_INVALID: Final = "json_invalid"
"""The ``type`` of the error entry for a body that is not JSON (pydantic's name for it)."""


@dataclass(frozen=True, slots=True)
class ProblemReply:
    """A problem response, ready for either framework."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def problem_reply(error: HttpProblem, request_id: str | None) -> ProblemReply:
    """``error`` as a response, with the ``request_id`` member when there is one.

    >>> reply = problem_reply(HttpProblem(404, "not-found"), "req-1")
    >>> reply.status, reply.body[-21:]
    (404, b'"request_id":"req-1"}')
    """
    document = error.document() if request_id is None else error.document(request_id=request_id)
    headers = (("content-type", PROBLEM_JSON), *error.headers.items())
    return ProblemReply(error.status, headers, problem_bytes(document))


def exception_problem(exc: Exception, errors: ErrorRegistry, *, conditional: bool) -> HttpProblem:
    """What to answer for an exception a handler raised.

    An :class:`HttpProblem` is its own answer; a type ``errors`` maps gets its rule (with
    ``conditional``: the request carried ``If-Match``); anything else is a 500 without detail.
    Server errors are logged on ``stalwart.web`` with their stack (ERROR for 500, WARNING for
    the mapped 5xx, which are expected under load or outages); client errors are not.

    >>> exception_problem(HttpProblem(410, "gone"), ErrorRegistry(), conditional=False).status
    410
    """
    if isinstance(exc, HttpProblem):
        return exc
    mapped = errors.problem_for(exc, conditional=conditional)
    error = mapped or INTERNAL_ERROR.problem(exc, conditional=False)
    if error.status >= 500:
        level = logging.ERROR if mapped is None or error.status == 500 else logging.WARNING
        logger.log(
            level,
            "request failed: %s",
            type(exc).__qualname__,
            exc_info=exc,
            extra={"status": error.status, "code": error.code},
        )
    return error


def status_code_name(status: int) -> str:
    """The ``code`` of a plain HTTP error: its reason phrase in kebab case.

    >>> status_code_name(404), status_code_name(415)
    ('not-found', 'unsupported-media-type')
    """
    return re.sub(r"[^a-z0-9]+", "-", HTTPStatus(status).phrase.lower()).strip("-")


def http_error_problem(
    status: int, detail: str | None = None, headers: Mapping[str, str] | None = None
) -> HttpProblem:
    """A framework's own HTTP error (404, 405, 415, an app's ``abort``) as a problem.

    ``detail`` is only sent when the app wrote one (the frameworks' stock texts differ).

    >>> http_error_problem(405, headers={"Allow": "GET"}).document()["code"]
    'method-not-allowed'
    """
    return HttpProblem(status, status_code_name(status), detail, headers=headers)


def validation_problem(entries: Iterable[Mapping[str, Any]]) -> HttpProblem:
    """Request validation errors (pydantic's shape) as a problem listing them in ``errors``.

    Each entry keeps ``loc``, ``msg`` and ``type`` (never ``input``: it may hold secrets). A
    body that is not JSON at all is a 400 ``invalid-json``; anything else is a 422
    ``validation-failed``.

    >>> error = validation_problem([{"loc": ("body", "qty"), "msg": "bad", "type": "int_parsing",
    ...                              "input": "x"}])
    >>> error.status, error.extensions["errors"]
    (422, [{'loc': ['body', 'qty'], 'msg': 'bad', 'type': 'int_parsing'}])
    """
    listed = [
        {"loc": list(entry["loc"]), "msg": str(entry["msg"]), "type": str(entry["type"])}
        for entry in entries
    ]
    if any(entry["type"] == JSON_INVALID for entry in listed):
        return HttpProblem(
            400,
            "invalid-json",
            "the request body is not valid JSON",
            extensions={"errors": listed},
        )
    return HttpProblem(
        422, "validation-failed", "the request is not valid", extensions={"errors": listed}
    )


def json_error_entry(position: int) -> dict[str, Any]:
    """The ``errors`` entry for a body that failed to parse at ``position`` (as FastAPI's).

    >>> json_error_entry(3)
    {'loc': ['body', 3], 'msg': 'JSON decode error', 'type': 'json_invalid'}
    """
    return {"loc": ["body", position], "msg": "JSON decode error", "type": JSON_INVALID}
