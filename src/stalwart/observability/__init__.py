"""Observability: CloudWatch JSON logs, EMF metrics and OpenTelemetry tracing.

>>> from stalwart.observability import configure_logging, get_logger, request_context
"""

from stalwart.observability._context import (
    bind,
    bound,
    clear_context,
    correlation_id,
    get_context,
    request_context,
    unbind,
)
from stalwart.observability._errors import MetricsError, ObservabilityError
from stalwart.observability._logging import (
    JsonFormatter,
    Logger,
    capture_logs,
    configure_logging,
    get_logger,
)
from stalwart.observability._metrics import (
    MetricResolution,
    MetricsConfig,
    MetricSet,
    MetricsScope,
    MetricsSink,
    MetricUnit,
    add_dimension,
    add_metadata,
    capture_metrics,
    configure_metrics,
    flush_metrics,
    metrics_scope,
    put_metric,
    stdout_sink,
    validate_document,
)
from stalwart.observability._redact import DEFAULT_SECRET_KEYS, REDACTED, Redactor
from stalwart.observability._resilience_hooks import (
    breaker_listener,
    log_breaker_listener,
    log_retry_hook,
    metrics_breaker_listener,
    metrics_retry_hook,
    retry_hook,
    span_breaker_listener,
    span_retry_hook,
)
from stalwart.observability._trace_ids import current_trace_ids, xray_trace_id
from stalwart.observability._tracing import (
    INSTRUMENTATIONS,
    TraceExporter,
    Tracing,
    configure_tracing,
    shutdown_tracing,
)

__all__ = [
    "DEFAULT_SECRET_KEYS",
    "INSTRUMENTATIONS",
    "REDACTED",
    "JsonFormatter",
    "Logger",
    "MetricResolution",
    "MetricSet",
    "MetricUnit",
    "MetricsConfig",
    "MetricsError",
    "MetricsScope",
    "MetricsSink",
    "ObservabilityError",
    "Redactor",
    "TraceExporter",
    "Tracing",
    "add_dimension",
    "add_metadata",
    "bind",
    "bound",
    "breaker_listener",
    "capture_logs",
    "capture_metrics",
    "clear_context",
    "configure_logging",
    "configure_metrics",
    "configure_tracing",
    "correlation_id",
    "current_trace_ids",
    "flush_metrics",
    "get_context",
    "get_logger",
    "log_breaker_listener",
    "log_retry_hook",
    "metrics_breaker_listener",
    "metrics_retry_hook",
    "metrics_scope",
    "put_metric",
    "request_context",
    "retry_hook",
    "shutdown_tracing",
    "span_breaker_listener",
    "span_retry_hook",
    "stdout_sink",
    "unbind",
    "validate_document",
    "xray_trace_id",
]
