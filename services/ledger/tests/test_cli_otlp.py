"""With LEDGER_OTLP_ENDPOINT set, ``ledger serve`` exports OpenTelemetry spans over OTLP/HTTP
(each request, and the store calls it made): a real subprocess, a real HTTP receiver standing
in for the collector."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from api_support import KEY_LINE, ledger_serve
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_serve_exports_request_spans_to_the_otlp_endpoint(tmp_path, collector):
    endpoint, received = collector
    with ledger_serve(cwd=tmp_path, env={"LEDGER_OTLP_ENDPOINT": endpoint}) as served:
        (key,) = KEY_LINE.findall(served.text())
        created = httpx.post(
            f"{served.base}/v1/accounts",
            json={"currency": "USD", "name": "Traced"},
            headers={"Authorization": f"Bearer {key}", "X-Request-ID": "req-traced"},
            timeout=5,
        )
        assert created.status_code == 201
        assert httpx.get(f"{served.base}/readyz", timeout=5).json()["status"] == "ok"
    # Stopping the server flushed the batched spans.
    assert received, "no OTLP export reached the collector"
    assert {path for path, _ in received} == {"/v1/traces"}
    spans = []
    for _, body in received:
        export = ExportTraceServiceRequest.FromString(body)
        spans += [
            span
            for resource in export.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
    server_spans = [s for s in spans if s.name == "POST /v1/accounts"]
    assert server_spans, [s.name for s in spans]
    (server,) = server_spans
    attributes = {a.key: a.value.string_value for a in server.attributes}
    assert attributes["http.request.id"] == "req-traced"  # the web kit tags the server span
    # The store's calls are its children, on SQLite too (no client instrumentation there).
    store_spans = [
        s for s in spans if s.name.startswith("store.") and s.trace_id == server.trace_id
    ]
    names = {s.name for s in store_spans}
    assert {"store.get", "store.transact"} <= names, names  # the API key read, the create
    engine = {a.key: a.value.string_value for a in store_spans[0].attributes}["db.system.name"]
    assert engine == "sqlite"
