"""Trace and span ids of the active OpenTelemetry span, in W3C and X-Ray forms.

OpenTelemetry is optional: without the ``otel`` extra there is never an active span, and the
lookup costs one failed import at first use.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def xray_trace_id(trace_id_hex: str) -> str:
    """The X-Ray form ``1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy`` of a 32-hex-digit trace id.

    X-Ray reads the first 8 digits as the epoch seconds the trace started; they are meaningful
    when the X-Ray id generator is used (``configure_tracing(xray=True)``).

    >>> xray_trace_id("5759e988bd862e3fe1be46a994272793")
    '1-5759e988-bd862e3fe1be46a994272793'
    """
    if len(trace_id_hex) != 32:
        raise ValueError(f"a trace id has 32 hex digits, got {trace_id_hex!r}")
    return f"1-{trace_id_hex[:8]}-{trace_id_hex[8:]}"


@cache
def _span_getter() -> Callable[[], Any] | None:
    try:
        from opentelemetry import trace  # noqa: PLC0415 - optional extra, looked up once
    except ImportError:
        return None
    return trace.get_current_span


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in lowercase hex of the active span, or None.

    >>> current_trace_ids() is None  # no span is active here
    True
    """
    getter = _span_getter()
    if getter is None:
        return None
    ctx = getter().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def current_span() -> Any | None:
    """The active OpenTelemetry span if it is recording, else None.

    >>> current_span() is None
    True
    """
    getter = _span_getter()
    if getter is None:
        return None
    span = getter()
    return span if span.is_recording() else None
