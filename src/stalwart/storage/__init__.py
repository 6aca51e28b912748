"""One storage contract over SQLite, Redis, DynamoDB and MongoDB.

See ``docs/storage.md``. Engines live in ``stalwart.storage.sqlite`` (no extra needed),
``stalwart.storage.redis`` (extra ``redis``), ``stalwart.storage.dynamodb`` (extra ``dynamodb``)
and ``stalwart.storage.mongodb`` (extra ``mongodb``).
"""

from stalwart.storage._contract import (
    MAX_INTEGER,
    MAX_TTL_S,
    MIN_INTEGER,
    AlreadyExists,
    AsyncStore,
    Check,
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
    Store,
    StoreConfigurationError,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
)
from stalwart.storage._open import open_async_store, open_store

__all__ = [
    "MAX_INTEGER",
    "MAX_TTL_S",
    "MIN_INTEGER",
    "AlreadyExists",
    "AsyncStore",
    "Check",
    "Clock",
    "Create",
    "Delete",
    "Increment",
    "InvalidRecord",
    "JSONObject",
    "Key",
    "Operation",
    "Page",
    "Record",
    "Replace",
    "StorageError",
    "Store",
    "StoreConfigurationError",
    "StoreUnavailable",
    "TransactionConflict",
    "VersionConflict",
    "open_async_store",
    "open_store",
]
