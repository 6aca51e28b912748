# Copyright 2026 stalwart contributors
"""The engine x {sync, async} matrix.

Every conformance test is written once, as ``async def``, against :class:`Facade`. In ``sync``
mode the facade runs the sync store's methods on a pool of real threads (so concurrency tests use
threads); in ``async`` mode it awaits the async store (so concurrency tests use tasks).
Test ids name the engine and the mode, e.g. ``test_create[redis-async]``; the Redis engine
runs twice, on the store's own transport (``redis-*``) and on redis-py (``redispy-*``).

Time: every store is opened with a :class:`ManualClock` through
``open_store(url, clock=...)``, i.e. each engine's ``store_from_url(url, *, clock=...)``. The
clock starts at the real time and stands still until a test moves it (``clock.advance(s)``) or
lets it follow the wall clock again (``clock.thaw()``), so expiry is tested without sleeping and
an engine's physical TTL (Redis PEXPIREAT, DynamoDB TTL) never decides the outcome.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from stalwart.storage import (
    AsyncStore,
    Clock,
    Key,
    Operation,
    Page,
    Record,
    Store,
    open_async_store,
    open_store,
)

# The same matrix as tests/conftest.py. It cannot be imported from there: pytest registers this
# file as module ``conftest`` too, so ``from conftest import ...`` would import this file itself.
ENGINES = ("sqlite", "redis", "dynamodb", "mongodb")
MODES = ("sync", "async")
# The rows of the matrix: each engine, and the Redis engine a second time with redis-py
# carrying its commands (``?transport=redis-py``) instead of the store's own transport. A row
# id names the URL kind ``store_url_factory`` makes; ``Facade.engine`` stays the engine.
ROWS = {
    "sqlite": "sqlite",
    "redis": "redis",
    "redispy": "redis",
    "dynamodb": "dynamodb",
    "mongodb": "mongodb",
}
type UrlFactory = Callable[[], str]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence


class ManualClock:
    """A controllable epoch-seconds clock, frozen at the real time when created."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen_at: float | None = time.time()
        self._offset = 0.0

    def __call__(self) -> float:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds

    def thaw(self) -> None:
        """Follow the wall clock from now on (keeping any offset already applied)."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - time.time()
                self._frozen_at = None


class Facade:
    """An async view of a sync or async store, so each test is written once."""

    def __init__(
        self, row: str, mode: str, url: str, pool: ThreadPoolExecutor, clock: Clock | None = None
    ) -> None:
        self.row = row
        """The matrix row, e.g. ``redispy`` (the Redis engine on redis-py)."""
        self.engine = ROWS[row]
        self.mode = mode
        self.url = url
        self._pool = pool
        self._sync: Store | None = None
        self._async: AsyncStore | None = None
        if mode == "sync":
            self._sync = open_store(url, clock=clock)
        else:
            self._async = open_async_store(url, clock=clock)

    @property
    def raw(self) -> Store | AsyncStore:
        store = self._sync if self._sync is not None else self._async
        assert store is not None
        return store

    @property
    def max_transaction_items(self) -> int:
        return self.raw.max_transaction_items

    @property
    def max_item_bytes(self) -> int:
        return self.raw.max_item_bytes

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
    params=[(row, mode) for row in ROWS for mode in MODES],
    ids=[f"{row}-{mode}" for row in ROWS for mode in MODES],
)
def engine_mode(request: pytest.FixtureRequest) -> tuple[str, str]:
    """``(row, mode)``: a row of :data:`ROWS` (an engine, or ``redispy``) and sync/async."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> ManualClock:
    """The clock every store of the test is opened with."""
    return ManualClock()


@pytest.fixture
async def store(
    engine_mode: tuple[str, str],
    store_url_factory: Callable[[str], UrlFactory],
    thread_pool: ThreadPoolExecutor,
    clock: ManualClock,
) -> AsyncIterator[Facade]:
    """A fresh, empty store of one engine in one mode, on the test's :class:`ManualClock`."""
    row, mode = engine_mode
    facade = Facade(row, mode, store_url_factory(row)(), thread_pool, clock)
    try:
        yield facade
    finally:
        await facade.close()


@pytest.fixture
def open_facade(
    engine_mode: tuple[str, str],
    store_url_factory: Callable[[str], UrlFactory],
    thread_pool: ThreadPoolExecutor,
    clock: ManualClock,
) -> Callable[[str], Facade]:
    """Open another facade on a given URL (e.g. a second client on the same table).

    The caller closes it.
    """
    row, mode = engine_mode
    del store_url_factory

    def make(url: str) -> Facade:
        return Facade(row, mode, url, thread_pool, clock)

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/conformance/" in str(item.path):
            item.add_marker(pytest.mark.conformance)
