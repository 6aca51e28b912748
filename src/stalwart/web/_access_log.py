# Copyright 2026 stalwart contributors
"""The one JSON log line per request (framework-neutral)."""

from __future__ import annotations

import logging
from typing import Final

ACCESS_LOGGER: Final = "stalwart.web.access"

_logger = logging.getLogger(ACCESS_LOGGER)


def log_request(
    *,
    method: str,
    route: str | None,
    status: int,
    duration_s: float,
    request_id: str,
    principal: str | None = None,
) -> None:
    """Log one finished request at INFO on ``stalwart.web.access``.

    ``route`` is the route template (``/orders/{order_id}``; None when nothing matched), never
    the raw path: paths hold ids, and a template keeps the field's values few. ``principal``
    is only present when known.

    >>> from stalwart.observability import capture_logs
    >>> with capture_logs(ACCESS_LOGGER, level="INFO") as lines:
    ...     log_request(method="GET", route="/orders/{id}", status=200, duration_s=0.0123,
    ...                 request_id="req-1")
    >>> line = lines[0]
    >>> line["message"], line["route"], line["status"], line["duration_ms"], line["request_id"]
    ('GET /orders/{id} 200', '/orders/{id}', 200, 12.3, 'req-1')
    """
    if not _logger.isEnabledFor(logging.INFO):
        return
    fields: dict[str, object] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(duration_s * 1000, 3),
        "request_id": request_id,
    }
    if principal is not None:
        fields["principal"] = principal
    _logger.info("%s %s %d", method, route or "-", status, extra=fields)
