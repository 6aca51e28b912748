# Copyright 2026 stalwart contributors
"""RFC 9457 problem details (``application/problem+json``), framework-neutral."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, Final

PROBLEM_JSON: Final = "application/problem+json"
"""The media type of a problem details document."""


def problem(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_: str = "about:blank",
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """A problem details object; ``title`` defaults to the status phrase (RFC 9457 §4.2.1).

    Extension members must not reuse the standard member names.

    >>> problem(409, detail="try later", code="busy")["title"]
    'Conflict'
    """
    reserved = {"type", "title", "status", "detail", "instance"} & extensions.keys()
    if reserved:
        raise ValueError(f"extension members may not be named {sorted(reserved)}")
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(extensions)
    return body


def problem_bytes(document: dict[str, Any]) -> bytes:
    """Encode a problem document as compact UTF-8 JSON.

    >>> problem_bytes(problem(400))
    b'{"type":"about:blank","title":"Bad Request","status":400}'
    """
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
