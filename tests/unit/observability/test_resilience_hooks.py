from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stalwart.observability import (
    breaker_listener,
    capture_metrics,
    configure_tracing,
    log_breaker_listener,
    log_retry_hook,
    metrics_breaker_listener,
    metrics_retry_hook,
    retry_hook,
    shutdown_tracing,
    span_breaker_listener,
    span_retry_hook,
    validate_document,
)


# Shaped like stalwart.resilience's RetryEvent / BreakerTransition / CircuitState; the same
# hooks are exercised against the real classes in test_resilience_integration.py.
@dataclass(frozen=True, slots=True)
class Event:
    name: str
    attempt: int
    wait_s: float
    cause: BaseException | None
    result: object | None


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Transition:
    name: str
    from_state: State
    to_state: State
    at: float


RETRY = Event("payments", 2, 0.25, TimeoutError("upstream slow"), None)
OPENED = Transition("payments", State.CLOSED, State.OPEN, 12.5)


def test_log_hooks(json_logs):
    configure, lines = json_logs
    configure()
    log_retry_hook(RETRY)
    log_retry_hook(Event("p", 1, 0.1, None, "bad result"))
    log_breaker_listener(OPENED)
    log_breaker_listener(Transition("payments", State.OPEN, State.HALF_OPEN, 13.0))
    retry, retry_result, opened, half_open = lines()
    assert retry["message"] == "retry scheduled"
    assert retry["level"] == "WARNING"
    assert (retry["retry_policy"], retry["attempt"], retry["wait_s"]) == ("payments", 2, 0.25)
    assert (retry["cause_type"], retry["cause"]) == ("TimeoutError", "upstream slow")
    assert "cause" not in retry_result
    assert opened["level"] == "WARNING"
    assert (opened["breaker"], opened["from_state"], opened["to_state"]) == (
        "payments",
        "closed",
        "open",
    )
    assert half_open["level"] == "INFO"


def test_metric_hooks():
    with capture_metrics() as docs:
        metrics_retry_hook(RETRY)
        metrics_breaker_listener(OPENED)
    retry, breaker = docs
    for doc in docs:
        validate_document(doc)
    assert retry["RetryScheduled"] == 1
    assert retry["retry_policy"] == "payments"
    assert breaker["BreakerTransition"] == 1
    assert (breaker["breaker"], breaker["to_state"]) == ("payments", "open")


def test_span_hooks():
    exporter = InMemorySpanExporter()
    setup = configure_tracing(
        "x", exporter=exporter, batch=False, set_global=False, instrument=False
    )
    try:
        span_retry_hook(RETRY)  # no active span: nothing to do, no error
        with setup.provider.get_tracer("t").start_as_current_span("call"):
            span_retry_hook(RETRY)
            span_breaker_listener(OPENED)
        (span,) = exporter.get_finished_spans()
        retry, breaker = span.events
        assert retry.name == "retry.scheduled"
        assert retry.attributes["retry.attempt"] == 2
        assert retry.attributes["exception.type"] == "TimeoutError"
        assert breaker.name == "circuit_breaker.transition"
        assert breaker.attributes["circuit_breaker.to_state"] == "open"
    finally:
        shutdown_tracing(setup)


def test_combined_hooks(json_logs):
    configure, lines = json_logs
    configure()
    with capture_metrics() as docs:
        retry_hook()(RETRY)
        retry_hook(log=False)(RETRY)
        breaker_listener(metrics=False)(OPENED)
    assert [line["message"] for line in lines()] == [
        "retry scheduled",
        "circuit breaker transition",
    ]
    assert [next(iter(d.keys() - {"_aws", "retry_policy"})) for d in docs] == [
        "RetryScheduled",
        "RetryScheduled",
    ]
