"""The engine × {sync, async} matrix.

Every conformance test is written once, as ``async def``, against :class:`Facade`. In ``sync``
mode the facade runs the sync store's methods on a pool of real threads (so concurrency tests use
threads); in ``async`` mode it awaits the async store (so concurrency tests use tasks).
Test ids name the engine and the mode, e.g. ``test_create[redis-async]``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conftest import ENGINES, MODES, UrlFactory
from stalwart.storage import (
    AsyncStore,
    Key,
    Operation,
    Page,
    Record,
    Store,
    open_async_store,
    open_store,
)


class Facade:
    """An async view of a sync or async store, so each test is written once."""

    def __init__(self, engine: str, mode: str, url: str, pool: ThreadPoolExecutor) -> None:
        self.engine = engine
        self.mode = mode
        self.url = url
        self._pool = pool
        self._sync: Store | None = None
        self._async: AsyncStore | None = None
        if mode == "sync":
            self._sync = open_store(url)
        else:
            self._async = open_async_store(url)

    @property
    def raw(self) -> Store | AsyncStore:
        store = self._sync if self._sync is not None else self._async
        assert store is not None
        return store

    @property
    def max_transaction_items(self) -> int:
        return self.raw.max_transaction_items

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._sync is not None:
            method = getattr(self._sync, name)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._pool, functools.partial(method, *args, **kwargs)
            )
        assert self._async is not None
        return await getattr(self._async, name)(*args, **kwargs)

    async def get(self, key: Key) -> Record | None:
        return await self._call("get", key)  # type: ignore[no-any-return]

    async def create(self, key: Key, data: dict[str, Any], *, ttl: float | None = None) -> Record:
        return await self._call("create", key, data, ttl=ttl)  # type: ignore[no-any-return]

    async def replace(
        self, key: Key, data: dict[str, Any], *, expected_version: int, ttl: float | None = None
    ) -> Record:
        return await self._call(  # type: ignore[no-any-return]
            "replace", key, data, expected_version=expected_version, ttl=ttl
        )

    async def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        return await self._call(  # type: ignore[no-any-return]
            "delete", key, expected_version=expected_version
        )

    async def increment(
        self, key: Key, field: str, by: float = 1, *, ttl: float | None = None
    ) -> Record:
        return await self._call("increment", key, field, by, ttl=ttl)  # type: ignore[no-any-return]

    async def query(self, partition: str, **kwargs: Any) -> Page:
        return await self._call("query", partition, **kwargs)  # type: ignore[no-any-return]

    async def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        return await self._call("transact", operations)  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
        if self._async is not None:
            await self._async.close()


@pytest.fixture(scope="session")
def thread_pool() -> Any:
    with ThreadPoolExecutor(max_workers=40, thread_name_prefix="conformance") as pool:
        yield pool


@pytest.fixture(
    params=[(e, m) for e in ENGINES for m in MODES],
    ids=[f"{e}-{m}" for e in ENGINES for m in MODES],
)
def engine_mode(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def store(
    engine_mode: tuple[str, str],
    store_url_factory: Callable[[str], UrlFactory],
    thread_pool: ThreadPoolExecutor,
) -> AsyncIterator[Facade]:
    """A fresh, empty store of one engine in one mode."""
    engine, mode = engine_mode
    facade = Facade(engine, mode, store_url_factory(engine)(), thread_pool)
    try:
        yield facade
    finally:
        await facade.close()


@pytest.fixture
def open_facade(
    engine_mode: tuple[str, str],
    store_url_factory: Callable[[str], UrlFactory],
    thread_pool: ThreadPoolExecutor,
) -> Callable[[str], Facade]:
    """Open another facade on a given URL (e.g. a second client on the same table)."""
    engine, mode = engine_mode
    del store_url_factory

    def make(url: str) -> Facade:
        return Facade(engine, mode, url, thread_pool)

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/conformance/" in str(item.path):
            item.add_marker(pytest.mark.conformance)
