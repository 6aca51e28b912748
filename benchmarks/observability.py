"""ns per JSON log line and per EMF metric: stalwart vs stdlib JSON logging vs Powertools.

All loggers write to os.devnull, all metric documents are serialised and written to
os.devnull, so the numbers measure the libraries, not the terminal. Each candidate runs
ROUNDS times interleaved with the others; the median round is reported. The last line is one
JSON object (see the keys at the bottom).

    uv run python benchmarks/observability.py
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aws_lambda_powertools import Logger as PowertoolsLogger
from aws_lambda_powertools import Metrics as PowertoolsMetrics
from aws_lambda_powertools.metrics import MetricUnit as PowertoolsUnit

from stalwart.observability import (
    MetricUnit,
    add_dimension,
    configure_logging,
    configure_metrics,
    get_logger,
    metrics_scope,
    put_metric,
    request_context,
)

LOG_LINES = 5_000
METRIC_REQUESTS = 500
METRICS_PER_REQUEST = 10
ROUNDS = 15

devnull = Path(os.devnull).open("w")  # noqa: SIM115 - lives for the whole run


class StdlibJsonFormatter(logging.Formatter):
    """The floor: a hand-written JSON formatter on plain stdlib logging."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "timestamp": self.formatTime(record),
                "level": record.levelname,
                "message": record.getMessage(),
                "logger": record.name,
                "correlation_id": getattr(record, "correlation_id", None),
                "order_id": getattr(record, "order_id", None),
                "amount": getattr(record, "amount", None),
            }
        )


def make_stdlib() -> Callable[[], None]:
    logger = logging.getLogger("bench.stdlib")
    handler = logging.StreamHandler(devnull)
    handler.setFormatter(StdlibJsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    extra = {"correlation_id": "req-1", "order_id": 42, "amount": 9.99}
    return lambda: logger.info("order placed", extra=extra)


def make_powertools() -> Callable[[], None]:
    logger = PowertoolsLogger(
        service="bench", logger_handler=logging.StreamHandler(devnull), level="INFO"
    )
    logger.append_keys(correlation_id="req-1")
    # Isolate it: propagating would also run stalwart's root handler and bill Powertools for it.
    logging.getLogger(logger.name).propagate = False
    extra = {"order_id": 42, "amount": 9.99}
    return lambda: logger.info("order placed", extra=extra)


def make_stalwart() -> Callable[[], None]:
    configure_logging("bench", stream=devnull)
    # Not under "bench": that is Powertools' logger, and its handler would see our lines too.
    log = get_logger("stalwart_bench")
    return lambda: log.info("order placed", order_id=42, amount=9.99)


def time_log(emit: Callable[[], None], *, in_request: bool) -> float:
    ctx = request_context("req-1") if in_request else contextlib.nullcontext()
    with ctx:
        start = time.perf_counter_ns()
        for _ in range(LOG_LINES):
            emit()
        return (time.perf_counter_ns() - start) / LOG_LINES


def stalwart_request() -> None:
    with metrics_scope():
        add_dimension("route", "/orders")
        for i in range(METRICS_PER_REQUEST):
            put_metric(f"Metric{i}", i, MetricUnit.MILLISECONDS)


def make_powertools_request() -> Callable[[], None]:
    metrics = PowertoolsMetrics(namespace="Bench", service="bench")

    def request() -> None:
        metrics.add_dimension(name="route", value="/orders")
        for i in range(METRICS_PER_REQUEST):
            metrics.add_metric(name=f"Metric{i}", unit=PowertoolsUnit.Milliseconds, value=i)
        metrics.flush_metrics()

    return request


def time_metrics(request: Callable[[], None]) -> float:
    # Both libraries print EMF documents to stdout: send it to devnull for the measurement.
    with contextlib.redirect_stdout(devnull):
        start = time.perf_counter_ns()
        for _ in range(METRIC_REQUESTS):
            request()
        elapsed = time.perf_counter_ns() - start
    return elapsed / (METRIC_REQUESTS * METRICS_PER_REQUEST)


def main() -> None:
    stdlib, powertools, stalwart = make_stdlib(), make_powertools(), make_stalwart()
    configure_metrics("Bench", service="bench")
    powertools_request = make_powertools_request()
    for warm in (stdlib, powertools, stalwart):
        for _ in range(1000):
            warm()
    with contextlib.redirect_stdout(devnull):
        stalwart_request()
        powertools_request()

    samples: dict[str, list[float]] = {
        "stalwart_log_ns": [],
        "stdlib_json_log_ns": [],
        "powertools_log_ns": [],
        "stalwart_metric_ns": [],
        "powertools_metric_ns": [],
    }
    for _ in range(ROUNDS):
        samples["stdlib_json_log_ns"].append(time_log(stdlib, in_request=False))
        samples["powertools_log_ns"].append(time_log(powertools, in_request=False))
        samples["stalwart_log_ns"].append(time_log(stalwart, in_request=True))
        samples["powertools_metric_ns"].append(time_metrics(powertools_request))
        samples["stalwart_metric_ns"].append(time_metrics(stalwart_request))

    result = {key: round(statistics.median(values)) for key, values in samples.items()}
    print(f"python {sys.version.split()[0]}, {ROUNDS} rounds, median")
    print(
        f"log line  (ns): stalwart {result['stalwart_log_ns']:>7}  "
        f"stdlib-json {result['stdlib_json_log_ns']:>7}  "
        f"powertools {result['powertools_log_ns']:>7}"
    )
    print(
        f"metric    (ns): stalwart {result['stalwart_metric_ns']:>7}  "
        f"powertools {result['powertools_metric_ns']:>7}  "
        f"({METRICS_PER_REQUEST} metrics + 1 dimension + flush per request)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
