# Copyright 2026 stalwart contributors
"""The SQLite engine's drivers: connections, the sync store and its async shell.

The SQL lives in :mod:`stalwart.storage._sqlite_sql`; this module only runs it.

- File databases use one connection per thread (sqlite3 connections are not thread-safe), WAL
  (readers never wait for the writer) and a busy timeout (other processes). A thread's
  connection is closed when the thread ends (or when the store is closed), so a server that
  runs each request on a new thread does not leak file descriptors. Writers of one
  process also queue on an in-process lock per database file, so threads hand the write lock
  over directly instead of sleeping in SQLite's busy handler.
- ``:memory:`` and a caller's connection are one shared connection behind a lock.
- :class:`AsyncSQLiteStore` runs the very same sync methods on its own worker threads, so the
  event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from stalwart.storage._contract import (
    Clock,
    InvalidRecord,
    StorageError,
    StoreConfigurationError,
    StoreUnavailable,
    wall_clock,
)
from stalwart.storage._engine import AsyncEngineStore, EngineStore, Plan, drive
from stalwart.storage._sqlite_sql import (
    Command,
    Read,
    Row,
    SQLiteEngine,
    Write,
    validate_table,
)
from stalwart.storage._url import flag, one_of, positive_number, url_options, whole_number

DEFAULT_MAX_ITEM_BYTES: Final = 400_000
"""Like DynamoDB's 400 KB item limit, so data that fits here fits on every engine."""
DEFAULT_MAX_TRANSACTION_ITEMS: Final = 100
"""DynamoDB's TransactWriteItems limit; SQLite itself has none, this keeps code portable."""
DEFAULT_TIMEOUT_S: Final = 5.0
DEFAULT_ASYNC_WORKERS: Final = 4
_SYNCHRONOUS: Final = ("off", "normal", "full", "extra")
DEFAULT_SYNCHRONOUS: Final = "normal"
"""WAL + NORMAL: no fsync per commit (~100x faster here), never corrupt; a power cut (not a
process crash) may lose the last commits. ``synchronous="full"`` fsyncs every commit."""
_MEMORY: Final = ":memory:"

type TraceCallback = Callable[[str], object]

_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _write_lock_for(path: str) -> threading.Lock:
    """One in-process write lock per database file, shared by every store on it."""
    with _file_locks_guard:
        return _file_locks.setdefault(path, threading.Lock())


# SQLite's primary result codes (the low byte of an extended code), by what they mean to a
# caller. Transient: retrying later can succeed (another writer's lock, a full disk that gets
# space back, an I/O hiccup). Configuration: the file itself is unusable as configured.
_TRANSIENT_CODES: Final = frozenset(
    {
        sqlite3.SQLITE_ABORT,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_SCHEMA,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_PROTOCOL,
    }
)
_CONFIGURATION_CODES: Final = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_AUTH,
    }
)


def _missing_directory(path: str) -> Path | None:
    directory = Path(path).absolute().parent
    return None if directory.is_dir() else directory


def _unopenable_reason(path: str) -> str | None:
    """What the file system says is wrong with ``path``, or ``None`` when nothing is (then a
    failure to open is transient, e.g. the process ran out of file descriptors)."""
    if path == _MEMORY:
        return None
    file = Path(path).absolute()
    if not file.parent.is_dir():
        return f"the directory {str(file.parent)!r} does not exist"
    if file.is_dir():
        return "it is a directory"
    if file.exists() and not os.access(file, os.R_OK | os.W_OK):
        return "the file is not readable and writable"
    # WAL keeps its -wal and -shm files beside the database.
    if not os.access(file.parent, os.W_OK | os.X_OK):
        return "its directory is not writable"
    return None


def _translate(exc: BaseException, path: str) -> StorageError:
    """Map a sqlite3 error: bad data is InvalidRecord, an unusable file a configuration error,
    a lock or a full disk StoreUnavailable (transient), anything else (a corrupt file, a table
    of another shape) a plain StorageError: permanent, so never retried."""
    message = str(exc)
    if isinstance(exc, sqlite3.DataError) or "too big" in message or "malformed JSON" in message:
        return InvalidRecord(f"SQLite rejected the record: {message}")
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary in _CONFIGURATION_CODES:
        reason = _unopenable_reason(path)
        if primary != sqlite3.SQLITE_CANTOPEN or reason is not None:
            because = f" ({reason})" if reason else ""
            return StoreConfigurationError(
                f"SQLite cannot use the database {path!r}: {message}{because}"
            )
    elif primary is not None and primary not in _TRANSIENT_CODES:
        return StorageError(f"SQLite failed on {path!r}: {message}")
    return StoreUnavailable(f"SQLite failed on {path!r}: {message}")


def _close_quietly(connection: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        connection.close()


class _ThreadConnection:
    """One thread's connection, held only by that thread's ``threading.local``: when the thread
    ends, the local drops it and its finalizer closes the connection."""

    __slots__ = ("__weakref__", "close", "connection")

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        # The callback holds the connection, never this object or the store (so neither is
        # kept alive by it); calling it early (store.close()) makes the later call a no-op.
        self.close = weakref.finalize(self, _close_quietly, connection)


class _Connections:
    """Hands out a connection per thread (file) or one shared connection (memory, caller's)."""

    def __init__(
        self,
        path: str,
        *,
        timeout: float,
        synchronous: str,
        trace: TraceCallback | None,
        connection: sqlite3.Connection | None,
    ) -> None:
        self._path = path
        self._timeout = timeout
        self._synchronous = synchronous
        self._trace = trace
        self._local = threading.local()
        # The live threads' connections, for close(); an entry leaves when its thread ends.
        self._per_thread_connections: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        self._guard = threading.Lock()
        self._closed = False
        self._shared = connection
        self._owns_shared = connection is None and path == _MEMORY
        is_file = connection is None and path != _MEMORY
        self._write_lock = _write_lock_for(os.path.realpath(path)) if is_file else threading.Lock()
        self._per_thread = is_file

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit, so a single statement is its own transaction and
        # BEGIN IMMEDIATE is issued only where we ask for it.
        connection = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        connection.execute(f"PRAGMA synchronous = {self._synchronous}")
        if self._per_thread:
            connection.execute("PRAGMA journal_mode = WAL")
        if self._trace is not None:
            connection.set_trace_callback(self._trace)
        return connection

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable("the SQLite store is closed")
        if not self._per_thread:
            with self._guard:
                if self._shared is None:
                    self._shared = self._connect()
                return self._shared
        held: _ThreadConnection | None = getattr(self._local, "held", None)
        if held is None:
            held = _ThreadConnection(self._connect())
            with self._guard:  # (one racing close() cannot leak it: it ends with its thread)
                self._per_thread_connections.add(held)
            self._local.held = held
        return held.connection

    def session(self) -> _Session:
        """A plan's use of this thread's connection (or the shared one)."""
        try:
            connection = self._connection()
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc
        return _Session(connection, self._write_lock, lock_at_once=not self._per_thread)

    def translate(self, exc: BaseException) -> StorageError:
        """The contract's error for a sqlite3 error on this database."""
        return _translate(exc, self._path)

    def close(self) -> None:
        with self._guard:
            self._closed = True
            per_thread = list(self._per_thread_connections)
            self._per_thread_connections.clear()
            shared = self._shared if self._owns_shared else None
            self._shared = None
        for held in per_thread:
            held.close()
        if shared is not None:
            _close_quietly(shared)


class _Session:
    """One plan's use of a connection. The database's write lock is taken at the plan's first
    write (at once on a shared connection, which readers must not use concurrently either) and
    released at its end, after rolling back any transaction the plan left open."""

    __slots__ = ("_connection", "_lock", "_locked")

    def __init__(
        self, connection: sqlite3.Connection, lock: threading.Lock, *, lock_at_once: bool
    ) -> None:
        self._connection = connection
        self._lock = lock
        self._locked = lock_at_once
        if lock_at_once:
            lock.acquire()

    def perform(self, command: Command) -> list[Row] | None:
        if isinstance(command, Read):
            return self._connection.execute(command.sql, command.params).fetchall()
        if not self._locked:
            self._lock.acquire()
            self._locked = True
        if isinstance(command, Write):
            return self._connection.execute(command.sql, command.params).fetchall()
        self._connection.execute(command)
        return None

    def end(self) -> None:
        try:
            if self._connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._connection.execute("ROLLBACK")
        finally:
            if self._locked:
                self._lock.release()


class _Executor:
    """Runs SQLite plans on the calling thread; the table is created before the first plan."""

    def __init__(self, connections: _Connections, engine: SQLiteEngine) -> None:
        self._connections = connections
        self._engine = engine
        self._schema_lock = threading.Lock()
        self._schema_ready = threading.Event()

    def run[T](self, plan: Plan[Command, T]) -> T:
        # Lazily, so constructing a store does no I/O (the async store is built on the loop).
        if not self._schema_ready.is_set():
            with self._schema_lock:
                if not self._schema_ready.is_set():
                    self._perform(self._engine.create_schema())
                    self._schema_ready.set()
        return self._perform(plan)

    def _perform[T](self, plan: Plan[Command, T]) -> T:
        session = self._connections.session()
        try:
            return drive(plan, session.perform, (sqlite3.Error,), self._connections.translate)
        finally:
            session.end()

    def close(self) -> None:
        self._connections.close()


class _ThreadedExecutor:
    """Runs a sync executor's plans on worker threads, so the event loop never waits on
    SQLite. A cancelled call still finishes its plan on the worker; the result is dropped."""

    def __init__(self, sync: _Executor, workers: int) -> None:
        self._sync = sync
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stalwart-sqlite")

    async def run[T](self, plan: Plan[Command, T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._sync.run, plan)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(self._pool.shutdown, wait=True))
        await loop.run_in_executor(None, self._sync.close)


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    return limit


class SQLiteStore(EngineStore[Command]):
    """The synchronous SQLite store: one table in one database file.

    ``path`` is a file (created if missing, with its table; its directory must exist) or
    ``":memory:"``. Pass ``connection`` instead to use a connection you made (autocommit, i.e.
    ``isolation_level=None``); it is shared behind a lock and never closed by the store.
    ``trace`` receives every SQL statement the store runs (for counting round trips).

    >>> from stalwart.storage import Key
    >>> store = SQLiteStore(":memory:", table="demo")
    >>> store.create(Key("acct-1"), {"cents": 0}).version
    1
    >>> store.increment(Key("acct-1"), "cents", 250).data
    {'cents': 250}
    >>> store.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = _MEMORY,
        *,
        table: str = "stalwart",
        clock: Clock = wall_clock,
        timeout: float = DEFAULT_TIMEOUT_S,
        synchronous: str = DEFAULT_SYNCHRONOUS,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        max_transaction_items: int = DEFAULT_MAX_TRANSACTION_ITEMS,
        trace: TraceCallback | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> None:
        if synchronous not in _SYNCHRONOUS:
            raise StoreConfigurationError(
                f"synchronous must be one of {_SYNCHRONOUS}, got {synchronous!r}"
            )
        if not timeout > 0:
            raise StoreConfigurationError(f"timeout must be positive, got {timeout!r}")
        if connection is not None and connection.isolation_level is not None:
            raise StoreConfigurationError(
                "a caller's connection must be in autocommit mode "
                "(sqlite3.connect(..., isolation_level=None))"
            )
        if max_item_bytes < 1 or max_transaction_items < 1:
            raise StoreConfigurationError(
                "max_item_bytes and max_transaction_items must be positive"
            )
        if connection is None and os.fspath(path) != _MEMORY:
            # The one check done at construction (a stat, no file is opened): a missing
            # directory would otherwise surface at the first operation.
            directory = _missing_directory(os.fspath(path))
            if directory is not None:
                raise StoreConfigurationError(
                    f"cannot open the SQLite database {os.fspath(path)!r}: "
                    f"the directory {str(directory)!r} does not exist"
                )
        engine = SQLiteEngine(
            table, max_item_bytes=max_item_bytes, max_transaction_items=max_transaction_items
        )
        connections = _Connections(
            os.fspath(path),
            timeout=timeout,
            synchronous=synchronous,
            trace=trace,
            connection=connection,
        )
        super().__init__(engine, _Executor(connections, engine), clock)
        self._sqlite = engine
        self._table = table

    @property
    def table(self) -> str:
        """The table this store reads and writes."""
        return self._table

    def sweep(self, limit: int = 1000) -> int:
        """Physically delete up to ``limit`` expired rows; return how many went.

        Expired rows are already invisible; sweeping only reclaims space. Call it from a
        periodic job, repeating while it returns ``limit``.
        """
        return self._executor.run(self._sqlite.sweep(_check_limit(limit), self._clock()))


class AsyncSQLiteStore(AsyncEngineStore[Command]):
    """The asynchronous SQLite store: a :class:`SQLiteStore`'s plans run on its own worker
    threads.

    Takes the same arguments as :class:`SQLiteStore` plus ``workers`` (threads, default 4).
    A cancelled call still finishes its statement on the worker; its result is discarded.

    >>> import asyncio
    >>> from stalwart.storage import Key
    >>> async def main() -> int:
    ...     store = AsyncSQLiteStore(":memory:", table="demo")
    ...     record = await store.create(Key("acct-1"), {"cents": 0})
    ...     await store.close()
    ...     return record.version
    >>> asyncio.run(main())
    1
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = _MEMORY,
        *,
        workers: int = DEFAULT_ASYNC_WORKERS,
        table: str = "stalwart",
        clock: Clock = wall_clock,
        timeout: float = DEFAULT_TIMEOUT_S,
        synchronous: str = DEFAULT_SYNCHRONOUS,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        max_transaction_items: int = DEFAULT_MAX_TRANSACTION_ITEMS,
        trace: TraceCallback | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise StoreConfigurationError(f"workers must be a positive int, got {workers!r}")
        self._store = SQLiteStore(
            path,
            table=table,
            clock=clock,
            timeout=timeout,
            synchronous=synchronous,
            max_item_bytes=max_item_bytes,
            max_transaction_items=max_transaction_items,
            trace=trace,
            connection=connection,
        )
        sync_executor = self._store._executor  # noqa: SLF001 - the same connections and table
        assert isinstance(sync_executor, _Executor)
        super().__init__(self._store._sqlite, _ThreadedExecutor(sync_executor, workers), clock)  # noqa: SLF001

    @property
    def sync(self) -> SQLiteStore:
        """The synchronous store doing the work (same table, same connections)."""
        return self._store

    async def sweep(self, limit: int = 1000) -> int:
        """See :meth:`SQLiteStore.sweep`."""
        plan = self._store._sqlite.sweep(_check_limit(limit), self._clock())  # noqa: SLF001
        return await self._executor.run(plan)


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SQLiteURL:
    """The parts of a ``sqlite:///path?table=name`` URL."""

    path: str
    table: str = "stalwart"
    timeout: float = DEFAULT_TIMEOUT_S
    synchronous: str = DEFAULT_SYNCHRONOUS
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES
    workers: int = DEFAULT_ASYNC_WORKERS


_URL_OPTIONS: Final = ("table", "timeout", "synchronous", "max_item_bytes", "workers", "create")


def parse_url(url: str) -> SQLiteURL:
    """Parse ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``.

    Query options: ``table`` (default ``stalwart``), ``timeout`` (busy timeout, seconds,
    default 5), ``synchronous`` (``normal`` default, ``full``, ``extra``, ``off``),
    ``max_item_bytes``, ``workers`` (async store threads) and ``create`` (accepted for symmetry
    with the other engines; SQLite always creates its table). Anything else, or a malformed
    value, is :class:`StoreConfigurationError`.

    >>> parse_url("sqlite:////var/data/app.db?table=records").path
    '/var/data/app.db'
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise StoreConfigurationError(f"not a sqlite:// URL: {url!r}")
    if parts.netloc:
        raise StoreConfigurationError(
            f"a sqlite URL has no host: write sqlite:///path, got {url!r}"
        )
    path = unquote(parts.path)
    path = path.removeprefix("/")  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    if not path:
        raise StoreConfigurationError(f"the sqlite URL {url!r} names no database file")
    options = url_options(url, _URL_OPTIONS, engine="sqlite")
    flag("create", options.get("create", "true"))  # checked, then ignored
    return SQLiteURL(
        path=path,
        table=validate_table(options.get("table", "stalwart")),
        timeout=positive_number("timeout", options.get("timeout", str(DEFAULT_TIMEOUT_S))),
        synchronous=one_of(
            "synchronous", options.get("synchronous", DEFAULT_SYNCHRONOUS), _SYNCHRONOUS
        ),
        max_item_bytes=whole_number(
            "max_item_bytes", options.get("max_item_bytes", str(DEFAULT_MAX_ITEM_BYTES))
        ),
        workers=whole_number("workers", options.get("workers", str(DEFAULT_ASYNC_WORKERS))),
    )


def store_from_url(url: str, *, clock: Clock = wall_clock) -> SQLiteStore:
    """Open a :class:`SQLiteStore` from a URL (see :func:`parse_url`).

    >>> from stalwart.storage import Key
    >>> store = store_from_url("sqlite:///:memory:?table=demo")
    >>> store.get(Key("nobody")) is None
    True
    >>> store.close()
    """
    config = parse_url(url)
    return SQLiteStore(
        config.path,
        table=config.table,
        clock=clock,
        timeout=config.timeout,
        synchronous=config.synchronous,
        max_item_bytes=config.max_item_bytes,
    )


def async_store_from_url(url: str, *, clock: Clock = wall_clock) -> AsyncSQLiteStore:
    """Open an :class:`AsyncSQLiteStore` from a URL (see :func:`parse_url`)."""
    config = parse_url(url)
    return AsyncSQLiteStore(
        config.path,
        workers=config.workers,
        table=config.table,
        clock=clock,
        timeout=config.timeout,
        synchronous=config.synchronous,
        max_item_bytes=config.max_item_bytes,
    )
