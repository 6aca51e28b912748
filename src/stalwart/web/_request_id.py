# Copyright 2026 stalwart contributors
"""Request ids: which incoming ``X-Request-ID`` values are kept, new ids, the span attribute.

An incoming id is kept when it is 1-128 characters of letters, digits, ``.``, ``_`` and ``-``
(UUIDs in any usual form, nginx's ``$request_id``, ULIDs, a trace id); anything else is
replaced by a new id (32 hex digits of a UUID4), so a client cannot put spaces, quotes,
control characters or a megabyte into every log line and problem body.

The id of the current request is the log context's ``correlation_id``: the web kits bind it
for the whole request, so every log line, and every problem body, carries it.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from stalwart.observability import correlation_id
from stalwart.observability._trace_ids import current_span

REQUEST_ID_HEADER: Final = "X-Request-ID"
SPAN_ATTRIBUTE: Final = "http.request.id"
"""The attribute of the current OpenTelemetry span that holds the request id."""

_VALID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")


def is_valid_request_id(value: str) -> bool:
    """Whether an incoming request id is kept as is.

    >>> is_valid_request_id("3f2b8c1e-5d4a-4c1b-9e7f-0a1b2c3d4e5f")
    True
    >>> is_valid_request_id("x" * 129), is_valid_request_id("a b"), is_valid_request_id("")
    (False, False, False)
    """
    return _VALID.fullmatch(value) is not None


def new_request_id() -> str:
    """A fresh request id (a UUID4 as 32 hex digits).

    >>> len(new_request_id())
    32
    """
    return uuid.uuid4().hex


def accept_request_id(incoming: str | None) -> str:
    """``incoming`` when it is valid, else a new id.

    >>> accept_request_id("req-42"), len(accept_request_id("no spaces, please"))
    ('req-42', 32)
    """
    if incoming is not None and is_valid_request_id(incoming):
        return incoming
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request being handled (the log context's ``correlation_id``), if any.

    >>> from stalwart.observability import request_context
    >>> with request_context("req-42"):
    ...     current_request_id()
    'req-42'
    """
    return correlation_id()


def tag_current_span(request_id: str) -> None:
    """Set the request id on the active OpenTelemetry span, when one is recording.

    >>> tag_current_span("req-42")  # no span here: nothing happens
    """
    span = current_span()
    if span is not None:
        span.set_attribute(SPAN_ATTRIBUTE, request_id)
