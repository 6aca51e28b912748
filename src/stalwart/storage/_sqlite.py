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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self
from urllib.parse import unquote, urlsplit

from stalwart.storage._contract import (
    AlreadyExists,
    Clock,
    Create,
    Delete,
    Increment,
    InvalidRecord,
    JSONObject,
    Key,
    Operation,
    Page,
    Record,
    Replace,
    StorageError,
    StoreConfigurationError,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
    validate_key,
    validate_operations,
    wall_clock,
)
from stalwart.storage._sqlite_sql import (
    Statements,
    Step,
    StepKind,
    conflict_reason,
    page_records,
    plan_query,
    prepare,
    record_from_row,
    statements,
    succeeded,
    validate_table,
    write_result,
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


def _translate(exc: sqlite3.Error, path: str) -> StorageError:
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

    @contextlib.contextmanager
    def _engine_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self._path) from exc

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._engine_errors():
            connection = self._connection()
            if self._per_thread:
                yield connection  # WAL: readers need no lock
            else:
                with self._write_lock:
                    yield connection

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        with self._engine_errors():
            connection = self._connection()
            with self._write_lock:
                yield connection

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


@contextlib.contextmanager
def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE``: take the write lock first, so reads inside cannot go stale."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    if connection.in_transaction:
        connection.execute("COMMIT")


class SQLiteStore:
    """The synchronous SQLite store: one table in one database file.

    ``path`` is a file (created if missing, with its table; its directory must exist) or
    ``":memory:"``. Pass
    ``connection`` instead to use a connection you made (autocommit, i.e.
    ``isolation_level=None``); it is shared behind a lock and never closed by the store.
    ``trace`` receives every SQL statement the store runs (for counting round trips).

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
        self._sql: Statements = statements(table)
        self._table = table
        self._clock = clock
        self._max_item_bytes = max_item_bytes
        self._max_transaction_items = max_transaction_items
        self._connections = _Connections(
            os.fspath(path),
            timeout=timeout,
            synchronous=synchronous,
            trace=trace,
            connection=connection,
        )
        self._init_lock = threading.Lock()
        self._schema_ready = threading.Event()

    # -- properties --------------------------------------------------------------------------

    @property
    def table(self) -> str:
        """The table this store reads and writes."""
        return self._table

    @property
    def max_transaction_items(self) -> int:
        """Largest number of operations :meth:`transact` accepts (100 by default)."""
        return self._max_transaction_items

    @property
    def max_item_bytes(self) -> int:
        """Largest ``data`` in bytes of compact UTF-8 JSON (400,000 by default)."""
        return self._max_item_bytes

    # -- plumbing ----------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        # Done lazily, on the first operation, so constructing a store does no I/O (the async
        # store is built on the event loop).
        if self._schema_ready.is_set():
            return
        with self._init_lock:
            if self._schema_ready.is_set():
                return
            with self._connections.writing() as connection:
                for statement in self._sql.schema:
                    connection.execute(statement)
            self._schema_ready.set()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        with self._connections.reading() as connection:
            yield connection

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        with self._connections.writing() as connection:
            yield connection

    def _current(self, connection: sqlite3.Connection, step: Step) -> Record | None:
        rows = connection.execute(self._sql.get, step.params).fetchall()
        return record_from_row(step.key, rows[0]) if rows else None

    def _write(self, operation: Operation) -> Record | bool | None:
        """Run one write: ONE statement when its condition holds.

        When it does not, the statement is evaluated again inside ``BEGIN IMMEDIATE`` together
        with a read of the record that failed it, so the error carries exactly that record
        (another process may have written in between; then the second evaluation decides).
        """
        step = prepare(operation, self._sql, self._clock(), self._max_item_bytes)
        with self._writing() as connection:
            rows = connection.execute(step.sql, step.params).fetchall()
            if succeeded(step, rows):
                return write_result(step, rows)
            with _immediate(connection):
                rows = connection.execute(step.sql, step.params).fetchall()
                if succeeded(step, rows):
                    return write_result(step, rows)
                current = self._current(connection, step)
        raise _single_conflict(step, current)

    # -- the contract ------------------------------------------------------------------------

    def get(self, key: Key) -> Record | None:
        """Return the live record at ``key``, or ``None``."""
        key = validate_key(key)
        params = {"partition": key.partition, "sort": key.sort, "now": self._clock()}
        with self._reading() as connection:
            rows = connection.execute(self._sql.get, params).fetchall()
        return record_from_row(key, rows[0]) if rows else None

    def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        """Create at version 1 (over an expired record too); :class:`AlreadyExists` if live."""
        result = self._write(Create(key, data, ttl))
        assert isinstance(result, Record)
        return result

    def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        """Overwrite at ``expected_version`` (new version = old + 1), else
        :class:`VersionConflict`. ``ttl=None`` stores the record without expiry."""
        result = self._write(Replace(key, data, expected_version, ttl))
        assert isinstance(result, Record)
        return result

    def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        """Delete; ``True`` if a live record was removed. With ``expected_version`` a mismatch
        or absence raises :class:`VersionConflict`."""
        result = self._write(Delete(key, expected_version))
        assert isinstance(result, bool)
        return result

    def increment(self, key: Key, field: str, by: float = 1, *, ttl: float | None = None) -> Record:
        """Add ``by`` to ``field`` in one statement, creating the record if missing."""
        result = self._write(Increment(key, field, by, ttl))
        assert isinstance(result, Record)
        return result

    def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        """Live records of ``partition`` whose sort key starts with ``prefix``, by sort key."""
        plan = plan_query(
            self._sql,
            partition,
            prefix=prefix,
            limit=limit,
            cursor=cursor,
            descending=descending,
            now=self._clock(),
        )
        with self._reading() as connection:
            rows = connection.execute(plan.sql, plan.params).fetchall()
        records, next_cursor = page_records(partition, rows, plan.limit)
        return Page(records, next_cursor)

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        """Apply all operations or none, inside ``BEGIN IMMEDIATE``; each item runs the same
        statement as the single-record operation, and the first failed condition rolls back."""
        validate_operations(operations, self._max_transaction_items)
        now = self._clock()
        steps = [prepare(op, self._sql, now, self._max_item_bytes) for op in operations]
        results: list[Record | None] = []
        with self._writing() as connection, _immediate(connection):
            for index, step in enumerate(steps):
                rows = connection.execute(step.sql, step.params).fetchall()
                if not succeeded(step, rows):
                    current = self._current(connection, step)
                    connection.execute("ROLLBACK")
                    if step.kind is StepKind.INCREMENT:
                        raise InvalidRecord(conflict_reason(step, current))
                    raise TransactionConflict(
                        index, operations[index], conflict_reason(step, current), current
                    )
                result = write_result(step, rows)
                results.append(result if isinstance(result, Record) else None)
        return results

    def sweep(self, limit: int = 1000) -> int:
        """Physically delete up to ``limit`` expired rows; return how many went.

        Expired rows are already invisible; sweeping only reclaims space. Call it from a
        periodic job, repeating while it returns ``limit``.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        with self._writing() as connection:
            cursor = connection.execute(self._sql.sweep, {"now": self._clock(), "limit": limit})
            return cursor.rowcount

    def close(self) -> None:
        """Close the connections this store opened (never a caller's connection)."""
        self._connections.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _single_conflict(step: Step, current: Record | None) -> StorageError:
    match step.kind:
        case StepKind.CREATE:
            return AlreadyExists(step.key, current)
        case StepKind.INCREMENT:
            return InvalidRecord(conflict_reason(step, current))
        case _:
            return VersionConflict(step.key, step.params.get("expected"), current)


class AsyncSQLiteStore:
    """The asynchronous SQLite store: a :class:`SQLiteStore` run on its own worker threads.

    Takes the same arguments as :class:`SQLiteStore` plus ``workers`` (threads, default 4).
    A cancelled call still finishes its statement on the worker; its result is discarded.

    >>> import asyncio
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
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="stalwart-sqlite"
        )

    @property
    def sync(self) -> SQLiteStore:
        """The synchronous store doing the work (same table, same connections)."""
        return self._store

    @property
    def max_transaction_items(self) -> int:
        """See :attr:`SQLiteStore.max_transaction_items`."""
        return self._store.max_transaction_items

    @property
    def max_item_bytes(self) -> int:
        """See :attr:`SQLiteStore.max_item_bytes`."""
        return self._store.max_item_bytes

    async def _run[T](self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def get(self, key: Key) -> Record | None:
        """See :meth:`SQLiteStore.get`."""
        return await self._run(functools.partial(self._store.get, key))

    async def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        """See :meth:`SQLiteStore.create`."""
        return await self._run(functools.partial(self._store.create, key, data, ttl=ttl))

    async def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        """See :meth:`SQLiteStore.replace`."""
        return await self._run(
            functools.partial(
                self._store.replace, key, data, expected_version=expected_version, ttl=ttl
            )
        )

    async def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        """See :meth:`SQLiteStore.delete`."""
        return await self._run(
            functools.partial(self._store.delete, key, expected_version=expected_version)
        )

    async def increment(
        self, key: Key, field: str, by: float = 1, *, ttl: float | None = None
    ) -> Record:
        """See :meth:`SQLiteStore.increment`."""
        return await self._run(functools.partial(self._store.increment, key, field, by, ttl=ttl))

    async def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        """See :meth:`SQLiteStore.query`."""
        return await self._run(
            functools.partial(
                self._store.query,
                partition,
                prefix=prefix,
                limit=limit,
                cursor=cursor,
                descending=descending,
            )
        )

    async def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        """See :meth:`SQLiteStore.transact`."""
        return await self._run(functools.partial(self._store.transact, list(operations)))

    async def sweep(self, limit: int = 1000) -> int:
        """See :meth:`SQLiteStore.sweep`."""
        return await self._run(functools.partial(self._store.sweep, limit))

    async def close(self) -> None:
        """Wait for calls in flight, stop the workers and close the connections."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(self._executor.shutdown, wait=True))
        await loop.run_in_executor(None, self._store.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


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
