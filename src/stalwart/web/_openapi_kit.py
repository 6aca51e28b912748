# Copyright 2026 stalwart contributors
"""The problem responses the web kit itself can send, declared on every OpenAPI operation."""

from __future__ import annotations

from typing import Any, Final

from stalwart.resilience import BulkheadFull, CircuitOpen
from stalwart.storage import StoreUnavailable
from stalwart.web._error_table import INTERNAL_ERROR
from stalwart.web._errors import HttpProblem
from stalwart.web._openapi import problem_responses
from stalwart.web._problem import PROBLEM_JSON
from stalwart.web._registry import ErrorRegistry
from stalwart.web._render import json_error_entry, validation_problem

EXAMPLE_REQUEST_ID: Final = "4bf92f3577b34da6a3ce929d0e0e4736"
_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def kit_responses(errors: ErrorRegistry) -> dict[int | str, dict[str, Any]]:
    """The responses any operation may get from the kit: 500, and 503 with ``Retry-After``
    (store unavailable, circuit open, bulkhead full, as ``errors`` maps them).

    >>> from stalwart.web import default_errors
    >>> sorted(kit_responses(default_errors()))
    [500, 503]
    """
    examples = [INTERNAL_ERROR.example()]
    for exc_type in (StoreUnavailable, CircuitOpen, BulkheadFull):
        rule = errors.rule_for(exc_type)
        if rule is not None:
            example = rule.example()
            headers = {"Retry-After": "1"} if rule.headers is not None else None
            examples.append(
                HttpProblem(example.status, example.code, example.detail, headers=headers)
            )
    return problem_responses(*examples, request_id=EXAMPLE_REQUEST_ID)


def validation_responses() -> dict[int | str, dict[str, Any]]:
    """422 ``validation-failed`` and 400 ``invalid-json``, with an example each.

    >>> sorted(validation_responses())
    [400, 422]
    """
    invalid = validation_problem(
        [{"loc": ["body", "qty"], "msg": "Input should be a valid integer", "type": "int_parsing"}]
    )
    return problem_responses(
        invalid, validation_problem([json_error_entry(12)]), request_id=EXAMPLE_REQUEST_ID
    )


def _merge(responses: dict[str, Any], status: str, declared: dict[str, Any]) -> None:
    """Add ``declared`` under ``status``; a problem+json response the route already declares
    keeps its own text and gains the examples it lacks; any other one is left alone."""
    existing = responses.get(status)
    if existing is None:
        responses[status] = declared
        return
    content = existing.get("content", {}).get(PROBLEM_JSON)
    if content is not None:
        content.setdefault("schema", declared["content"][PROBLEM_JSON]["schema"])
        examples = content.setdefault("examples", {})
        for name, example in declared["content"][PROBLEM_JSON]["examples"].items():
            examples.setdefault(name, example)


def declare_problem_responses(
    schema: dict[str, Any],
    errors: ErrorRegistry,
    *,
    headers_too_large: HttpProblem | None = None,
    body_too_large: HttpProblem | None = None,
) -> None:
    """Declare the kit's problem responses on every operation of an OpenAPI ``schema``.

    FastAPI's own 422 (its ``HTTPValidationError`` JSON) is replaced by the problem the kit
    really sends (a 422 problem the route declares itself gains the validation example);
    operations with a request body also get the 400 for a body that is not JSON.

    >>> schema = {"paths": {"/a": {"post": {"requestBody": {}, "responses": {"422": {}}}}}}
    >>> declare_problem_responses(schema, ErrorRegistry())
    >>> sorted(schema["paths"]["/a"]["post"]["responses"])
    ['400', '422', '500']
    """
    everywhere = {str(status): body for status, body in kit_responses(errors).items()}
    validation = {str(status): body for status, body in validation_responses().items()}
    # The request-size limits (431 on every operation, 413 where there is a body), when set.
    if headers_too_large is not None:
        everywhere |= _declared(headers_too_large)
    with_body = _declared(body_too_large) if body_too_large is not None else {}
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if "422" in responses and PROBLEM_JSON not in responses["422"].get("content", {}):
                responses["422"] = validation["422"]  # FastAPI's own: not what is sent
            elif "parameters" in operation or "requestBody" in operation:
                _merge(responses, "422", validation["422"])
            if "requestBody" in operation:
                _merge(responses, "400", validation["400"])
                for status, declared in with_body.items():
                    _merge(responses, status, declared)
            for status, declared in everywhere.items():
                _merge(responses, status, declared)


def _declared(problem: HttpProblem) -> dict[str, Any]:
    return {
        str(status): body
        for status, body in problem_responses(problem, request_id=EXAMPLE_REQUEST_ID).items()
    }
