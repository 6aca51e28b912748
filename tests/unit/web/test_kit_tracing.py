# Copyright 2026 stalwart contributors
"""The request id is an attribute of the server span of OpenTelemetry's official FastAPI and
Flask instrumentations, through real servers."""

from __future__ import annotations

import httpx
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from servers import uvicorn_server, werkzeug_server
from stalwart.web import SPAN_ATTRIBUTE
from unit.web.web_apps import make_fastapi, make_flask


def test_request_id_on_the_server_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fastapi_app, flask_app = make_fastapi(), make_flask()
    FastAPIInstrumentor.instrument_app(fastapi_app, tracer_provider=provider)
    FlaskInstrumentor().instrument_app(flask_app, tracer_provider=provider)
    try:
        with uvicorn_server(fastapi_app) as fastapi_url, werkzeug_server(flask_app) as flask_url:
            for name, base in (("fastapi", fastapi_url), ("flask", flask_url)):
                httpx.get(f"{base}/items/7", headers={"X-Request-ID": f"span-{name}"})
                generated = httpx.get(f"{base}/raise/unhandled").headers["x-request-id"]
                tagged = {
                    span.attributes.get(SPAN_ATTRIBUTE)
                    for span in exporter.get_finished_spans()
                    if span.kind is SpanKind.SERVER and span.attributes is not None
                }
                assert {f"span-{name}", generated} <= tagged, (name, tagged)
    finally:
        FastAPIInstrumentor.uninstrument_app(fastapi_app)
        FlaskInstrumentor().uninstrument_app(flask_app)
        provider.shutdown()
