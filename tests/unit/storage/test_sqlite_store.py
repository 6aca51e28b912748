# Copyright 2026 stalwart contributors
"""SQLite-specific guarantees: statement counts, locking, errors, URLs, sweep, precision."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from stalwart.storage import (
    AlreadyExists,
    AsyncStore,
    Check,
    Create,
    InvalidRecord,
    Key,
    Replace,
    StorageError,
    Store,
    StoreConfigurationError,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
    open_async_store,
    open_store,
)
from stalwart.storage.sqlite import (
    AsyncSQLiteStore,
    SQLiteStore,
    async_store_from_url,
    parse_url,
    store_from_url,
)

KEY = Key("acct", "balance")


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "store.db"


class Statements:
    """Collects every statement the store sends (sqlite3's trace callback)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, statement: str) -> None:
        with self._lock:
            self.seen.append(statement)

    def take(self) -> list[str]:
        with self._lock:
            seen, self.seen = self.seen, []
        return seen


@pytest.fixture
def traced(db_path):
    statements = Statements()
    store = SQLiteStore(db_path, table="records", trace=statements)
    store.get(KEY)  # creates the schema
    statements.take()
    yield store, statements
    store.close()


def test_each_operation_is_one_statement_on_the_success_path(traced):
    store, statements = traced
    calls = [
        lambda: store.create(KEY, {"n": 0}),
        lambda: store.replace(KEY, {"n": 1}, expected_version=1),
        lambda: store.increment(KEY, "n", 5),
        lambda: store.increment(Key("acct", "new"), "n"),
        lambda: store.get(KEY),
        lambda: store.query("acct", prefix="b", limit=10),
        lambda: store.delete(KEY, expected_version=3),
        lambda: store.delete(Key("acct", "new")),
        lambda: store.delete(Key("acct", "never")),
    ]
    for call in calls:
        call()
        sent = statements.take()
        assert len(sent) == 1, sent
        assert not sent[0].startswith(("BEGIN", "COMMIT", "SELECT 1")), sent


def test_conflict_path_re_evaluates_inside_one_immediate_transaction(traced):
    store, statements = traced
    store.create(KEY, {"n": 0})
    statements.take()
    with pytest.raises(AlreadyExists) as caught:
        store.create(KEY, {"n": 9})
    assert caught.value.current is not None
    sent = statements.take()
    assert [s.split()[0] for s in sent] == ["INSERT", "BEGIN", "INSERT", "SELECT", "COMMIT"]
    assert sent[1] == "BEGIN IMMEDIATE"
    with pytest.raises(VersionConflict):
        store.replace(KEY, {"n": 9}, expected_version=7)
    assert [s.split()[0] for s in statements.take()] == [
        "UPDATE",
        "BEGIN",
        "UPDATE",
        "SELECT",
        "COMMIT",
    ]


def test_transactions_run_inside_begin_immediate_and_roll_back(traced):
    store, statements = traced
    store.transact([Create(KEY, {"n": 0}), Create(Key("acct", "other"), {})])
    sent = statements.take()
    assert sent[0] == "BEGIN IMMEDIATE"
    assert sent[-1] == "COMMIT"
    assert len(sent) == 4
    with pytest.raises(TransactionConflict):
        store.transact([Replace(KEY, {"n": 1}, 1), Check(Key("acct", "other"), 5)])
    sent = statements.take()
    assert sent[0] == "BEGIN IMMEDIATE"
    assert sent[-1] == "ROLLBACK"
    assert store.get(KEY).data == {"n": 0}  # type: ignore[union-attr]


def test_table_layout_is_one_without_rowid_table_in_wal_mode(traced, db_path):
    store, _ = traced
    with sqlite3.connect(db_path) as raw:
        (sql,) = raw.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'records'"
        ).fetchone()
        assert "WITHOUT ROWID" in sql
        assert "PRIMARY KEY (partition, sort)" in sql
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()
    assert store.table == "records"


def test_float_increments_keep_full_double_precision(traced):
    store, _ = traced
    store.create(KEY, {"f": 0.1, "big": 2**53 + 1, "e": 1e300})
    assert store.increment(KEY, "f", 0.2).data["f"] == 0.1 + 0.2
    assert store.increment(KEY, "big", 1).data["big"] == 2**53 + 2
    assert store.increment(KEY, "e", 1.5e299).data["e"] == 1e300 + 1.5e299
    fetched = store.get(KEY)
    assert fetched is not None
    assert fetched.data == {"f": 0.1 + 0.2, "big": 2**53 + 2, "e": 1e300 + 1.5e299}


@pytest.mark.parametrize("field", ['a"b', "x\\y", '"', "tab\there", "ctl\x1f", "é😀", "a b"])
def test_increment_fields_that_json_paths_cannot_address(traced, field):
    store, _ = traced
    store.create(KEY, {field: 1, "other": 2})
    record = store.increment(KEY, field, 2)
    assert record.data == {field: 3, "other": 2}
    assert store.increment(Key("acct", "fresh"), field).data == {field: 1}


def test_increment_overflowing_to_infinity_is_invalid(traced):
    store, _ = traced
    store.create(KEY, {"e": 1.7e308})
    with pytest.raises(InvalidRecord):
        store.increment(KEY, "e", 1.7e308)
    assert store.get(KEY).data == {"e": 1.7e308}  # type: ignore[union-attr]


def test_sweep_removes_only_expired_rows(db_path):
    now = [1000.0]
    store = SQLiteStore(db_path, table="sweepme", clock=lambda: now[0])
    try:
        for i in range(5):
            store.create(Key("p", f"short{i}"), {}, ttl=10)
        store.create(Key("p", "long"), {}, ttl=100)
        store.create(Key("p", "forever"), {})
        assert store.sweep() == 0
        now[0] += 10
        assert store.sweep(limit=3) == 3
        assert store.sweep(limit=3) == 2
        assert store.sweep() == 0
        with sqlite3.connect(db_path) as raw:
            rows = raw.execute("SELECT sort FROM sweepme ORDER BY sort").fetchall()
        raw.close()
        assert rows == [("forever",), ("long",)]
        with pytest.raises(ValueError, match="limit"):
            store.sweep(0)
    finally:
        store.close()


async def test_async_sweep(db_path):
    now = [1000.0]
    store = AsyncSQLiteStore(db_path, table="sweepme", clock=lambda: now[0])
    try:
        await store.create(Key("p", "a"), {}, ttl=1)
        now[0] += 2
        assert await store.sweep() == 1
    finally:
        await store.close()


def test_threads_share_a_memory_store():
    store = store_from_url("sqlite:///:memory:?table=shared")
    try:

        def work() -> None:
            for _ in range(100):
                store.increment(KEY, "n")

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.get(KEY).data == {"n": 800}  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_locked_database_is_store_unavailable(db_path):
    store = SQLiteStore(db_path, table="locked", timeout=0.2)
    store.get(KEY)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            store.create(KEY, {})
        assert time.monotonic() - started >= 0.15  # waited for the busy timeout first
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        holder.execute("ROLLBACK")
        assert store.create(KEY, {}).version == 1
    finally:
        holder.close()
        store.close()


def test_a_missing_directory_is_a_configuration_error_at_open(tmp_path):
    path = tmp_path / "missing" / "dir" / "x.db"
    for open_it in (
        lambda: SQLiteStore(path),
        lambda: AsyncSQLiteStore(path),
        lambda: open_store(f"sqlite:///{path}"),
        lambda: open_async_store(f"sqlite:///{path}"),
    ):
        with pytest.raises(StoreConfigurationError, match=str(path)) as caught:
            open_it()
        assert not isinstance(caught.value, StoreUnavailable)
        assert "does not exist" in str(caught.value)
        assert isinstance(caught.value, ValueError)


def test_a_file_that_is_not_a_database_is_a_configuration_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    with SQLiteStore(path) as store, pytest.raises(StoreConfigurationError, match=str(path)):
        store.get(KEY)
    with SQLiteStore(tmp_path) as store, pytest.raises(StoreConfigurationError, match="directory"):
        store.get(KEY)  # the path is a directory


def test_a_read_only_database_is_a_configuration_error(db_path):
    SQLiteStore(db_path, table="ro").close()
    with SQLiteStore(db_path, table="ro") as store:
        store.create(KEY, {"n": 1})
    read_only = sqlite3.connect(
        f"file:{db_path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    try:
        with SQLiteStore(connection=read_only, table="ro") as store:
            assert store.get(KEY) is not None  # reads work
            with pytest.raises(StoreConfigurationError, match="readonly"):
                store.increment(KEY, "n")
    finally:
        read_only.close()


def test_a_corrupt_database_is_a_permanent_storage_error(db_path):
    with SQLiteStore(db_path, table="t") as store:
        for index in range(50):
            store.create(Key(f"p{index}"), {"x": "y" * 500})
    with db_path.open("r+b") as file:  # the store closed: its WAL is checkpointed into the file
        file.seek(4096)
        file.write(b"\xff" * 4096)
    with SQLiteStore(db_path, table="t") as store, pytest.raises(StorageError) as caught:
        store.get(Key("p3"))
    assert type(caught.value) is StorageError  # neither retried nor a configuration mistake
    assert "malformed" in str(caught.value)
    assert str(db_path) in str(caught.value)


def test_a_full_database_is_store_unavailable():
    """A full disk is transient by our rules (space can come back; a retry may succeed)."""
    connection = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    try:
        with SQLiteStore(connection=connection, table="full") as store:
            store.get(KEY)
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {pages + 1}")
            store.create(Key("small"), {"n": 1})
            with pytest.raises(StoreUnavailable, match="full") as caught:
                store.create(Key("big"), {"blob": "x" * 20_000})
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    finally:
        connection.close()


_OUT_OF_DESCRIPTORS = """
import resource, sys, threading
from pathlib import Path
from stalwart.storage import Key, StoreUnavailable
from stalwart.storage.sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1])
store.get(Key("k"))
opened = sum(1 for _ in Path("/proc/self/fd").iterdir())
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (opened, hard))  # not one descriptor more
outcome = []

def other_thread():
    try:
        store.get(Key("k"))
        outcome.append("opened")
    except StoreUnavailable:
        outcome.append("unavailable")
    except Exception as exc:
        outcome.append(type(exc).__name__)

thread = threading.Thread(target=other_thread)
thread.start()
thread.join()
print(outcome[0])
"""


def test_running_out_of_file_descriptors_is_store_unavailable(db_path):
    """SQLite reports "unable to open database file" here too, but the file is fine: transient."""
    result = subprocess.run(
        [sys.executable, "-c", _OUT_OF_DESCRIPTORS, str(db_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.stdout.strip() == "unavailable", result.stderr


def test_closed_store_is_store_unavailable(db_path):
    store = SQLiteStore(db_path)
    store.create(KEY, {})
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get(KEY)


def test_caller_connection_is_used_and_never_closed():
    connection = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    with SQLiteStore(connection=connection, table="mine") as store:
        store.create(KEY, {"n": 1})
    assert connection.execute("SELECT data FROM mine").fetchall() == [('{"n":1}',)]
    connection.close()
    legacy = sqlite3.connect(":memory:")
    with pytest.raises(ValueError, match="autocommit"):
        SQLiteStore(connection=legacy)
    legacy.close()


@pytest.mark.parametrize(
    ("url", "path", "table"),
    [
        ("sqlite:///relative/app.db", "relative/app.db", "stalwart"),
        ("sqlite:////abs/app.db?table=t1", "/abs/app.db", "t1"),
        ("sqlite:///:memory:?table=x", ":memory:", "x"),
        ("sqlite:///with%20space.db", "with space.db", "stalwart"),
    ],
)
def test_url_forms(url, path, table):
    config = parse_url(url)
    assert (config.path, config.table) == (path, table)


def test_url_parameters():
    config = parse_url(
        "sqlite:///a.db?timeout=2.5&synchronous=NORMAL&max_item_bytes=1000&workers=2&create=true"
    )
    assert (config.timeout, config.synchronous, config.max_item_bytes, config.workers) == (
        2.5,
        "normal",
        1000,
        2,
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost/0",
        "sqlite://host/a.db",
        "sqlite:///",
        "sqlite:///a.db?tabel=x",
        "sqlite:///a.db?timeout=soon",
        "sqlite:///a.db?table=bad-name",
        "sqlite:///a.db?table=x;drop",
        "sqlite:///a.db?synchronous=sometimes",
        "sqlite:///a.db?timeout=0",
    ],
)
def test_bad_urls_are_rejected(url):
    with pytest.raises(StoreConfigurationError):
        store_from_url(url).close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///a.db?tabel=x", "unknown sqlite URL option(s) 'tabel'; known: create, "),
        ("sqlite:///a.db?table=a&table=b", "given twice"),
        ("sqlite:///a.db?workers=0", "workers must be an integer at least 1"),
        ("sqlite:///a.db?max_item_bytes=lots", "max_item_bytes must be an integer"),
        ("sqlite:///a.db?create=maybe", "create must be true or false"),
        ("sqlite:///a.db?timeout=inf", "timeout must be a positive number"),
        ("sqlite:///a.db?synchronous=sometimes", "synchronous must be one of off, normal"),
    ],
)
def test_url_errors_say_what_is_wrong(url, message):
    with pytest.raises(StoreConfigurationError) as caught:
        parse_url(url)
    assert message in str(caught.value)


async def test_bad_async_url_is_rejected():
    with pytest.raises(StoreConfigurationError, match="workers"):
        async_store_from_url("sqlite:///a.db?workers=0")


async def test_open_store_dispatches_and_passes_the_clock(db_path):
    url = f"sqlite:///{db_path}?table=opened"
    now = [50.0]
    store = open_store(url, clock=lambda: now[0])
    assert isinstance(store, SQLiteStore)
    assert isinstance(store, Store)
    try:
        assert store.create(KEY, {}, ttl=10).expires_at == 60.0
    finally:
        store.close()
    async_store = open_async_store(url, clock=lambda: now[0])
    assert isinstance(async_store, AsyncSQLiteStore)
    assert isinstance(async_store, AsyncStore)
    try:
        assert (await async_store.get(KEY)) is not None
        now[0] = 60.0
        assert (await async_store.get(KEY)) is None
    finally:
        await async_store.close()


async def test_async_store_never_blocks_the_event_loop(db_path):
    store = AsyncSQLiteStore(db_path, table="loop", timeout=0.6)
    await store.get(KEY)
    holder = sqlite3.connect(db_path, isolation_level=None)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable):
            await store.create(KEY, {})  # waits ~0.6 s on the busy timeout, off the loop
        assert ticks >= 20
    finally:
        ticking.cancel()
        holder.close()
        await store.close()


def test_constructor_rejects_bad_settings(db_path):
    for kwargs in (
        {"synchronous": "maybe"},
        {"timeout": 0},
        {"max_item_bytes": 0},
        {"max_transaction_items": 0},
    ):
        with pytest.raises(StoreConfigurationError):
            SQLiteStore(db_path, **kwargs)
    with pytest.raises(StoreConfigurationError):
        SQLiteStore(db_path, table="no spaces")
    with pytest.raises(StoreConfigurationError, match="workers"):
        AsyncSQLiteStore(db_path, workers=0)


def test_limits_are_configurable(db_path):
    with SQLiteStore(db_path, max_item_bytes=100, max_transaction_items=2) as store:
        assert (store.max_item_bytes, store.max_transaction_items) == (100, 2)
        with pytest.raises(InvalidRecord):
            store.create(KEY, {"x": "y" * 100})
        with pytest.raises(InvalidRecord):
            store.transact([Create(Key("a"), {}), Create(Key("b"), {}), Create(Key("c"), {})])
        assert store.query("a").records == []
