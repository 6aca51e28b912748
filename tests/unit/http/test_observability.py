"""The client's log lines, EMF metrics and OpenTelemetry spans, against the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from http_app import Reply, ScriptedApp
from stalwart.http import ClientPolicy, async_client, client
from stalwart.observability import (
    Tracing,
    capture_logs,
    capture_metrics,
    configure_tracing,
    metrics_scope,
    shutdown_tracing,
)
from stalwart.resilience import BreakerConfig, CircuitOpen, CountWindow

FAST = ClientPolicy(backoff_base_s=0.001, backoff_cap_s=0.01)


@pytest.fixture
def tracing() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    setup = configure_tracing(
        "payments", exporter=exporter, batch=False, set_global=False, instrument=False
    )
    yield setup, exporter
    shutdown_tracing(setup)


def test_one_log_line_per_retry(server: ScriptedApp) -> None:
    path = server.path(Reply(503), Reply(429), Reply(200))
    with capture_logs("stalwart.http") as lines, client(FAST) as http:
        http.get(server.base_url + path)
    retries = [line for line in lines if line["message"] == "http retry scheduled"]
    assert [(line["attempt"], line["status"]) for line in retries] == [(1, 503), (2, 429)]
    assert {line["level"] for line in retries} == {"WARNING"}
    assert retries[0]["host"] == server.base_url.removeprefix("http://")


def test_one_log_line_per_breaker_transition(server: ScriptedApp) -> None:
    path = server.path(Reply(500))
    breaker = BreakerConfig(window=CountWindow(2), min_calls=2, open_s=0.0)
    policy = ClientPolicy(attempts=1, breaker=breaker)
    with capture_logs("stalwart.resilience", level="INFO") as lines, client(policy) as http:
        for _ in range(3):
            http.get(server.base_url + path)
    transitions = [
        (line["from_state"], line["to_state"])
        for line in lines
        if line["message"] == "circuit breaker transition"
    ]
    # closed -> open on the 2nd failure; open_s=0: the 3rd call probes and fails it again.
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    assert all(
        line["breaker"] == "http " + server.base_url.removeprefix("http://")
        for line in lines
        if line["message"] == "circuit breaker transition"
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_metrics_per_host_inside_a_metrics_scope_only(server: ScriptedApp, mode: str) -> None:
    async def get(path: str) -> None:
        url = server.base_url + path
        if mode == "sync":
            with client(FAST) as http:
                http.get(url)
            return
        async with async_client(FAST) as http:
            await http.get(url)

    with capture_metrics() as docs:
        asyncio.run(get(server.path(Reply(503), Reply(200))))  # no scope: nothing
        with metrics_scope("Payments", dimensions={"route": "/pay"}):
            asyncio.run(get(server.path(Reply(503), Reply(200))))
    assert len(docs) == 1
    (doc,) = docs
    assert doc["host"] == server.base_url.removeprefix("http://")
    assert doc["route"] == "/pay"
    assert (doc["HttpAttempts"], doc["HttpRetries"]) == (2, 1)
    assert doc["HttpLatency"] > 0
    assert "HttpBreakerRejections" not in doc


def test_a_breaker_rejection_is_counted(server: ScriptedApp) -> None:
    path = server.path(Reply(500))
    breaker = BreakerConfig(window=CountWindow(1), min_calls=1, open_s=30.0)
    with capture_metrics() as docs, client(ClientPolicy(attempts=1, breaker=breaker)) as http:
        http.get(server.base_url + path)
        with metrics_scope(), pytest.raises(CircuitOpen):
            http.get(server.base_url + path)
    (doc,) = docs
    assert (doc["HttpBreakerRejections"], doc["HttpAttempts"]) == (1, 0)


def instrumented_spans(
    mode: str, tracing: tuple[Tracing, InMemorySpanExporter], url: str
) -> list[Any]:
    setup, exporter = tracing
    instrumentor = HTTPXClientInstrumentor()

    async def get() -> None:
        if mode == "sync":
            with client(FAST) as http:
                instrumentor.instrument_client(http, tracer_provider=setup.provider)
                assert http.get(url).status_code == 200
            return
        async with async_client(FAST) as http:
            instrumentor.instrument_client(http, tracer_provider=setup.provider)
            assert (await http.get(url)).status_code == 200

    asyncio.run(get())
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_official_instrumentation_makes_one_span_per_request(
    server: ScriptedApp, tracing: tuple[Tracing, InMemorySpanExporter], mode: str
) -> None:
    """``instrument_client`` wraps the client's transport, i.e. ours: one span per logical
    request (retries inside it), with the final status; the trace context is propagated on
    every attempt."""
    path = server.path(Reply(503), Reply(200))
    spans = instrumented_spans(mode, tracing, server.base_url + path)
    assert len(spans) == 1
    (span,) = spans
    assert span.attributes is not None
    status = span.attributes.get("http.response.status_code") or span.attributes.get(
        "http.status_code"
    )
    assert status == 200
    parents = {r.headers.get("traceparent") for r in server.received[path]}
    assert len(parents) == 1
    assert f"{span.context.trace_id:032x}" in parents.pop()


def test_the_global_instrumentation_makes_one_span_per_attempt(
    server: ScriptedApp, tracing: tuple[Tracing, InMemorySpanExporter]
) -> None:
    """``instrument()`` patches httpx's own transports, which are our inner transports."""
    setup, exporter = tracing
    path = server.path(Reply(503), Reply(200))
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=setup.provider)
    try:
        with client(FAST) as http:
            assert http.get(server.base_url + path).status_code == 200
    finally:
        instrumentor.uninstrument()
    spans = exporter.get_finished_spans()
    statuses = [
        span.attributes.get("http.response.status_code") or span.attributes.get("http.status_code")
        for span in spans
        if span.attributes is not None
    ]
    assert statuses == [503, 200]
