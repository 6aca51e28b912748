# Copyright 2026 stalwart contributors
"""The SQLite engine (standard library only): the embedded default store.

One table ``(partition, sort, data, version, expires_at)`` per store, WAL, one statement per
single-record operation. See ``docs/storage/sqlite.md``.

>>> from stalwart.storage import Key
>>> store = store_from_url("sqlite:///:memory:?table=demo")
>>> store.create(Key("acct-1"), {"cents": 0}).version
1
>>> store.close()
"""

from stalwart.storage._sqlite import (
    DEFAULT_MAX_ITEM_BYTES,
    DEFAULT_MAX_TRANSACTION_ITEMS,
    DEFAULT_SYNCHRONOUS,
    AsyncSQLiteStore,
    SQLiteStore,
    SQLiteURL,
    async_store_from_url,
    parse_url,
    store_from_url,
)

__all__ = [
    "DEFAULT_MAX_ITEM_BYTES",
    "DEFAULT_MAX_TRANSACTION_ITEMS",
    "DEFAULT_SYNCHRONOUS",
    "AsyncSQLiteStore",
    "SQLiteStore",
    "SQLiteURL",
    "async_store_from_url",
    "parse_url",
    "store_from_url",
]
