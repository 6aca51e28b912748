"""OpenTelemetry SDK set-up: provider, sampler, exporter, X-Ray ids and instrumentations.

Everything here needs the ``otel`` extra; imports happen inside the functions so importing
``stalwart.observability`` never requires OpenTelemetry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from stalwart._extras import require_extra

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter


class TraceExporter(StrEnum):
    """Where spans go: an OTLP/HTTP collector, the console, or nowhere."""

    OTLP = "otlp"
    CONSOLE = "console"
    NONE = "none"


# name -> (module, instrumentor class); looked up lazily, skipped when not installed.
INSTRUMENTATIONS: Final[Mapping[str, tuple[str, str]]] = {
    "fastapi": ("opentelemetry.instrumentation.fastapi", "FastAPIInstrumentor"),
    "flask": ("opentelemetry.instrumentation.flask", "FlaskInstrumentor"),
    "httpx": ("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    "botocore": ("opentelemetry.instrumentation.botocore", "BotocoreInstrumentor"),
    "redis": ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
    "pymongo": ("opentelemetry.instrumentation.pymongo", "PymongoInstrumentor"),
}


@dataclass(frozen=True, slots=True)
class Tracing:
    """What :func:`configure_tracing` set up; hand it to :func:`shutdown_tracing` at exit."""

    provider: TracerProvider
    instrumented: tuple[str, ...]
    skipped: Mapping[str, str]


def _exporter(
    exporter: TraceExporter | str | SpanExporter, endpoint: str | None, timeout_s: float
) -> SpanExporter | None:
    if not isinstance(exporter, str):
        return exporter
    kind = TraceExporter(exporter)
    if kind is TraceExporter.NONE:
        return None
    if kind is TraceExporter.CONSOLE:
        export = require_extra("opentelemetry.sdk.trace.export", "otel", feature="tracing")
        console: SpanExporter = export.ConsoleSpanExporter()
        return console
    otlp = require_extra(
        "opentelemetry.exporter.otlp.proto.http.trace_exporter", "otel", feature="OTLP export"
    )
    exporter_obj: SpanExporter = otlp.OTLPSpanExporter(endpoint=endpoint, timeout=timeout_s)
    return exporter_obj


def _instrument(
    names: Iterable[str], provider: TracerProvider
) -> tuple[tuple[str, ...], dict[str, str]]:
    dependencies = require_extra(
        "opentelemetry.instrumentation.dependencies", "otel", feature="instrumentation"
    )
    done: list[str] = []
    skipped: dict[str, str] = {}
    for name in names:
        if name not in INSTRUMENTATIONS:
            raise ValueError(f"unknown instrumentation {name!r}; known: {sorted(INSTRUMENTATIONS)}")
        module_name, class_name = INSTRUMENTATIONS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            skipped[name] = f"{module_name.replace('.', '-').replace('_', '-')} is not installed"
            continue
        instrumentor = getattr(module, class_name)()
        if instrumentor.is_instrumented_by_opentelemetry:
            done.append(name)
            continue
        try:
            instrumentor.instrument(tracer_provider=provider, raise_exception_on_conflict=True)
        except dependencies.DependencyConflictError as exc:
            # The instrumentation is installed but the library it instruments is not (or is
            # an unsupported version): nothing to instrument, not an error.
            skipped[name] = str(exc)
            continue
        done.append(name)
    return tuple(done), skipped


def configure_tracing(
    service_name: str,
    *,
    exporter: TraceExporter | str | SpanExporter = TraceExporter.OTLP,
    endpoint: str | None = None,
    sample_ratio: float = 1.0,
    xray: bool = False,
    instrument: Iterable[str] | bool = True,
    set_global: bool = True,
    batch: bool = True,
    export_timeout_s: float = 10.0,
    resource_attributes: Mapping[str, str] | None = None,
) -> Tracing:
    """Set up the OpenTelemetry SDK and turn on the instrumentations that are installed.

    ``exporter`` is ``"otlp"`` (OTLP/HTTP; ``endpoint`` or the ``OTEL_EXPORTER_OTLP_*``
    variables), ``"console"``, ``"none"``, or any ``SpanExporter`` (e.g. an in-memory one in
    tests). Sampling is parent-based with ``sample_ratio`` for root spans. ``xray=True`` makes
    X-Ray-compatible trace ids and adds the X-Ray propagator to W3C trace context.
    ``instrument`` is True (every known instrumentation present), False, or names from
    :data:`INSTRUMENTATIONS`. OpenTelemetry accepts one global provider per process: call this
    once at start-up (tests can pass ``set_global=False`` and use ``Tracing.provider``).

    >>> setup = configure_tracing("orders", exporter="none", instrument=False, set_global=False)
    >>> setup.provider.resource.attributes["service.name"]
    'orders'
    """
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be within [0, 1], got {sample_ratio}")
    sdk_trace = require_extra("opentelemetry.sdk.trace", "otel", feature="tracing")
    export = require_extra("opentelemetry.sdk.trace.export", "otel", feature="tracing")
    sampling = require_extra("opentelemetry.sdk.trace.sampling", "otel", feature="tracing")
    resources = require_extra("opentelemetry.sdk.resources", "otel", feature="tracing")
    trace_api = require_extra("opentelemetry.trace", "otel", feature="tracing")

    options: dict[str, Any] = {
        "resource": resources.Resource.create(
            {"service.name": service_name, **(resource_attributes or {})}
        ),
        "sampler": sampling.ParentBased(sampling.TraceIdRatioBased(sample_ratio)),
    }
    if xray:
        aws_trace = require_extra(
            "opentelemetry.sdk.extension.aws.trace", "otel", feature="X-Ray trace ids"
        )
        options["id_generator"] = aws_trace.AwsXRayIdGenerator()
    provider: TracerProvider = sdk_trace.TracerProvider(**options)
    span_exporter = _exporter(exporter, endpoint, export_timeout_s)
    if span_exporter is not None:
        processor_cls = export.BatchSpanProcessor if batch else export.SimpleSpanProcessor
        provider.add_span_processor(processor_cls(span_exporter))
    if set_global:
        trace_api.set_tracer_provider(provider)
        if xray:
            _install_xray_propagator()
    names = INSTRUMENTATIONS.keys() if instrument is True else (instrument or ())
    instrumented, skipped = _instrument(names, provider)
    return Tracing(provider, instrumented, skipped)


def _install_xray_propagator() -> None:
    propagate = require_extra("opentelemetry.propagate", "otel", feature="propagation")
    composite = require_extra("opentelemetry.propagators.composite", "otel", feature="propagation")
    tracecontext = require_extra(
        "opentelemetry.trace.propagation.tracecontext", "otel", feature="propagation"
    )
    baggage = require_extra("opentelemetry.baggage.propagation", "otel", feature="propagation")
    aws = require_extra("opentelemetry.propagators.aws", "otel", feature="X-Ray propagation")
    propagate.set_global_textmap(
        composite.CompositePropagator(
            [
                tracecontext.TraceContextTextMapPropagator(),
                baggage.W3CBaggagePropagator(),
                aws.AwsXRayPropagator(),
            ]
        )
    )


def shutdown_tracing(tracing: Tracing) -> None:
    """Undo the instrumentations and flush and stop the provider (call once at exit).

    >>> shutdown_tracing(configure_tracing("x", exporter="none", instrument=False,
    ...                                    set_global=False))
    """
    for name in tracing.instrumented:
        module_name, class_name = INSTRUMENTATIONS[name]
        instrumentor = getattr(importlib.import_module(module_name), class_name)()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    tracing.provider.shutdown()
