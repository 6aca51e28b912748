from __future__ import annotations

import importlib
import subprocess
import sys
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stalwart.config import SecretFetcher, SecretPolicy
from stalwart.observability import (
    INSTRUMENTATIONS,
    configure_tracing,
    current_trace_ids,
    get_logger,
    request_context,
    shutdown_tracing,
    xray_trace_id,
)


@pytest.fixture
def memory():
    exporter = InMemorySpanExporter()
    setup = configure_tracing(
        "orders", exporter=exporter, batch=False, set_global=False, instrument=False
    )
    yield setup, exporter
    shutdown_tracing(setup)


def test_trace_id_appears_in_the_log_lines_of_the_same_request(json_logs, memory):
    configure, lines = json_logs
    configure("orders")
    setup, exporter = memory
    tracer = setup.provider.get_tracer("test")
    log = get_logger("orders.api")
    with request_context("req-1"), tracer.start_as_current_span("POST /orders") as span:
        log.info("validating")
        with tracer.start_as_current_span("db.insert"):
            log.info("inserting")
        log.info("done")
    log.info("after the request")
    finished = {s.name: s for s in exporter.get_finished_spans()}
    root, child = finished["POST /orders"], finished["db.insert"]
    trace_hex = f"{root.context.trace_id:032x}"
    assert span.get_span_context().trace_id == root.context.trace_id
    validating, inserting, done, after = lines()
    for line, owner in ((validating, root), (inserting, child), (done, root)):
        assert line["trace_id"] == trace_hex
        assert line["span_id"] == f"{owner.context.span_id:016x}"
        assert line["xray_trace_id"] == f"1-{trace_hex[:8]}-{trace_hex[8:]}"
        assert line["correlation_id"] == "req-1"
    assert "trace_id" not in after
    assert root.resource.attributes["service.name"] == "orders"


def test_xray_ids_start_with_the_epoch(memory):
    exporter = InMemorySpanExporter()
    setup = configure_tracing(
        "x", exporter=exporter, batch=False, set_global=False, instrument=False, xray=True
    )
    try:
        with setup.provider.get_tracer("t").start_as_current_span("s"):
            trace_hex, _ = current_trace_ids()
        assert abs(int(trace_hex[:8], 16) - time.time()) < 60
        assert xray_trace_id(trace_hex).startswith(f"1-{trace_hex[:8]}-")
    finally:
        shutdown_tracing(setup)


def test_sample_ratio_zero_exports_nothing():
    exporter = InMemorySpanExporter()
    setup = configure_tracing(
        "x", exporter=exporter, batch=False, set_global=False, instrument=False, sample_ratio=0.0
    )
    try:
        with setup.provider.get_tracer("t").start_as_current_span("s") as span:
            assert not span.is_recording()
        assert exporter.get_finished_spans() == ()
    finally:
        shutdown_tracing(setup)


def test_exporter_choices():
    console = configure_tracing("x", exporter="console", set_global=False, instrument=False)
    otlp = configure_tracing(
        "x",
        exporter="otlp",
        endpoint="http://127.0.0.1:9/v1/traces",
        set_global=False,
        instrument=False,
        export_timeout_s=0.5,
    )
    none = configure_tracing("x", exporter="none", set_global=False, instrument=False)
    try:
        processors = console.provider._active_span_processor._span_processors
        assert isinstance(processors[0].span_exporter, ConsoleSpanExporter)
        otlp_exporter = otlp.provider._active_span_processor._span_processors[0].span_exporter
        assert type(otlp_exporter).__name__ == "OTLPSpanExporter"
        assert none.provider._active_span_processor._span_processors == ()
    finally:
        for setup in (console, otlp, none):
            shutdown_tracing(setup)
    with pytest.raises(ValueError, match="sample_ratio"):
        configure_tracing("x", exporter="none", sample_ratio=2, set_global=False)
    with pytest.raises(ValueError, match="unknown instrumentation"):
        configure_tracing("x", exporter="none", instrument=["django"], set_global=False)


def test_every_installed_instrumentation_is_turned_on_and_off():
    setup = configure_tracing("x", exporter="none", set_global=False, instrument=True)
    try:
        # The dev environment has every library and its instrumentation installed.
        assert set(setup.instrumented) == set(INSTRUMENTATIONS), setup.skipped
    finally:
        shutdown_tracing(setup)
    for module_name, class_name in INSTRUMENTATIONS.values():
        instrumentor = getattr(importlib.import_module(module_name), class_name)()
        assert not instrumentor.is_instrumented_by_opentelemetry


def test_botocore_calls_become_child_spans_of_the_request(json_logs, moto_srv):
    configure, lines = json_logs
    configure("orders")
    exporter = InMemorySpanExporter()
    setup = configure_tracing(
        "orders", exporter=exporter, batch=False, set_global=False, instrument=["botocore"]
    )
    try:
        assert setup.instrumented == ("botocore",)
        name = f"obs-{uuid.uuid4().hex[:8]}"
        client = boto3.client(
            "secretsmanager",
            endpoint_url=moto_srv.url,
            config=Config(connect_timeout=5, read_timeout=5),
        )
        client.create_secret(Name=name, SecretString="v1")
        fetcher = SecretFetcher(client, policy=SecretPolicy())
        tracer = setup.provider.get_tracer("test")
        with request_context("req-2"), tracer.start_as_current_span("GET /pay") as root:
            assert fetcher.get(name).get_secret_value() == "v1"
            get_logger("orders").info("secret read")
        spans = exporter.get_finished_spans()
        aws = [s for s in spans if s.attributes.get("rpc.service") == "Secrets Manager"]
        assert [s.attributes.get("rpc.method") for s in aws] == ["CreateSecret", "GetSecretValue"]
        assert aws[0].parent is None  # created outside the request
        aws = aws[1:]
        assert aws[0].parent.span_id == root.get_span_context().span_id
        (line,) = [x for x in lines() if x["message"] == "secret read"]
        assert line["trace_id"] == f"{aws[0].context.trace_id:032x}"
    finally:
        shutdown_tracing(setup)


def test_global_provider_and_xray_propagation_in_a_fresh_process():
    # Global OpenTelemetry state can be set once per process: check it in a child process.
    code = """
from opentelemetry import propagate, trace
from stalwart.observability import configure_tracing, current_trace_ids, shutdown_tracing

setup = configure_tracing("svc", exporter="none", xray=True, instrument=False)
assert trace.get_tracer_provider() is setup.provider
headers = {}
with trace.get_tracer("t").start_as_current_span("s"):
    trace_hex, span_hex = current_trace_ids()
    propagate.inject(headers)
assert headers["traceparent"].split("-")[1] == trace_hex, headers
assert headers["X-Amzn-Trace-Id"].startswith(f"Root=1-{trace_hex[:8]}-{trace_hex[8:]}"), headers
shutdown_tracing(setup)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_instrumentation_is_skipped_with_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.redis", None)
    setup = configure_tracing("x", exporter="none", set_global=False, instrument=["redis", "httpx"])
    try:
        assert setup.instrumented == ("httpx",)
        assert "opentelemetry-instrumentation-redis is not installed" in setup.skipped["redis"]
    finally:
        shutdown_tracing(setup)
