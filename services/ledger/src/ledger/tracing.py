"""Store calls as OpenTelemetry spans, on every engine.

``stalwart.storage`` has no tracing hook, and only some engines' clients have an
instrumentation (pymongo; not stalwart's Redis transport, aiobotocore or SQLite). So when
tracing is on, the app wraps its store in :class:`TracedAsyncStore`: each call is a client
span ``store.<operation>`` (a child of the request's span), with the engine and, on failure,
the exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from ledger.store_wrapper import AsyncStoreWrapper
from stalwart.storage import AsyncStore

TRACER_NAME: Final = "ledger.store"


def engine_of(store_url: str) -> str:
    """The ``db.system.name`` of a store URL.

    >>> engine_of("rediss://cache:6380/0"), engine_of("mongodb+srv://db/ledger")
    ('redis', 'mongodb')
    """
    scheme = store_url.partition(":")[0]
    return next(
        (name for name in ("sqlite", "redis", "dynamodb", "mongodb") if scheme.startswith(name)),
        scheme,
    )


class TracedAsyncStore(AsyncStoreWrapper):
    """An :class:`~stalwart.storage.AsyncStore` whose calls are spans; delegates everything."""

    def __init__(self, store: AsyncStore, engine: str) -> None:
        super().__init__(store)
        self._tracer = trace.get_tracer(TRACER_NAME)
        self._attributes: dict[str, str | int] = {"db.system.name": engine}

    async def around[T](
        self, operation: str, call: Callable[[], Awaitable[T]], batch_size: int | None = None
    ) -> T:
        attributes: dict[str, str | int] = {**self._attributes, "db.operation.name": operation}
        if batch_size is not None:
            attributes["db.operation.batch.size"] = batch_size
        span = self._tracer.start_span(
            f"store.{operation}", kind=SpanKind.CLIENT, attributes=attributes
        )
        with trace.use_span(span, end_on_exit=True):
            return await call()
