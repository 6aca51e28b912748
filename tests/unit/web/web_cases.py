# Copyright 2026 stalwart contributors
"""One table of requests and the answers both web kits must give (tests/unit/web/web_apps.py).

``problem`` is the whole expected document except ``request_id`` (the test sends its own id
and expects it back in the body and the header). ``headers`` are response headers that must
be present with exactly these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BLANK = "about:blank"


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    problem: dict[str, Any] | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    header_names: tuple[str, ...] = ()
    """Response headers that must be present (values differ between frameworks)."""


def _problem(
    status: int, title: str, code: str, detail: str | None = None, **more: Any
) -> dict[str, Any]:
    document: dict[str, Any] = {"type": more.pop("type", BLANK), "title": title, "status": status}
    if detail is not None:
        document["detail"] = detail
    return {**document, "code": code, **more}


def _raised(name: str, status: int, title: str, code: str, detail: str | None, **more: Any) -> Case:
    headers = more.pop("headers", {})
    request_headers = more.pop("request_headers", {})
    method = more.pop("method", "GET")
    return Case(
        f"raise-{name}" + ("-conditional" if request_headers else ""),
        method,
        f"/raise/{name}",
        status,
        _problem(status, title, code, detail, **more),
        request_headers=request_headers,
        headers=headers,
    )


JSON = {"content-type": "application/json"}

CASES: list[Case] = [
    Case("ok", "GET", "/items/7", 200),
    _raised(
        "store-unavailable",
        503,
        "Service Unavailable",
        "store-unavailable",
        "a data store is unavailable; retry later",
        headers={"retry-after": "1"},
    ),
    _raised(
        "version-conflict",
        409,
        "Conflict",
        "version-conflict",
        "the resource was changed by another request",
        method="PUT",
    ),
    _raised(
        "version-conflict",
        412,
        "Precondition Failed",
        "precondition-failed",
        "the resource has changed since the ETag was read",
        method="PUT",
        request_headers={"If-Match": '"v3"'},
    ),
    _raised("already-exists", 409, "Conflict", "already-exists", "the resource already exists"),
    _raised(
        "transaction-conflict",
        409,
        "Conflict",
        "transaction-conflict",
        "a concurrent change conflicted; nothing was written",
    ),
    _raised(
        "invalid-record",
        422,
        "Unprocessable Entity",
        "invalid-record",
        "the resource cannot be stored as given",
    ),
    _raised("store-configuration", 500, "Internal Server Error", "internal-error", None),
    _raised(
        "circuit-open",
        503,
        "Service Unavailable",
        "circuit-open",
        "a dependency is failing; retry later",
        headers={"retry-after": "3"},
    ),
    _raised(
        "bulkhead-full",
        503,
        "Service Unavailable",
        "bulkhead-full",
        "too many concurrent requests",
        headers={"retry-after": "1"},
    ),
    _raised(
        "deadline-exceeded",
        504,
        "Gateway Timeout",
        "deadline-exceeded",
        "the request ran out of time",
    ),
    _raised(
        "idempotency-in-progress",
        409,
        "Conflict",
        "idempotency-in-progress",
        "a request with this idempotency key is still being processed",
        headers={"retry-after": "5"},
    ),
    _raised(
        "idempotency-key-reused",
        422,
        "Unprocessable Entity",
        "idempotency-key-reused",
        "this idempotency key was used with a different payload",
    ),
    _raised(
        "idempotency-key-invalid",
        400,
        "Bad Request",
        "idempotency-key-invalid",
        "the key is longer than 255 chars",
    ),
    _raised("config", 500, "Internal Server Error", "internal-error", None),
    _raised(
        "domain",
        422,
        "Unprocessable Entity",
        "insufficient-funds",
        "balance 10 is too low",
        type="https://example.com/problems/insufficient-funds",
        balance=10,
    ),
    _raised(
        "http-problem",
        409,
        "Conflict",
        "order-closed",
        "the order is closed",
        type="https://example.com/problems/order-closed",
        order=7,
        headers={"x-order-state": "closed"},
    ),
    _raised("unhandled", 500, "Internal Server Error", "internal-error", None),
    Case(
        "validation",
        "POST",
        "/orders",
        422,
        _problem(
            422,
            "Unprocessable Entity",
            "validation-failed",
            "the request is not valid",
            errors=[
                {"loc": ["body", "item"], "msg": "Field required", "type": "missing"},
                {
                    "loc": ["body", "qty"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "type": "int_parsing",
                },
            ],
        ),
        request_headers=JSON,
        content=b'{"qty": "many"}',
    ),
    Case(
        "invalid-json",
        "POST",
        "/orders",
        400,
        _problem(
            400,
            "Bad Request",
            "invalid-json",
            "the request body is not valid JSON",
            errors=[{"loc": ["body", 9], "msg": "JSON decode error", "type": "json_invalid"}],
        ),
        request_headers=JSON,
        content=b'{"item": ',
    ),
    Case("created", "POST", "/orders", 201, request_headers=JSON, content=b'{"item":"a","qty":2}'),
    Case("not-found", "GET", "/nowhere", 404, _problem(404, "Not Found", "not-found")),
    Case(
        "abort-with-detail",
        "GET",
        "/abort",
        404,
        _problem(404, "Not Found", "not-found", "no such order"),
    ),
    Case(
        "method-not-allowed",
        "DELETE",
        "/items/7",
        405,
        _problem(405, "Method Not Allowed", "method-not-allowed"),
        header_names=("allow",),
    ),
]
