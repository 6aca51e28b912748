"""One base for the API's store wrappers (tracing, the deadline and breaker): each store
call goes through :meth:`AsyncStoreWrapper.around`, which a wrapper overrides once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from stalwart.storage import AsyncStore, JSONObject, Key, Operation, Page, Record


class AsyncStoreWrapper:
    """An :class:`~stalwart.storage.AsyncStore` that delegates every call to ``store``
    through :meth:`around`."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store

    async def around[T](
        self,
        operation: str,  # noqa: ARG002 - for the overrides (span names, error messages)
        call: Callable[[], Awaitable[T]],
        batch_size: int | None = None,  # noqa: ARG002 - for the overrides (span attributes)
    ) -> T:
        """Run ``call`` (the store's ``operation``; ``batch_size``: a transaction's items)."""
        return await call()

    @property
    def max_transaction_items(self) -> int:
        return self.store.max_transaction_items

    @property
    def max_item_bytes(self) -> int:
        return self.store.max_item_bytes

    async def get(self, key: Key) -> Record | None:
        return await self.around("get", lambda: self.store.get(key))

    async def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        return await self.around("create", lambda: self.store.create(key, data, ttl=ttl))

    async def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        return await self.around(
            "replace",
            lambda: self.store.replace(key, data, expected_version=expected_version, ttl=ttl),
        )

    async def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        return await self.around(
            "delete", lambda: self.store.delete(key, expected_version=expected_version)
        )

    async def increment(
        self, key: Key, field: str, by: float = 1, *, ttl: float | None = None
    ) -> Record:
        return await self.around("increment", lambda: self.store.increment(key, field, by, ttl=ttl))

    async def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        return await self.around(
            "query",
            lambda: self.store.query(
                partition, prefix=prefix, limit=limit, cursor=cursor, descending=descending
            ),
        )

    async def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        return await self.around(
            "transact", lambda: self.store.transact(operations), len(operations)
        )

    async def close(self) -> None:
        await self.store.close()
