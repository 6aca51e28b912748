"""The observability hooks plugged into the real stalwart.resilience retry and breaker."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stalwart.observability import (
    breaker_listener,
    capture_metrics,
    configure_tracing,
    get_logger,
    request_context,
    retry_hook,
    shutdown_tracing,
    validate_document,
)
from stalwart.resilience import CircuitBreaker, CountWindow, retry


@pytest.fixture
def tracing():
    exporter = InMemorySpanExporter()
    setup = configure_tracing(
        "payments", exporter=exporter, batch=False, set_global=False, instrument=False
    )
    yield setup.provider.get_tracer("test"), exporter
    shutdown_tracing(setup)


def test_retries_become_log_lines_metrics_and_span_events(json_logs, tracing):
    configure, lines = json_logs
    configure("payments")
    tracer, exporter = tracing
    calls = []

    @retry(
        on=ConnectionError,
        attempts=3,
        base_s=0.01,
        name="charge",
        hooks=(retry_hook(),),
        sleep=lambda _: None,
    )
    def charge() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset by peer")
        return "ok"

    with capture_metrics() as docs, request_context("req-7"):
        with tracer.start_as_current_span("POST /charges"):
            assert charge() == "ok"
        get_logger("payments").info("charged")
    retries = [line for line in lines() if line["message"] == "retry scheduled"]
    assert [line["attempt"] for line in retries] == [1, 2]
    (span,) = exporter.get_finished_spans()
    for line in retries:
        assert line["retry_policy"] == "charge"
        assert line["cause_type"] == "ConnectionError"
        assert line["correlation_id"] == "req-7"
        assert line["trace_id"] == f"{span.context.trace_id:032x}"
    assert [e.name for e in span.events] == ["retry.scheduled", "retry.scheduled"]
    assert [e.attributes["retry.attempt"] for e in span.events] == [1, 2]
    assert [d["RetryScheduled"] for d in docs] == [1, 1]
    for doc in docs:
        validate_document(doc)
        assert doc["retry_policy"] == "charge"


def test_breaker_transitions_become_log_lines_metrics_and_span_events(json_logs, tracing):
    configure, lines = json_logs
    configure("payments")
    tracer, exporter = tracing
    breaker = CircuitBreaker(
        "psp", min_calls=2, window=CountWindow(4), open_s=60, listeners=(breaker_listener(),)
    )

    @breaker
    def call_psp() -> None:
        raise ConnectionError("down")

    with capture_metrics() as docs, tracer.start_as_current_span("POST /charges"):
        for _ in range(2):
            with pytest.raises(ConnectionError):
                call_psp()
    (line,) = [x for x in lines() if x["message"] == "circuit breaker transition"]
    assert (line["breaker"], line["from_state"], line["to_state"]) == ("psp", "closed", "open")
    assert line["level"] == "WARNING"
    (doc,) = docs
    validate_document(doc)
    assert (doc["BreakerTransition"], doc["breaker"], doc["to_state"]) == (1, "psp", "open")
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "circuit_breaker.transition"
    assert event.attributes["circuit_breaker.to_state"] == "open"
