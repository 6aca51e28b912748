"""The storage contract: records, operations, errors and the two store protocols.

Every engine (SQLite, Redis, DynamoDB, MongoDB) implements :class:`Store` (sync) and
:class:`AsyncStore` (async) with identical semantics; the conformance suite proves it.

Exception tree::

    StorageError
    ├── AlreadyExists        create() found a live record (carries it when the engine returns it)
    ├── VersionConflict      expected version did not match (carries the current record or None)
    ├── TransactionConflict  a transact() condition failed; says which item and why
    ├── StoreUnavailable     transient: connection refused/lost, throttling, timeouts (retry me)
    ├── InvalidRecord        bad key, non-JSON data, item over the engine's limit: nothing written
    └── StoreConfigurationError  bad URL, option or credentials (also a ValueError): never retry
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

type JSONObject = dict[str, Any]
type Clock = Callable[[], float]
"""Returns epoch seconds; stores take one so tests can move time."""

MAX_KEY_PART_CHARS: Final = 1024
"""Longest partition or sort key accepted by every engine (DynamoDB allows 2048/1024 bytes)."""
MIN_INTEGER: Final = -(2**63)
MAX_INTEGER: Final = 2**63 - 1
"""Every engine stores integers -- in data, versions, counters and increment amounts -- as
signed 64-bit (MongoDB's BSON int64, SQLite's INTEGER); anything outside is InvalidRecord."""
MAX_TTL_S: Final = 100 * 365.25 * 86_400
"""Longest accepted ``ttl``: 100 years, in seconds (far inside every engine's expiry range)."""


@dataclass(frozen=True, slots=True)
class Key:
    """Address of one record: a partition and an optional sort key inside it."""

    partition: str
    sort: str = ""


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record as read back from an engine."""

    key: Key
    data: JSONObject
    version: int
    expires_at: float | None = None
    """Epoch seconds after which the record is treated as absent; ``None`` never expires."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a :meth:`Store.query`; pass ``cursor`` back to get the next page."""

    records: list[Record]
    cursor: str | None


# ---------------------------------------------------------------------------------------------
# Transaction operations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    """Create ``key``; fails if a live record is there."""

    key: Key
    data: JSONObject
    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class Replace:
    """Replace ``key`` if its version is ``expected_version``; the new version is one more."""

    key: Key
    data: JSONObject
    expected_version: int
    ttl: float | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``key``; with ``expected_version`` only if the live record has that version."""

    key: Key
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """Write nothing; require ``key`` at ``expected_version`` (``None``: require it absent)."""

    key: Key
    expected_version: int | None


@dataclass(frozen=True, slots=True)
class Increment:
    """Add ``by`` to the numeric field ``field`` (created at 0 with the record if missing)."""

    key: Key
    field: str
    by: int | float = 1
    ttl: float | None = None
    """Expiry for a record this operation creates; an existing record keeps its expiry."""


type Operation = Create | Replace | Delete | Check | Increment


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class StorageError(Exception):
    """Root of every error a store raises."""


class AlreadyExists(StorageError):
    """A live record is already stored under the key."""

    def __init__(self, key: Key, current: Record | None = None) -> None:
        super().__init__(f"a live record already exists at {key}")
        self.key = key
        self.current = current


class VersionConflict(StorageError):
    """The record's version (or absence) did not match what the caller expected."""

    def __init__(self, key: Key, expected_version: int | None, current: Record | None) -> None:
        found = "absent" if current is None else f"version {current.version}"
        super().__init__(f"expected version {expected_version} at {key}, found {found}")
        self.key = key
        self.expected_version = expected_version
        self.current = current


class TransactionConflict(StorageError):
    """A condition inside :meth:`Store.transact` failed; nothing was written."""

    def __init__(
        self, index: int, operation: Operation | None, reason: str, current: Record | None = None
    ) -> None:
        where = f"item {index}" if index >= 0 else "an unknown item"
        what = f" ({type(operation).__name__} {operation.key})" if operation else ""
        super().__init__(f"transaction failed at {where}{what}: {reason}")
        self.index = index
        self.operation = operation
        self.reason = reason
        self.current = current


class StoreUnavailable(StorageError):
    """Transient failure: the engine could not be reached or throttled us. Safe to retry."""


class InvalidRecord(StorageError):
    """The key or data cannot be stored; nothing was written."""


class StoreConfigurationError(StorageError, ValueError):
    """The store is configured wrongly: unknown URL scheme or option, malformed URL, a path
    that cannot be opened, missing or rejected credentials. Permanent: retrying cannot help,
    so it is never a :class:`StoreUnavailable`. The message names what is wrong and, for an
    unknown option, lists the known ones."""


# ---------------------------------------------------------------------------------------------
# Shared validation and encoding (every engine calls these before any I/O)
# ---------------------------------------------------------------------------------------------


def validate_key(key: Key) -> Key:
    """Reject keys no engine can store; return the key unchanged."""
    if not isinstance(key, Key):
        raise InvalidRecord(f"expected a Key, got {type(key).__name__}")
    for part_name, part in (("partition", key.partition), ("sort", key.sort)):
        if not isinstance(part, str):
            raise InvalidRecord(f"key {part_name} must be a str, got {type(part).__name__}")
        if len(part) > MAX_KEY_PART_CHARS:
            raise InvalidRecord(
                f"key {part_name} is {len(part)} characters; the limit is {MAX_KEY_PART_CHARS}"
            )
        if "\x00" in part:
            raise InvalidRecord(f"key {part_name} contains a NUL character")
        if not part.isascii() and not _is_utf8_encodable(part):
            raise InvalidRecord(f"key {part_name} contains a lone surrogate (not valid UTF-8)")
    if not key.partition:
        raise InvalidRecord("key partition must not be empty")
    return key


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# One encoder for every call: json.dumps with non-default options builds a new one each time.
_COMPACT_JSON: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_data(data: Mapping[str, Any], *, max_bytes: int) -> str:
    """Serialize ``data`` to compact JSON, or raise :class:`InvalidRecord`.

    The result is what engines store; ``max_bytes`` is the engine's item limit for the data.
    """
    if not isinstance(data, Mapping):
        raise InvalidRecord(f"data must be a JSON object (a dict), got {type(data).__name__}")
    try:
        encoded = _COMPACT_JSON.encode(data)
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(f"data is not JSON-serializable: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRecord("data is nested too deeply to encode") from exc
    _check_keys_and_integers(data)
    try:
        # ASCII (the common case) is one byte a character and cannot hold a lone surrogate.
        size = len(encoded) if encoded.isascii() else len(encoded.encode())
    except UnicodeEncodeError as exc:
        raise InvalidRecord(f"data contains a lone surrogate (not valid UTF-8): {exc}") from exc
    if size > max_bytes:
        raise InvalidRecord(f"data is {size} bytes of JSON; this engine's limit is {max_bytes}")
    return encoded


def _check_keys_and_integers(data: Mapping[str, Any]) -> None:
    """Refuse what JSON encoding would change silently: a key that is not a str (json turns
    ``1``, ``None`` and ``True`` into ``"1"``, ``"null"`` and ``"true"``, and two keys may
    collide) and an integer outside the signed 64-bit range.

    Runs after a successful encoding, so every value is JSON-encodable and the data acyclic.
    A loop, not recursion: the C encoder accepts nesting past Python's recursion limit.
    """
    pending: list[Any] = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            for name in value:
                if name.__class__ is not str and not isinstance(name, str):
                    raise InvalidRecord(
                        f"data keys must be str, got {name!r} ({type(name).__name__})"
                    )
            value = value.values()
        for item in value:
            cls = item.__class__
            if cls in _JSON_LEAVES:
                continue
            if isinstance(item, int):
                if not MIN_INTEGER <= item <= MAX_INTEGER:
                    raise InvalidRecord(
                        f"integer {item} in data is outside the signed 64-bit range"
                    )
            elif not isinstance(item, str | float):  # a container (a dict, list or tuple)
                pending.append(item)


_JSON_LEAVES: Final = frozenset({str, float, bool, type(None)})
_JSON_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


class _NotPlainJSON(Exception):
    """A value :func:`_plain_copy` leaves to the JSON parser."""


def _plain_copy(value: Any) -> Any:
    """Deep copy of dicts (str keys), lists, tuples (as lists) and exact JSON scalars."""
    cls = value.__class__
    if cls is dict:
        copied: dict[str, Any] = {}
        for name, item in value.items():
            if name.__class__ is not str:
                raise _NotPlainJSON
            copied[name] = item if item.__class__ in _JSON_SCALARS else _plain_copy(item)
        return copied
    if cls is list or cls is tuple:
        return [item if item.__class__ in _JSON_SCALARS else _plain_copy(item) for item in value]
    if cls in _JSON_SCALARS:
        return value
    raise _NotPlainJSON


def stored_copy(data: Mapping[str, Any], encoded: str) -> JSONObject:
    """``data`` as a read gives it back: ``json.loads(encoded)`` (a copy; tuples become
    lists), where ``encoded`` is :func:`encode_data`'s result for it.

    Plain data -- dicts with str keys, lists, tuples and scalars of the exact JSON types (a
    str or int subclass such as an enum has another JSON form) -- is copied directly instead,
    which gives the same value at about half the cost of parsing; anything else is parsed.

    >>> stored_copy({"a": (1, 2), "b": None}, '{"a":[1,2],"b":null}')
    {'a': [1, 2], 'b': None}
    """
    if data.__class__ is dict:
        try:
            plain: JSONObject = _plain_copy(data)
        except (_NotPlainJSON, RecursionError):
            pass  # deeper than Python's recursion limit, or not plain: the parser decides
        else:
            return plain
    copied: JSONObject = json.loads(encoded)
    return copied


def validate_field(name: str) -> str:
    """Check a counter field name for :meth:`Store.increment`."""
    if not isinstance(name, str) or not name:
        raise InvalidRecord("increment field must be a non-empty str")
    if len(name) > 255 or any(ch in name for ch in ".$\x00[]"):
        raise InvalidRecord(
            f"increment field {name!r} must be a plain top-level name "
            "without '.', '$', '[', ']' or NUL, at most 255 characters"
        )
    return name


def validate_amount(by: float) -> int | float:
    """Check the amount of an increment: a finite float, or an int in the signed 64-bit range."""
    if isinstance(by, bool) or not isinstance(by, int | float):
        raise InvalidRecord(f"increment amount must be a finite int or float, got {by!r}")
    if isinstance(by, int):
        if not MIN_INTEGER <= by <= MAX_INTEGER:
            raise InvalidRecord(f"increment amount {by} is outside the signed 64-bit range")
    elif not math.isfinite(by):
        raise InvalidRecord(f"increment amount must be a finite int or float, got {by!r}")
    return by


def integer_sum_overflows(current: object, by: object) -> bool:
    """Whether an increment of the int ``current`` by the int ``by`` leaves the signed 64-bit
    range (engines refuse it with nothing written; a float on either side is a float sum)."""
    return (
        isinstance(current, int)
        and isinstance(by, int)
        and not MIN_INTEGER <= current + by <= MAX_INTEGER
    )


def validate_version(version: int) -> int:
    """Check an expected version: an int from 1 to the largest signed 64-bit integer."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_INTEGER:
        raise InvalidRecord(f"expected_version must be an int from 1 to 2**63 - 1, got {version!r}")
    return version


def expiry_from_ttl(ttl: float | None, now: float) -> float | None:
    """Turn a TTL in seconds into an absolute expiry (epoch seconds).

    ``ttl`` is ``None`` (no expiry) or a number of seconds above 0 and at most
    :data:`MAX_TTL_S` (100 years); nan, infinities, booleans and anything else are
    :class:`InvalidRecord`, raised before any engine writes.
    """
    if (ttl.__class__ is float or ttl.__class__ is int) and 0 < ttl <= MAX_TTL_S:  # common case
        return now + ttl  # float + int converts the int exactly as float(ttl) does
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL_S:
        raise InvalidRecord(
            f"ttl must be a number of seconds above 0 and at most {MAX_TTL_S:.0f} "
            f"(100 years), got {ttl!r}"
        )
    return now + float(ttl)


def validate_operations(operations: Sequence[Operation], max_items: int) -> None:
    """Check a transaction's shape before anything is sent."""
    if not operations:
        raise InvalidRecord("a transaction needs at least one operation")
    if len(operations) > max_items:
        raise InvalidRecord(
            f"a transaction holds at most {max_items} operations on this engine, "
            f"got {len(operations)}"
        )
    seen: set[Key] = set()
    for operation in operations:
        if not isinstance(operation, Create | Replace | Delete | Check | Increment):
            raise InvalidRecord(f"unknown transaction operation {operation!r}")
        validate_key(operation.key)
        if operation.key in seen:
            raise InvalidRecord(f"a transaction may touch each key once; {operation.key} repeats")
        seen.add(operation.key)


def wall_clock() -> float:
    """Default clock for expiry checks: epoch seconds."""
    return time.time()


# ---------------------------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class Store(Protocol):
    """A synchronous store bound to one table / collection / key prefix."""

    @property
    def max_transaction_items(self) -> int:
        """Largest number of operations :meth:`transact` accepts on this engine."""
        ...

    @property
    def max_item_bytes(self) -> int:
        """Largest accepted ``data``, in bytes of compact UTF-8 JSON (see :func:`encode_data`)."""
        ...

    def get(self, key: Key) -> Record | None:
        """Return the live record at ``key``, or ``None``."""
        ...

    def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        """Create a record at version 1; :class:`AlreadyExists` if a live one is there."""
        ...

    def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        """Overwrite data if the version matches (new version = old + 1), else
        :class:`VersionConflict`. ``ttl=None`` stores the record without expiry."""
        ...

    def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        """Delete; ``True`` if a live record was removed. With ``expected_version`` a mismatch
        or absence raises :class:`VersionConflict`."""
        ...

    def increment(self, key: Key, field: str, by: float = 1, *, ttl: float | None = None) -> Record:
        """Atomically add ``by`` to ``field``, creating the record if missing; bumps the
        version. Returns the record after the increment."""
        ...

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
        ...

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        """Apply all operations or none; returns each item's resulting record (``None`` for
        Delete and Check). A failed condition raises :class:`TransactionConflict`."""
        ...

    def close(self) -> None:
        """Release connections the store created itself (not a client passed in)."""
        ...


@runtime_checkable
class AsyncStore(Protocol):
    """The asynchronous twin of :class:`Store`, with the same semantics."""

    @property
    def max_transaction_items(self) -> int:
        """Largest number of operations :meth:`transact` accepts on this engine."""
        ...

    @property
    def max_item_bytes(self) -> int:
        """Largest accepted ``data``, in bytes of compact UTF-8 JSON (see :func:`encode_data`)."""
        ...

    async def get(self, key: Key) -> Record | None:
        """See :meth:`Store.get`."""
        ...

    async def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        """See :meth:`Store.create`."""
        ...

    async def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        """See :meth:`Store.replace`."""
        ...

    async def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        """See :meth:`Store.delete`."""
        ...

    async def increment(
        self, key: Key, field: str, by: float = 1, *, ttl: float | None = None
    ) -> Record:
        """See :meth:`Store.increment`."""
        ...

    async def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        """See :meth:`Store.query`."""
        ...

    async def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        """See :meth:`Store.transact`."""
        ...

    async def close(self) -> None:
        """See :meth:`Store.close`."""
        ...
