"""The storage contract on MongoDB (extra ``mongodb``): :class:`MongoStore` and
:class:`AsyncMongoStore`.

One document per record, keyed ``_id = {p: partition, s: sort}``; a single-record operation
is one ``find_one_and_update`` / ``find_one_and_delete`` / ``find`` whose pipeline update or
filter decides the condition server-side (one documented exception: a versioned delete that
misses reads ``current``; see ``docs/storage/mongodb.md``). The logic lives in
:mod:`stalwart.storage._mongodb_plan` (:class:`MongoEngine`, plans of commands); the two
executors below only run them, with ``pymongo.MongoClient`` or ``pymongo.AsyncMongoClient``, and
the two store classes are the shared :class:`EngineStore` / :class:`AsyncEngineStore` over them.

The plans follow MongoDB's semantics. Against secantusdb, the emulator the test suite uses,
create and increment take workarounds that cost a second round trip in a race or on a
counter's first increment; the server is detected once per client (``buildInfo``, on the first
create, increment or transact) unless the store is told (``server=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Final
from weakref import WeakKeyDictionary

from stalwart._extras import require_extra

require_extra("pymongo", "mongodb", feature="stalwart.storage.mongodb")

from pymongo import AsyncMongoClient, MongoClient  # noqa: E402
from pymongo.asynchronous.client_session import AsyncClientSession  # noqa: E402
from pymongo.asynchronous.collection import AsyncCollection  # noqa: E402
from pymongo.collection import Collection  # noqa: E402
from pymongo.errors import PyMongoError  # noqa: E402
from pymongo.synchronous.client_session import ClientSession  # noqa: E402

from stalwart.storage._contract import Clock, wall_clock  # noqa: E402
from stalwart.storage._engine import AsyncEngineStore, EngineStore, drive, drive_async  # noqa: E402
from stalwart.storage._mongodb_plan import (  # noqa: E402
    DEFAULT_MAX_ITEM_BYTES,
    ENGINE_ERRORS,
    INDEXES,
    AbortTransaction,
    Command,
    CommitTransaction,
    DeleteOne,
    DetectServer,
    Doc,
    FindMany,
    FindOne,
    InsertOne,
    MongoEngine,
    Plan,
    Server,
    ServerChoice,
    Settings,
    Sleep,
    StartTransaction,
    UpdateOne,
    check_max_item_bytes,
    check_server,
    server_from_build_info,
    translate_error,
)
from stalwart.storage._mongodb_url import parse_url  # noqa: E402

_DETECTED: Final[WeakKeyDictionary[MongoClient[Doc] | AsyncMongoClient[Doc], Server]] = (
    WeakKeyDictionary()
)
"""Each client's server, from one ``buildInfo`` on its first :class:`DetectServer`."""


def ensure_indexes(collection: Collection[Doc]) -> None:
    """Create the query index and the TTL index (idempotent; run once per collection).

    >>> ensure_indexes(MongoClient("mongodb://localhost:27017").app.records)  # doctest: +SKIP
    """
    collection.create_indexes(list(INDEXES))


async def async_ensure_indexes(collection: AsyncCollection[Doc]) -> None:
    """Async twin of :func:`ensure_indexes`.

    >>> await async_ensure_indexes(AsyncMongoClient().app.records)  # doctest: +SKIP
    """
    await collection.create_indexes(list(INDEXES))


class _Executor:
    """Runs MongoDB plans with pymongo's ``MongoClient``: a session per plan that starts a
    transaction, the server answered from the per-client cache."""

    def __init__(self, collection: Collection[Doc], server: Server | None) -> None:
        self.collection = collection
        self.server = server
        self.owned_client: MongoClient[Doc] | None = None

    def run[T](self, plan: Plan[T]) -> T:
        session: ClientSession | None = None

        def perform(command: Command) -> Any:
            nonlocal session
            if not isinstance(command, StartTransaction):
                return self._execute(command, session)
            if session is None:
                session = self.collection.database.client.start_session()
            return session.start_transaction()

        try:
            return drive(plan, perform, ENGINE_ERRORS, translate_error)
        finally:
            if session is not None:
                with contextlib.suppress(PyMongoError):
                    session.end_session()

    def close(self) -> None:
        if self.owned_client is not None:
            self.owned_client.close()

    def _detect_server(self) -> Server:
        if self.server is None:
            client = self.collection.database.client
            self.server = _DETECTED.get(client)
            if self.server is None:
                reply = client.admin.command("buildInfo")
                self.server = _DETECTED[client] = server_from_build_info(reply)
        return self.server

    def _execute(self, command: Command, session: ClientSession | None) -> Any:  # noqa: C901, PLR0911 - one case per command kind
        collection = self.collection
        match command:
            case DetectServer():
                return self._detect_server()
            case UpdateOne():
                return collection.find_one_and_update(
                    command.filter,
                    command.pipeline,
                    upsert=command.upsert,
                    return_document=command.return_after,
                    session=session,
                )
            case FindOne():
                return collection.find_one(command.filter, session=session)
            case InsertOne():
                return collection.insert_one(command.document, session=session)
            case DeleteOne():
                return collection.find_one_and_delete(command.filter, session=session)
            case FindMany():
                return list(
                    collection.find(
                        command.filter,
                        sort=[(command.sort_field, command.direction)],
                        limit=command.limit,
                        batch_size=command.limit,
                        session=session,
                    )
                )
            case CommitTransaction():
                assert session is not None
                return session.commit_transaction()
            case AbortTransaction():
                assert session is not None
                return session.abort_transaction()
            case Sleep():
                return time.sleep(command.seconds)
            case StartTransaction():
                raise AssertionError("handled by run")


class _AsyncExecutor:
    """The async twin of :class:`_Executor`, on ``AsyncMongoClient`` (no threads); it also
    creates the indexes a ``create=true`` URL asked for, before the first command."""

    def __init__(self, collection: AsyncCollection[Doc], server: Server | None) -> None:
        self.collection = collection
        self.server = server
        self.owned_client: AsyncMongoClient[Doc] | None = None
        self.indexes_pending = False
        self._indexes_lock = asyncio.Lock()

    async def run[T](self, plan: Plan[T]) -> T:
        session: AsyncClientSession | None = None

        async def perform(command: Command) -> Any:
            nonlocal session
            if self.indexes_pending:
                await self._ensure_indexes_once()
            if not isinstance(command, StartTransaction):
                return await self._execute(command, session)
            if session is None:
                session = self.collection.database.client.start_session()
            return await session.start_transaction()

        try:
            return await drive_async(plan, perform, ENGINE_ERRORS, translate_error)
        finally:
            if session is not None:
                with contextlib.suppress(PyMongoError):
                    await session.end_session()

    async def close(self) -> None:
        if self.owned_client is not None:
            await self.owned_client.close()

    async def _ensure_indexes_once(self) -> None:
        # async_store_from_url cannot await, so create=true indexes are made on first use.
        async with self._indexes_lock:
            if self.indexes_pending:
                await async_ensure_indexes(self.collection)
                self.indexes_pending = False

    async def _detect_server(self) -> Server:
        if self.server is None:
            client = self.collection.database.client
            self.server = _DETECTED.get(client)
            if self.server is None:
                reply = await client.admin.command("buildInfo")
                self.server = _DETECTED[client] = server_from_build_info(reply)
        return self.server

    async def _execute(  # noqa: C901, PLR0911 - one case per command kind
        self, command: Command, session: AsyncClientSession | None
    ) -> Any:
        collection = self.collection
        match command:
            case DetectServer():
                return await self._detect_server()
            case UpdateOne():
                return await collection.find_one_and_update(
                    command.filter,
                    command.pipeline,
                    upsert=command.upsert,
                    return_document=command.return_after,
                    session=session,
                )
            case FindOne():
                return await collection.find_one(command.filter, session=session)
            case InsertOne():
                return await collection.insert_one(command.document, session=session)
            case DeleteOne():
                return await collection.find_one_and_delete(command.filter, session=session)
            case FindMany():
                cursor = collection.find(
                    command.filter,
                    sort=[(command.sort_field, command.direction)],
                    limit=command.limit,
                    batch_size=command.limit,
                    session=session,
                )
                return await cursor.to_list()
            case CommitTransaction():
                assert session is not None
                return await session.commit_transaction()
            case AbortTransaction():
                assert session is not None
                return await session.abort_transaction()
            case Sleep():
                return await asyncio.sleep(command.seconds)
            case StartTransaction():
                raise AssertionError("handled by run")


def _engine(clock: Clock, max_item_bytes: int) -> MongoEngine:
    return MongoEngine(Settings(clock, check_max_item_bytes(max_item_bytes)))


def _told_server(server: ServerChoice) -> Server | None:
    """The server a store was told, or ``None`` to detect it."""
    choice = check_server(server)
    return None if choice == "auto" else choice


class MongoStore(EngineStore[Command]):
    """A synchronous :class:`~stalwart.storage.Store` on one MongoDB collection.

    Pass a ``pymongo`` collection you own (this store never closes its client), or use
    :func:`store_from_url`. Transactions need a replica set (or sharded cluster).
    ``server`` is ``"auto"`` (detect MongoDB or secantusdb once per client), ``"mongodb"`` or
    ``"secantusdb"`` (skip the detection).

    >>> store = MongoStore(MongoClient("mongodb://localhost:27017").app.records)  # doctest: +SKIP
    >>> store.create(Key("acct-1", "balance"), {"cents": 0}).version  # doctest: +SKIP
    1
    """

    def __init__(
        self,
        collection: Collection[Doc],
        *,
        clock: Clock = wall_clock,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        server: ServerChoice = "auto",
    ) -> None:
        engine = _engine(clock, max_item_bytes)
        self._mongo = _Executor(collection, _told_server(server))
        super().__init__(engine, self._mongo, clock)

    @property
    def collection(self) -> Collection[Doc]:
        """The pymongo collection this store works on."""
        return self._mongo.collection


class AsyncMongoStore(AsyncEngineStore[Command]):
    """An asynchronous :class:`~stalwart.storage.AsyncStore` on one MongoDB collection, on
    ``pymongo.AsyncMongoClient`` (pymongo's native asyncio driver; no threads).

    >>> store = AsyncMongoStore(AsyncMongoClient().app.records)  # doctest: +SKIP
    >>> (await store.create(Key("acct-1", "balance"), {"cents": 0})).version  # doctest: +SKIP
    1
    """

    def __init__(
        self,
        collection: AsyncCollection[Doc],
        *,
        clock: Clock = wall_clock,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        server: ServerChoice = "auto",
    ) -> None:
        engine = _engine(clock, max_item_bytes)
        self._mongo = _AsyncExecutor(collection, _told_server(server))
        super().__init__(engine, self._mongo, clock)

    @property
    def collection(self) -> AsyncCollection[Doc]:
        """The pymongo async collection this store works on."""
        return self._mongo.collection


def store_from_url(url: str, *, clock: Clock = wall_clock) -> MongoStore:
    """Open a :class:`MongoStore` from ``mongodb://host:port/db?collection=name``.

    The client gets explicit timeouts (5 s server selection and connect, 10 s socket and
    operation; ``timeout=<s>`` or pymongo's own options override them); ``create=true``
    creates the indexes. The store owns the client: :meth:`MongoStore.close` closes it.

    >>> store = store_from_url("mongodb://localhost:27017/app?collection=records")  # doctest: +SKIP
    """
    parsed = parse_url(url)
    client: MongoClient[Doc] = MongoClient(parsed.client_url, **parsed.client_options)
    collection = client[parsed.database][parsed.collection]
    store = MongoStore(
        collection, clock=clock, max_item_bytes=parsed.max_item_bytes, server=parsed.server
    )
    store._mongo.owned_client = client  # noqa: SLF001 - the factory hands ownership to the store
    if parsed.create:
        try:
            ensure_indexes(collection)
        except ENGINE_ERRORS as exc:
            client.close()
            raise translate_error(exc) from exc
    return store


def async_store_from_url(url: str, *, clock: Clock = wall_clock) -> AsyncMongoStore:
    """Open an :class:`AsyncMongoStore` from a URL (same forms as :func:`store_from_url`).

    No I/O happens here: the client connects lazily, and ``create=true`` indexes are created
    by the first operation.

    >>> store = async_store_from_url("mongodb://localhost/app?collection=r")  # doctest: +SKIP
    """
    parsed = parse_url(url)
    client: AsyncMongoClient[Doc] = AsyncMongoClient(parsed.client_url, **parsed.client_options)
    collection = client[parsed.database][parsed.collection]
    store = AsyncMongoStore(
        collection, clock=clock, max_item_bytes=parsed.max_item_bytes, server=parsed.server
    )
    store._mongo.owned_client = client  # noqa: SLF001 - the factory hands ownership to the store
    store._mongo.indexes_pending = parsed.create  # noqa: SLF001 - same module
    return store


__all__ = [
    "AsyncMongoStore",
    "MongoStore",
    "async_ensure_indexes",
    "async_store_from_url",
    "ensure_indexes",
    "store_from_url",
]
