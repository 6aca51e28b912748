# Copyright 2026 stalwart contributors
"""OpenAPI declarations of problem+json responses, as plain dicts (framework-neutral).

FastAPI takes them as a route's (or a router's) ``responses=``; any other OpenAPI generator can
merge them into an operation's ``responses`` object.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Final

from stalwart.web._errors import HttpProblem
from stalwart.web._problem import PROBLEM_JSON

PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem details document.",
    "properties": {
        "type": {
            "type": "string",
            "format": "uri-reference",
            "description": "URI of the kind of problem (`about:blank`: the status says it all).",
        },
        "title": {"type": "string", "description": "A short summary of the kind of problem."},
        "status": {"type": "integer", "description": "The HTTP status code."},
        "detail": {"type": "string", "description": "What went wrong with this request."},
        "instance": {"type": "string", "format": "uri-reference"},
        "code": {"type": "string", "description": "Stable, machine-readable name of the error."},
        "request_id": {"type": "string", "description": "The request's X-Request-ID."},
    },
    "required": ["type", "title", "status"],
    "additionalProperties": True,
}
"""JSON Schema of the documents the web kits send."""


def problem_responses(*examples: HttpProblem, **more: Any) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` declaring each example's status as a problem+json response.

    Examples that share a status are listed under that status as named examples (by ``code``);
    the headers they carry (``Retry-After``) are declared on the response.
    ``more`` members (e.g. ``request_id="..."``) are added to every example document.

    >>> responses = problem_responses(HttpProblem(428, "precondition-required", "send If-Match"))
    >>> responses[428]["content"]["application/problem+json"]["examples"]["precondition-required"][
    ...     "value"
    ... ]["status"]
    428
    """
    declared: dict[int | str, dict[str, Any]] = {}
    for example in examples:
        response = declared.setdefault(
            example.status,
            {
                "description": HTTPStatus(example.status).phrase,
                "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA, "examples": {}}},
            },
        )
        for name in example.headers:
            response.setdefault("headers", {})[name] = {"schema": {"type": "string"}}
        response["content"][PROBLEM_JSON]["examples"][example.code] = {
            "summary": example.detail or example.code,
            "value": example.document(**more),
        }
    return declared
