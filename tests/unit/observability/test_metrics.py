from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import pytest

from stalwart.observability import (
    MetricResolution,
    MetricsError,
    MetricUnit,
    add_dimension,
    add_metadata,
    capture_metrics,
    configure_metrics,
    flush_metrics,
    metrics_scope,
    put_metric,
    put_metrics_by,
    validate_document,
)


@pytest.fixture(autouse=True)
def metrics_config() -> None:
    """This module's configuration (conftest's default_metrics_config restores the process's)."""
    configure_metrics("Test/App", service="orders")


def directive(doc):
    return doc["_aws"]["CloudWatchMetrics"][0]


def test_document_shape():
    with capture_metrics() as docs, metrics_scope():
        add_dimension("route", "/orders")
        add_metadata("request_id", "r-1")
        put_metric("Requests", 1)
        put_metric("Latency", 12.5, MetricUnit.MILLISECONDS, resolution=MetricResolution.HIGH)
        put_metric("Latency", 14, "Milliseconds", resolution=1)
    (doc,) = docs
    validate_document(doc)
    assert abs(doc["_aws"]["Timestamp"] - time.time() * 1000) < 5000
    d = directive(doc)
    assert d["Namespace"] == "Test/App"
    assert d["Dimensions"] == [["service", "route"]]
    assert d["Metrics"] == [
        {"Name": "Requests", "Unit": "Count", "StorageResolution": 60},
        {"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 1},
    ]
    assert doc["service"] == "orders"
    assert doc["route"] == "/orders"
    assert doc["request_id"] == "r-1"
    assert doc["Requests"] == 1
    assert doc["Latency"] == [12.5, 14]


def test_flush_at_100_metrics():
    with capture_metrics() as docs, metrics_scope():
        add_dimension("job", "load")
        for i in range(250):
            put_metric(f"M{i}", i)
    assert [len(directive(doc)["Metrics"]) for doc in docs] == [100, 100, 50]
    names = [m["Name"] for doc in docs for m in directive(doc)["Metrics"]]
    assert names == [f"M{i}" for i in range(250)]
    for doc in docs:
        validate_document(doc)
        assert doc["job"] == "load"  # dimensions carry over to the next document


def test_flush_at_100_values_per_metric():
    with capture_metrics() as docs, metrics_scope():
        for i in range(230):
            put_metric("Latency", i, MetricUnit.MILLISECONDS)
    assert [len(doc["Latency"]) for doc in docs] == [100, 100, 30]
    assert [v for doc in docs for v in doc["Latency"]] == list(range(230))
    for doc in docs:
        validate_document(doc)


def test_thirty_dimensions_at_most():
    with capture_metrics(), metrics_scope():
        for i in range(29):  # + service = 30
            add_dimension(f"d{i}", "v")
        with pytest.raises(MetricsError, match="at most 30 dimensions"):
            add_dimension("one_too_many", "v")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: put_metric("m", 1, "Parsecs"), "not a CloudWatch unit"),
        (lambda: put_metric("m", 1, resolution=5), "StorageResolution must be 1 or 60"),
        (lambda: put_metric("m", math.nan), "finite number"),
        (lambda: put_metric("m", math.inf), "finite number"),
        (lambda: put_metric("m", True), "finite number"),
        (lambda: put_metric("m", "3"), "finite number"),
        (lambda: put_metric("", 1), "non-empty string"),
        (lambda: put_metric("x" * 256, 1), "<= 255"),
        (lambda: put_metric("_aws", 1), "reserved"),
        (lambda: put_metric("service", 1), "name of a dimension"),
        (lambda: add_dimension("d", ""), "non-empty string value"),
        (lambda: add_dimension("d", 3), "non-empty string value"),
        (lambda: metrics_scope("AWS/Lambda"), "reserved"),
        (lambda: metrics_scope("bad namespace!"), "namespace"),
        (lambda: configure_metrics(""), "namespace"),
    ],
)
def test_validation_errors_say_what_is_wrong(call, message):
    with capture_metrics() as docs, metrics_scope(), pytest.raises(MetricsError, match=message):
        call()
    assert docs == []


def test_unit_conflict_in_one_document():
    with capture_metrics(), metrics_scope():
        put_metric("Latency", 1, MetricUnit.MILLISECONDS)
        with pytest.raises(MetricsError, match="recorded as Milliseconds/60s"):
            put_metric("Latency", 1, MetricUnit.SECONDS)
        with pytest.raises(MetricsError, match="recorded as"):
            put_metric("Latency", 1, MetricUnit.MILLISECONDS, resolution=1)


def test_dimension_named_like_a_metric_is_refused():
    with capture_metrics(), metrics_scope():
        put_metric("Requests", 1)
        with pytest.raises(MetricsError, match="name of a metric"):
            add_dimension("Requests", "x")


def test_every_unit_is_accepted():
    with capture_metrics() as docs, metrics_scope():
        for i, unit in enumerate(MetricUnit):
            put_metric(f"m{i}", 1, unit)
            put_metric(f"s{i}", 1, unit.value)
    validate_document(docs[0])
    assert len(MetricUnit) == 27


def test_outside_a_scope_each_metric_is_its_own_document():
    with capture_metrics() as docs:
        put_metric("A", 1)
        put_metric("B", 2)
        flush_metrics()  # no-op without a scope
    assert [list(doc)[-1] for doc in docs] == ["A", "B"]
    assert docs[0]["service"] == "orders"
    with pytest.raises(MetricsError, match="needs an open metrics_scope"):
        add_dimension("a", "b")


def test_empty_scope_emits_nothing():
    with capture_metrics() as docs, metrics_scope():
        add_dimension("a", "b")
    assert docs == []


def test_explicit_flush_keeps_dimensions():
    with capture_metrics() as docs, metrics_scope(dimensions={"job": "j"}):
        put_metric("A", 1)
        flush_metrics()
        put_metric("A", 2)
    assert [(doc["A"], doc["job"]) for doc in docs] == [(1, "j"), (2, "j")]


def test_scope_namespace_overrides_the_default():
    with capture_metrics() as docs, metrics_scope("Other/NS"):
        put_metric("A", 1)
    assert directive(docs[0])["Namespace"] == "Other/NS"


def test_nested_scopes_are_independent():
    with capture_metrics() as docs, metrics_scope(dimensions={"level": "outer"}):
        put_metric("Outer", 1)
        with metrics_scope(dimensions={"level": "inner"}):
            put_metric("Inner", 1)
        put_metric("Outer", 2)
    inner, outer = docs
    assert inner["level"] == "inner"
    assert "Outer" not in inner
    assert outer["Outer"] == [1, 2]
    assert "Inner" not in outer


def test_decorator_sync_flushes_at_the_end_and_on_errors():
    @metrics_scope(dimensions={"job": "nightly"})
    def job(fail: bool) -> str:
        put_metric("Rows", 10)
        if fail:
            raise RuntimeError("boom")
        return "done"

    with capture_metrics() as docs:
        assert job(False) == "done"
        with pytest.raises(RuntimeError):
            job(True)
    assert [(doc["Rows"], doc["job"]) for doc in docs] == [(10, "nightly"), (10, "nightly")]


async def test_decorator_async_and_concurrent_tasks_do_not_share_state():
    @metrics_scope()
    async def handle(n: int) -> None:
        add_dimension("task", str(n))
        for _ in range(5):
            put_metric("Work", n)
            await asyncio.sleep(0)

    with capture_metrics() as docs:
        for _ in range(3):
            await asyncio.gather(*(handle(n) for n in range(40)))
    assert len(docs) == 120
    for doc in docs:
        validate_document(doc)
        assert doc["Work"] == [int(doc["task"])] * 5


def test_threads_do_not_share_state():
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        with metrics_scope(dimensions={"thread": str(n)}):
            for _ in range(50):
                put_metric("Work", n)

    with capture_metrics() as docs:
        for _ in range(3):
            threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    assert len(docs) == 24
    for doc in docs:
        assert doc["Work"] == [int(doc["thread"])] * 50


def test_stdout_sink_writes_one_json_line(capsys):
    configure_metrics("Test/App", service="orders")
    with metrics_scope():
        put_metric("A", 1)
    out = capsys.readouterr().out
    assert out.endswith("\n")
    assert out.count("\n") == 1
    validate_document(json.loads(out))


def test_custom_sink():
    received = []
    configure_metrics("Test/App", sink=received.append)
    with metrics_scope():
        put_metric("A", 1)
    assert received[0]["A"] == 1
    assert directive(received[0])["Dimensions"] == [[]]


def _doc(**overrides):
    doc = {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {
                    "Namespace": "N",
                    "Dimensions": [["d"]],
                    "Metrics": [{"Name": "m", "Unit": "Count"}],
                }
            ],
        },
        "d": "x",
        "m": 1,
    }
    doc.update(overrides)
    return doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("_aws"), "_aws object"),
        (lambda d: d["_aws"].update(Timestamp="now"), "Timestamp"),
        (lambda d: d["_aws"].update(CloudWatchMetrics=[]), "non-empty"),
        (lambda d: d.update(m=[1] * 101), "101 values"),
        (lambda d: d.update(m="1"), "finite number"),
        (lambda d: d.pop("d"), "no string value"),
        (
            lambda d: d["_aws"]["CloudWatchMetrics"][0].update(
                Dimensions=[[f"k{i}" for i in range(31)]]
            ),
            "31 keys",
        ),
        (
            lambda d: d["_aws"]["CloudWatchMetrics"][0].update(
                Metrics=[{"Name": f"m{i}"} for i in range(101)]
            ),
            "101 metrics",
        ),
        (
            lambda d: d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(StorageResolution=30),
            "StorageResolution",
        ),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="Hz"), "unit"),
    ],
)
def test_validate_document_rejects_broken_documents(mutate, message):
    doc = _doc()
    validate_document(doc)
    mutate(doc)
    with pytest.raises(MetricsError, match=message):
        validate_document(doc)


def test_put_metrics_by_adds_dimensions_in_a_document_of_its_own():
    """A per-host breakdown: the scope's namespace and dimensions plus the extra ones, in a
    separate document, leaving the scope's own set untouched; nothing outside a scope."""
    with capture_metrics() as docs:
        put_metrics_by({"host": "a"}, {"HttpAttempts": (1, MetricUnit.COUNT)})
        with metrics_scope("Payments", dimensions={"route": "/pay"}):
            put_metric("Requests", 1)
            put_metrics_by(
                {"host": "a"},
                {"HttpAttempts": (2, MetricUnit.COUNT), "HttpLatency": (3.5, "Milliseconds")},
            )
    assert len(docs) == 2
    per_host, scope = docs
    directive = per_host["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Payments"
    assert directive["Dimensions"][0][-2:] == ["route", "host"]
    assert (per_host["HttpAttempts"], per_host["HttpLatency"]) == (2, 3.5)
    assert "Requests" not in per_host
    assert scope["Requests"] == 1
    assert "host" not in scope
