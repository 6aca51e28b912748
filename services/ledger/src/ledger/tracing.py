"""Store calls as OpenTelemetry spans, on every engine.

``stalwart.storage`` has no tracing hook, and only some engines' clients have an
instrumentation (pymongo; not stalwart's Redis transport, aiobotocore or SQLite). So when
tracing is on, the app wraps its store in :class:`TracedAsyncStore`: each call is a client
span ``store.<operation>`` (a child of the request's span), with the engine and, on failure,
the exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from stalwart.storage import AsyncStore, JSONObject, Key, Operation, Page, Record

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


class TracedAsyncStore:
    """An :class:`~stalwart.storage.AsyncStore` whose calls are spans; delegates everything."""

    def __init__(self, store: AsyncStore, engine: str) -> None:
        self.store = store
        self._tracer = trace.get_tracer(TRACER_NAME)
        self._attributes: dict[str, str | int] = {"db.system.name": engine}

    def _span(self, operation: str, batch_size: int | None = None) -> trace.Span:
        attributes: dict[str, str | int] = {**self._attributes, "db.operation.name": operation}
        if batch_size is not None:
            attributes["db.operation.batch.size"] = batch_size
        return self._tracer.start_span(
            f"store.{operation}", kind=SpanKind.CLIENT, attributes=attributes
        )

    @property
    def max_transaction_items(self) -> int:
        return self.store.max_transaction_items

    @property
    def max_item_bytes(self) -> int:
        return self.store.max_item_bytes

    async def get(self, key: Key) -> Record | None:
        with trace.use_span(self._span("get"), end_on_exit=True):
            return await self.store.get(key)

    async def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        with trace.use_span(self._span("create"), end_on_exit=True):
            return await self.store.create(key, data, ttl=ttl)

    async def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        with trace.use_span(self._span("replace"), end_on_exit=True):
            return await self.store.replace(key, data, expected_version=expected_version, ttl=ttl)

    async def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        with trace.use_span(self._span("delete"), end_on_exit=True):
            return await self.store.delete(key, expected_version=expected_version)

    async def increment(
        self, key: Key, field: str, by: float = 1, *, ttl: float | None = None
    ) -> Record:
        with trace.use_span(self._span("increment"), end_on_exit=True):
            return await self.store.increment(key, field, by, ttl=ttl)

    async def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        with trace.use_span(self._span("query"), end_on_exit=True):
            return await self.store.query(
                partition, prefix=prefix, limit=limit, cursor=cursor, descending=descending
            )

    async def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        with trace.use_span(self._span("transact", len(operations)), end_on_exit=True):
            return await self.store.transact(operations)

    async def close(self) -> None:
        await self.store.close()
