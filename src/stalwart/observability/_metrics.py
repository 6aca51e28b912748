"""CloudWatch Embedded Metric Format (EMF): metrics written as structured log documents.

Per-request state lives in a ContextVar: :func:`metrics_scope` opens a fresh metric set for a
request or job and flushes it on exit; :func:`put_metric` adds to the innermost open scope (or,
outside any scope, emits a one-metric document at once). A document holds at most 100 metrics
and 100 values per metric: reaching either limit flushes the document and starts a new one.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, overload

from stalwart.observability._errors import MetricsError

if TYPE_CHECKING:
    from types import TracebackType

MAX_METRICS: Final = 100
MAX_DIMENSIONS: Final = 30
MAX_VALUES: Final = 100
_MAX_NAME: Final = 255
_MAX_DIMENSION_VALUE: Final = 1024
_NAMESPACE = re.compile(r"^[0-9A-Za-z.\-_/#: ]{1,255}$")


class MetricUnit(StrEnum):
    """The units CloudWatch accepts (``Unit`` in the EMF directive)."""

    SECONDS = "Seconds"
    MICROSECONDS = "Microseconds"
    MILLISECONDS = "Milliseconds"
    BYTES = "Bytes"
    KILOBYTES = "Kilobytes"
    MEGABYTES = "Megabytes"
    GIGABYTES = "Gigabytes"
    TERABYTES = "Terabytes"
    BITS = "Bits"
    KILOBITS = "Kilobits"
    MEGABITS = "Megabits"
    GIGABITS = "Gigabits"
    TERABITS = "Terabits"
    PERCENT = "Percent"
    COUNT = "Count"
    BYTES_PER_SECOND = "Bytes/Second"
    KILOBYTES_PER_SECOND = "Kilobytes/Second"
    MEGABYTES_PER_SECOND = "Megabytes/Second"
    GIGABYTES_PER_SECOND = "Gigabytes/Second"
    TERABYTES_PER_SECOND = "Terabytes/Second"
    BITS_PER_SECOND = "Bits/Second"
    KILOBITS_PER_SECOND = "Kilobits/Second"
    MEGABITS_PER_SECOND = "Megabits/Second"
    GIGABITS_PER_SECOND = "Gigabits/Second"
    TERABITS_PER_SECOND = "Terabits/Second"
    COUNT_PER_SECOND = "Count/Second"
    NONE = "None"


class MetricResolution(IntEnum):
    """``StorageResolution``: 1 s (high resolution) or 60 s (standard)."""

    HIGH = 1
    STANDARD = 60


_UNITS: Final = {unit.value: unit for unit in MetricUnit}


class MetricsSink(Protocol):
    """Where finished EMF documents go (stdout by default)."""

    def __call__(self, document: dict[str, Any], /) -> None: ...


def stdout_sink(document: dict[str, Any], /) -> None:
    """Write ``document`` as one JSON line on stdout (read by Lambda or the CloudWatch agent).

    >>> stdout_sink({"a": 1})
    {"a":1}
    """
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Process-wide metric settings; see :func:`configure_metrics`."""

    namespace: str = "stalwart"
    dimensions: Mapping[str, str] = field(default_factory=dict)
    sink: MetricsSink = stdout_sink


_config = MetricsConfig()


def configure_metrics(
    namespace: str,
    *,
    service: str | None = None,
    dimensions: Mapping[str, str] | None = None,
    sink: MetricsSink | None = None,
) -> MetricsConfig:
    """Set the default namespace, dimensions (``service`` becomes one) and sink.

    >>> cfg = configure_metrics("Shop", service="orders")
    >>> cfg.namespace, dict(cfg.dimensions)
    ('Shop', {'service': 'orders'})
    """
    global _config  # noqa: PLW0603 - configuration is replaced whole, once, at start-up
    dims = dict(dimensions or {})
    if service is not None:
        dims = {"service": service, **dims}
    _check_namespace(namespace)
    _check_dimensions(dims)
    _config = MetricsConfig(namespace, dims, sink or stdout_sink)
    return _config


def _check_namespace(namespace: str) -> None:
    if not _NAMESPACE.match(namespace):
        raise MetricsError(
            f"namespace {namespace!r} must be 1-255 characters of letters, digits and . - _ / # :"
        )
    if namespace.startswith("AWS/"):
        raise MetricsError(f"namespace {namespace!r}: the AWS/ prefix is reserved for AWS")


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise MetricsError(f"{kind} name must be a non-empty string of <= 255 chars, got {name!r}")
    if name == "_aws":
        raise MetricsError(f"{kind} name '_aws' is reserved by EMF")
    return name


def _check_dimensions(dimensions: Mapping[str, str]) -> None:
    if len(dimensions) > MAX_DIMENSIONS:
        raise MetricsError(
            f"a dimension set holds at most {MAX_DIMENSIONS} dimensions, got {len(dimensions)}"
        )
    for name, value in dimensions.items():
        _check_name("dimension", name)
        if not isinstance(value, str) or not value or len(value) > _MAX_DIMENSION_VALUE:
            raise MetricsError(
                f"dimension {name!r} needs a non-empty string value of <= 1024 chars, got {value!r}"
            )


def _check_value(name: str, value: object) -> float | int:
    if type(value) is int or type(value) is float:
        if math.isfinite(value):
            return value
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    raise MetricsError(f"metric {name!r} needs a finite number, got {value!r}")


def _check_unit(name: str, unit: MetricUnit | str) -> MetricUnit:
    found = _UNITS.get(unit)
    if found is None:
        raise MetricsError(
            f"metric {name!r}: unit {unit!r} is not a CloudWatch unit; use one of {sorted(_UNITS)}"
        )
    return found


def _check_resolution(name: str, resolution: int) -> int:
    if resolution not in (1, 60):
        raise MetricsError(f"metric {name!r}: StorageResolution must be 1 or 60, got {resolution}")
    return int(resolution)


@dataclass(slots=True)
class _Metric:
    unit: MetricUnit
    resolution: int
    values: list[float | int]


class MetricSet:
    """The metrics, dimensions and metadata of one open scope (one request or job)."""

    __slots__ = ("config", "dimensions", "metadata", "metrics", "namespace")

    def __init__(self, config: MetricsConfig, namespace: str | None = None) -> None:
        self.config = config
        self.namespace = namespace or config.namespace
        self.dimensions: dict[str, str] = dict(config.dimensions)
        self.metadata: dict[str, Any] = {}
        self.metrics: dict[str, _Metric] = {}

    def put(self, name: str, value: float, unit: MetricUnit | str, resolution: int) -> None:
        metric = self.metrics.get(name)
        if metric is None:
            _check_name("metric", name)
            if name in self.dimensions:
                raise MetricsError(f"metric {name!r} has the name of a dimension")
            unit = _check_unit(name, unit)
            resolution = _check_resolution(name, resolution)
            value = _check_value(name, value)
            if len(self.metrics) >= MAX_METRICS:
                self.flush()
            self.metrics[name] = _Metric(unit, resolution, [value])
            return
        if metric.unit != unit or metric.resolution != resolution:
            # Resolved before the check so a str unit equal to the enum is no conflict.
            unit = _check_unit(name, unit)
            if metric.unit != unit or metric.resolution != resolution:
                raise MetricsError(
                    f"metric {name!r} was recorded as {metric.unit.value}/{metric.resolution}s "
                    f"in this document; got {unit.value}/{resolution}s"
                )
        value = _check_value(name, value)
        if len(metric.values) >= MAX_VALUES:
            self.flush()
            self.metrics[name] = _Metric(metric.unit, metric.resolution, [value])
            return
        metric.values.append(value)

    def add_dimension(self, name: str, value: str) -> None:
        merged = {**self.dimensions, name: value}
        _check_dimensions(merged)
        if name in self.metrics:
            raise MetricsError(f"dimension {name!r} has the name of a metric")
        self.dimensions = merged

    def document(self) -> dict[str, Any]:
        """The EMF document for the metrics recorded so far."""
        definitions = []
        doc: dict[str, Any] = {}
        for name, metric in self.metrics.items():
            definitions.append(
                {"Name": name, "Unit": metric.unit.value, "StorageResolution": metric.resolution}
            )
            values = metric.values
            doc[name] = values[0] if len(values) == 1 else list(values)
        head: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [list(self.dimensions)],
                        "Metrics": definitions,
                    }
                ],
            },
            **self.dimensions,
        }
        for key, value in self.metadata.items():
            if key not in head and key not in doc:
                head[key] = value
        head.update(doc)
        return head

    def flush(self) -> None:
        """Send the recorded metrics to the sink and start an empty document (same dimensions)."""
        if not self.metrics:
            return
        document = self.document()
        self.metrics = {}
        self.config.sink(document)


def current_config() -> MetricsConfig:
    """The metric settings in force (see :func:`configure_metrics`)."""
    return _config


_current: ContextVar[MetricSet | None] = ContextVar("stalwart_metric_set", default=None)


def put_metric(
    name: str,
    value: float,
    unit: MetricUnit | str = MetricUnit.COUNT,
    *,
    resolution: int = MetricResolution.STANDARD,
) -> None:
    """Record ``value`` for metric ``name`` in the current scope.

    Outside any :func:`metrics_scope` the metric is emitted at once in its own document.

    >>> with capture_metrics() as docs, metrics_scope():
    ...     put_metric("OrdersPlaced", 1)
    ...     put_metric("Latency", 12.5, MetricUnit.MILLISECONDS, resolution=1)
    >>> docs[0]["OrdersPlaced"], docs[0]["Latency"]
    (1, 12.5)
    """
    current = _current.get()
    if current is not None:
        current.put(name, value, unit, resolution)
        return
    one_off = MetricSet(_config)
    one_off.put(name, value, unit, resolution)
    one_off.flush()


def put_metrics_by(
    dimensions: Mapping[str, str], metrics: Mapping[str, tuple[float, MetricUnit | str]]
) -> None:
    """Inside a metrics scope, emit ``metrics`` at once in a document of their own, with the
    scope's namespace and dimensions plus ``dimensions``; outside any scope, do nothing.

    For a breakdown the scope's own set cannot hold (one document per remote host, say): the
    scope's dimensions are fixed for the whole request.

    >>> with capture_metrics() as docs, metrics_scope(dimensions={"route": "/pay"}):
    ...     put_metrics_by({"host": "psp.example"}, {"HttpAttempts": (2, MetricUnit.COUNT)})
    >>> docs[0]["host"], docs[0]["route"], docs[0]["HttpAttempts"]
    ('psp.example', '/pay', 2)
    >>> put_metrics_by({"host": "psp.example"}, {"HttpAttempts": (1, MetricUnit.COUNT)})
    """
    scope = _current.get()
    if scope is None:
        return
    document = MetricSet(scope.config, scope.namespace)
    for name, label in {**scope.dimensions, **dimensions}.items():
        document.add_dimension(name, label)
    for name, (value, unit) in metrics.items():
        document.put(name, value, unit, MetricResolution.STANDARD)
    document.flush()


def _require_scope(what: str) -> MetricSet:
    current = _current.get()
    if current is None:
        raise MetricsError(f"{what} needs an open metrics_scope()")
    return current


def add_dimension(name: str, value: str) -> None:
    """Add a dimension to every metric of the current scope (at most 30 per set).

    >>> with capture_metrics() as docs, metrics_scope():
    ...     add_dimension("route", "/orders")
    ...     put_metric("Requests", 1)
    >>> docs[0]["route"]
    '/orders'
    """
    _require_scope("add_dimension").add_dimension(name, value)


def add_metadata(key: str, value: Any) -> None:
    """Attach a searchable, non-metric property (e.g. a request id) to the scope's documents.

    >>> with capture_metrics() as docs, metrics_scope():
    ...     add_metadata("request_id", "r-1")
    ...     put_metric("Requests", 1)
    >>> docs[0]["request_id"]
    'r-1'
    """
    _check_name("metadata", key)
    _require_scope("add_metadata").metadata[key] = value


def flush_metrics() -> None:
    """Emit what the current scope has recorded so far (no-op outside a scope).

    >>> with capture_metrics() as docs, metrics_scope():
    ...     put_metric("Rows", 1)
    ...     flush_metrics()
    ...     put_metric("Rows", 2)
    >>> [doc["Rows"] for doc in docs]
    [1, 2]
    """
    current = _current.get()
    if current is not None:
        current.flush()


class MetricsScope:
    """A ``with`` block or decorator (sync or async) that opens a fresh metric set and flushes
    it on exit, exceptions included. Made by :func:`metrics_scope`."""

    __slots__ = ("_dimensions", "_namespace", "_tokens")

    def __init__(self, namespace: str | None, dimensions: Mapping[str, str] | None) -> None:
        if namespace is not None:
            _check_namespace(namespace)
        if dimensions:
            _check_dimensions(dimensions)
        self._namespace = namespace
        self._dimensions = dict(dimensions or {})
        self._tokens: list[Token[MetricSet | None]] = []

    def __enter__(self) -> MetricSet:
        metric_set = MetricSet(_config, self._namespace)
        for name, value in self._dimensions.items():
            metric_set.add_dimension(name, value)
        self._tokens.append(_current.set(metric_set))
        return metric_set

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        metric_set = _current.get()
        _current.reset(self._tokens.pop())
        if metric_set is not None:
            metric_set.flush()

    def _fresh(self) -> Self:
        return type(self)(self._namespace, self._dimensions)

    @overload
    def __call__[**P, R](self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__[**P, R](self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__[**P, R](self, fn: Callable[P, Any]) -> Callable[P, Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self._fresh():
                    return await fn(*args, **kwargs)

            return run_async

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return run


def metrics_scope(
    namespace: str | None = None, *, dimensions: Mapping[str, str] | None = None
) -> MetricsScope:
    """Scope metrics to one request or job; flushes on exit. Works as ``with`` or decorator.

    >>> @metrics_scope(dimensions={"job": "nightly"})
    ... def job() -> None:
    ...     put_metric("RowsLoaded", 500)
    >>> with capture_metrics() as docs:
    ...     job()
    >>> docs[0]["job"], docs[0]["RowsLoaded"]
    ('nightly', 500)
    """
    return MetricsScope(namespace, dimensions)


@contextmanager
def capture_metrics() -> Iterator[list[dict[str, Any]]]:
    """Collect every EMF document emitted in the block instead of writing it (for tests).

    The sink is swapped process-wide, so documents from other threads are captured too.

    >>> with capture_metrics() as docs:
    ...     put_metric("Hits", 3)
    >>> docs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]
    'Hits'
    """
    global _config  # noqa: PLW0603 - restored on exit
    documents: list[dict[str, Any]] = []
    previous = _config
    _config = replace(previous, sink=documents.append)
    try:
        yield documents
    finally:
        _config = previous


def validate_document(document: Mapping[str, Any]) -> None:
    """Raise :class:`MetricsError` unless ``document`` follows the EMF specification's rules.

    >>> validate_document({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N",
    ...     "Dimensions": [["d"]], "Metrics": [{"Name": "m", "Unit": "Count"}]}]},
    ...     "d": "x", "m": 1})
    """
    meta = document.get("_aws")
    if not isinstance(meta, Mapping):
        raise MetricsError("an EMF document needs an _aws object")
    if not isinstance(meta.get("Timestamp"), int):
        raise MetricsError("_aws.Timestamp must be an integer of epoch milliseconds")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        raise MetricsError("_aws.CloudWatchMetrics must be a non-empty list")
    for directive in directives:
        _validate_directive(document, directive)


def _validate_directive(document: Mapping[str, Any], directive: Mapping[str, Any]) -> None:
    _check_namespace(directive.get("Namespace", ""))
    for dimension_set in directive.get("Dimensions", []):
        if len(dimension_set) > MAX_DIMENSIONS:
            raise MetricsError(f"a dimension set has {len(dimension_set)} keys (max 30)")
        for key in dimension_set:
            if not isinstance(document.get(key), str):
                raise MetricsError(f"dimension {key!r} has no string value in the document")
    definitions = directive.get("Metrics", [])
    if len(definitions) > MAX_METRICS:
        raise MetricsError(f"a directive has {len(definitions)} metrics (max 100)")
    for definition in definitions:
        name = _check_name("metric", definition.get("Name"))
        if "Unit" in definition:
            _check_unit(name, definition["Unit"])
        _check_resolution(name, definition.get("StorageResolution", 60))
        value = document.get(name)
        values = value if isinstance(value, list) else [value]
        if len(values) > MAX_VALUES:
            raise MetricsError(f"metric {name!r} has {len(values)} values (max 100)")
        for item in values:
            _check_value(name, item)
