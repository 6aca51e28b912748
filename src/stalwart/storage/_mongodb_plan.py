"""The MongoDB engine without I/O: filters, pipeline updates, decoders and operation plans.

Every store operation is a *plan*: a generator that yields :data:`Command` objects and receives
each command's result (or has the driver's exception thrown into it). :class:`MongoEngine` makes
them; the sync and async executors in :mod:`stalwart.storage.mongodb` only execute commands, so
the logic exists once.

Document shape (one record per document)::

    {"_id": {"p": partition, "s": sort},   # the key; unique by construction
     "d": {...},                            # the data, an embedded document
     "v": 3,                                # version (0 only in a transaction's tombstone)
     "e": 1767225600.25 | None,             # expires_at, exact epoch seconds (conditions)
     "exp": ISODate(...),                   # same instant as a BSON date, for the TTL index
     "w": ObjectId(...)}                    # token of the last write (see below)

Every write sets ``w`` to a fresh token, so one post-image tells our write from the record that
blocked it. Every pipeline also first checks ``w == token``: where a server re-executes a
retried write (MongoDB never does; secantusdb does when the client sets ``timeoutMS``), the
retry leaves the document alone and the decoder still recognises its own write instead of
reporting a conflict or incrementing twice. The check costs no round trip, so it runs on every
server.

Plans follow MongoDB's semantics: every single-record operation is one command. The workarounds
for secantusdb, the emulator the test suite runs on, run only where the executor answers
:class:`DetectServer` with ``"secantusdb"`` (see docs/storage/mongodb.md, "secantusdb").
"""

from __future__ import annotations

import random
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from bson import ObjectId
from bson.errors import BSONError
from pymongo import ASCENDING, IndexModel
from pymongo.errors import (
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    PyMongoError,
    WriteConcernError,
    WTimeoutError,
)

from stalwart.storage._contract import (
    MAX_INTEGER,
    MIN_INTEGER,
    AlreadyExists,
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
    StoreConfigurationError,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
    encode_data,
    expiry_from_ttl,
    integer_sum_overflows,
    stored_copy,
    validate_amount,
    validate_field,
    validate_version,
)
from stalwart.storage._query import decode_cursor, encode_cursor, prefix_upper_bound

type Doc = dict[str, Any]
type Filter = dict[str, Any]
type Pipeline = list[dict[str, Any]]

DEFAULT_MAX_ITEM_BYTES: Final = 1024 * 1024
"""Largest data (as compact JSON) a record may hold by default: 1 MiB, well inside BSON's
16 MiB document limit (which also bounds the command that carries it)."""
HARD_MAX_ITEM_BYTES: Final = 15 * 1024 * 1024
"""Ceiling for ``max_item_bytes``: the document plus its envelope must fit in 16 MiB."""
MAX_TRANSACTION_ITEMS: Final = 100
"""Operations per :meth:`transact`; MongoDB has no hard cap, 100 matches DynamoDB."""
RACE_ATTEMPTS: Final = 3
"""Attempts of a create/increment on secantusdb whose document vanished or appeared between
its round trips (MongoDB needs one round trip, hence no retry)."""
TRANSACTION_ATTEMPTS: Final = 5
"""Attempts of a transaction that hits a transient error (WriteConflict and friends)."""
BACKOFF_BASE_S: Final = 0.01
BACKOFF_CAP_S: Final = 0.25
PARTITION_SORT_INDEX: Final = "stalwart_partition_sort"
TTL_INDEX: Final = "stalwart_ttl"
INDEXES: Final = (
    IndexModel([("_id.p", ASCENDING), ("_id.s", ASCENDING)], name=PARTITION_SORT_INDEX),
    IndexModel([("exp", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=0),
)
"""What :func:`stalwart.storage.mongodb.ensure_indexes` creates: the query index and the TTL
index that physically removes expired records (logically they are gone at ``e <= now``)."""

_MAX_DATE: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Server error codes meaning "try again later" (state changes, timeouts, network, throttling).
_TRANSIENT_CODES: Final = frozenset(
    {
        6,
        7,
        50,
        89,
        91,
        112,
        133,
        189,
        202,
        251,
        262,
        9001,
        10107,
        11600,
        11602,
        13435,
        13436,
        16500,  # Cosmos DB's request-rate-too-large
    }
)
_TOO_LARGE_CODES: Final = frozenset({10334, 17419, 17420})
_BSON_INPUT_ERRORS: Final = (BSONError, OverflowError, UnicodeError, DocumentTooLarge)
ENGINE_ERRORS: Final = (PyMongoError, BSONError, OverflowError, UnicodeError)
"""What a driver throws back into a plan: the driver's and BSON's errors, nothing else."""

type Server = Literal["mongodb", "secantusdb"]
"""Whose semantics the plans follow: MongoDB's, or MongoDB's with secantusdb's workarounds."""
type ServerChoice = Literal["auto", "mongodb", "secantusdb"]
"""What a store accepts as ``server``; ``"auto"`` detects it (:func:`server_from_build_info`)."""
SERVER_CHOICES: Final[tuple[ServerChoice, ...]] = ("auto", "mongodb", "secantusdb")


# ---------------------------------------------------------------------------------------------
# Commands (what the executors perform)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FindOne:
    """``find_one(filter)`` -> the document or ``None``."""

    filter: Filter


@dataclass(frozen=True, slots=True)
class FindMany:
    """``find(filter).sort(field, direction).limit(limit)`` -> list of documents."""

    filter: Filter
    sort_field: str
    direction: Literal[1, -1]
    limit: int


@dataclass(frozen=True, slots=True)
class UpdateOne:
    """``find_one_and_update(filter, pipeline)`` -> the document before or after, or ``None``."""

    filter: Filter
    pipeline: Pipeline
    upsert: bool
    return_after: bool


@dataclass(frozen=True, slots=True)
class InsertOne:
    """``insert_one(document)`` -> ``None``; a taken ``_id`` raises ``DuplicateKeyError``."""

    document: Doc


@dataclass(frozen=True, slots=True)
class DeleteOne:
    """``find_one_and_delete(filter)`` -> the removed document or ``None``."""

    filter: Filter


@dataclass(frozen=True, slots=True)
class DetectServer:
    """Which :data:`Server` the store talks to. An executor answers from its per-client cache;
    only a client's first answer costs a round trip (``buildInfo``, see
    :func:`server_from_build_info`). Asked only by the plans whose commands differ."""


@dataclass(frozen=True, slots=True)
class StartTransaction:
    """Open a session (once per plan run) and start a transaction on it."""


@dataclass(frozen=True, slots=True)
class CommitTransaction:
    """Commit the running transaction."""


@dataclass(frozen=True, slots=True)
class AbortTransaction:
    """Abort the running transaction."""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Back off before retrying a transaction."""

    seconds: float


type Command = (
    DetectServer
    | InsertOne
    | FindOne
    | FindMany
    | UpdateOne
    | DeleteOne
    | StartTransaction
    | CommitTransaction
    | AbortTransaction
    | Sleep
)
type Plan[T] = Generator[Command, Any, T]


@dataclass(frozen=True, slots=True)
class Settings:
    """What a plan needs from its store."""

    clock: Clock
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES


def server_from_build_info(reply: Mapping[str, Any]) -> Server:
    """The server behind a ``buildInfo`` reply: secantusdb reports ``secantusVersion`` beside
    the MongoDB ``version`` it emulates; MongoDB (and anything else) is taken at its word."""
    return "secantusdb" if "secantusVersion" in reply else "mongodb"


def check_server(server: str) -> ServerChoice:
    """Validate a store's ``server`` choice."""
    match server:
        case "auto" | "mongodb" | "secantusdb":
            return server
    msg = f"server must be one of {', '.join(SERVER_CHOICES)}; got {server!r}"
    raise StoreConfigurationError(msg)


def check_max_item_bytes(max_item_bytes: int) -> int:
    """Validate a store's item limit."""
    if (
        isinstance(max_item_bytes, bool)
        or not isinstance(max_item_bytes, int)
        or not 1 <= max_item_bytes <= HARD_MAX_ITEM_BYTES
    ):
        raise InvalidRecord(
            f"max_item_bytes must be an int in 1..{HARD_MAX_ITEM_BYTES}, got {max_item_bytes!r}"
        )
    return max_item_bytes


# ---------------------------------------------------------------------------------------------
# Building blocks: ids, expiry, liveness
# ---------------------------------------------------------------------------------------------


def doc_id(key: Key) -> Doc:
    """The ``_id`` of a key; field order is fixed so equality on ``_id`` always matches."""
    return {"p": key.partition, "s": key.sort}


def expiry_date(expires_at: float | None) -> datetime | None:
    """The BSON date the TTL index reads (millisecond precision, clamped to BSON's range)."""
    if expires_at is None:
        return None
    try:
        return datetime.fromtimestamp(expires_at, UTC)
    except (OverflowError, OSError, ValueError):
        return _MAX_DATE if expires_at > 0 else _EPOCH


def live_filter(now: float) -> Filter:
    """Query-language condition: the record has no expiry or expires after ``now``."""
    return {"$or": [{"e": None}, {"e": {"$gt": now}}]}


def live_expr(now: float) -> dict[str, Any]:
    """Aggregation-expression twin of :func:`live_filter` for pipeline updates.

    A document that an upsert has only just materialised holds nothing but ``_id``; requiring
    ``v >= 1`` makes it (and a transaction's tombstone, ``v == 0``) count as absent.
    """
    return {
        "$and": [
            {"$gte": [{"$ifNull": ["$v", 0]}, 1]},
            {
                "$or": [
                    {"$eq": [{"$ifNull": ["$e", None]}, None]},
                    {"$gt": ["$e", now]},
                ]
            },
        ]
    }


def is_live(doc: Mapping[str, Any] | None, now: float) -> bool:
    """Python twin of :func:`live_expr`, applied to documents the server returned."""
    if doc is None or doc.get("v", 0) < 1:
        return False
    expires_at = doc.get("e")
    return expires_at is None or expires_at > now


def decode(doc: Mapping[str, Any]) -> Record:
    """A stored document as a :class:`Record`."""
    ident = doc["_id"]
    expires_at = doc.get("e")
    return Record(
        key=Key(ident["p"], ident["s"]),
        data=doc["d"],
        version=doc["v"],
        expires_at=None if expires_at is None else float(expires_at),
    )


def decode_live(doc: Mapping[str, Any] | None, now: float) -> Record | None:
    """The record if ``doc`` is live, else ``None``."""
    return decode(doc) if doc is not None and is_live(doc, now) else None


def _new_document(
    data: JSONObject, version: int, expires_at: float | None, token: ObjectId
) -> dict[str, Any]:
    """A whole record as a ``$replaceWith`` expression (data wrapped in ``$literal`` so keys
    such as ``"$x"`` or strings such as ``"$field"`` are stored, never evaluated)."""
    document: dict[str, Any] = {
        "_id": "$_id",
        "d": {"$literal": data},
        "v": version,
        "e": expires_at,
        "w": token,
    }
    expires = expiry_date(expires_at)
    if expires is not None:
        document["exp"] = expires
    return document


def _switch(token: ObjectId, branches: list[tuple[dict[str, Any], Any]], default: Any) -> Pipeline:
    """``$replaceWith`` a ``$switch`` whose first branch keeps a document this write already
    produced (a retried attempt) unchanged."""
    cases = [{"case": {"$eq": ["$w", token]}, "then": "$$ROOT"}]
    cases += [{"case": case, "then": then} for case, then in branches]
    return [{"$replaceWith": {"$switch": {"branches": cases, "default": default}}}]


def _record_data(data: JSONObject, settings: Settings) -> JSONObject:
    # Store the JSON round trip so every engine returns the same values (tuples become lists,
    # non-str keys are refused by encode_data's json.dumps semantics rather than by BSON).
    return stored_copy(data, encode_data(data, max_bytes=settings.max_item_bytes))


# ---------------------------------------------------------------------------------------------
# Error translation
# ---------------------------------------------------------------------------------------------


def translate_error(exc: BaseException) -> StorageError:
    """Map a driver, BSON or server error to the contract's error tree."""
    if isinstance(exc, _BSON_INPUT_ERRORS):
        return InvalidRecord(f"MongoDB cannot store this record: {exc}")
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError | WriteConcernError):
        return StoreUnavailable(f"MongoDB is unavailable: {exc}")
    if isinstance(exc, PyMongoError):
        code = getattr(exc, "code", None)
        if code in _TOO_LARGE_CODES:
            return InvalidRecord(f"MongoDB refused the record as too large: {exc}")
        if (
            code in _TRANSIENT_CODES
            or exc.timeout
            or exc.has_error_label("TransientTransactionError")
            or exc.has_error_label("RetryableWriteError")
        ):
            return StoreUnavailable(f"MongoDB is unavailable: {exc}")
        return StorageError(f"MongoDB failed: {exc}")
    msg = f"unexpected error from the MongoDB driver: {exc!r}"
    return StorageError(msg)


def guarded[T](plan: Plan[T]) -> Plan[T]:
    """Run ``plan`` and translate any engine error that escapes it (``raise ... from``)."""
    try:
        return (yield from plan)
    except StorageError:
        raise
    except (PyMongoError, *_BSON_INPUT_ERRORS) as exc:
        raise translate_error(exc) from exc


def _upsert(command: UpdateOne) -> Plan[Any]:
    """Run an upsert, retrying once when a concurrent upsert inserted the same ``_id`` first.

    MongoDB 4.2+ retries such races on the server; the retry here covers other servers. The
    second attempt sees the winner's document, so the race resolves like any conflict.
    """
    try:
        return (yield command)
    except DuplicateKeyError:
        return (yield command)


# ---------------------------------------------------------------------------------------------
# Single-record commands and outcomes
# ---------------------------------------------------------------------------------------------


def create_command(
    key: Key, data: JSONObject, expires_at: float | None, now: float, token: ObjectId
) -> UpdateOne:
    """Upsert that keeps a live document unchanged, else writes version 1; returns AFTER
    (the unchanged live document *is* the current record, so AFTER says everything)."""
    pipeline = _switch(
        token, [(live_expr(now), "$$ROOT")], _new_document(data, 1, expires_at, token)
    )
    return UpdateOne({"_id": doc_id(key)}, pipeline, upsert=True, return_after=True)


def create_outcome(
    after: Doc | None, record: Record, now: float, token: ObjectId
) -> Record | AlreadyExists | None:
    """Our record, the live record that blocked us, or ``None``: nothing live and not ours
    (secantusdb only: the document read back changed after its lost upsert reply; try
    again)."""
    if after is not None and after.get("w") == token:
        return record
    if after is not None and is_live(after, now):
        return AlreadyExists(record.key, decode(after))
    return None


def not_like_mongodb(key: Key) -> StorageError:
    """The error for an upsert answered without its post-image, which MongoDB never does."""
    msg = (
        f"the server answered an upsert of {key} without the document it wrote, which MongoDB "
        "never does; if it is an emulator, see docs/storage/mongodb.md (server=secantusdb)"
    )
    return StorageError(msg)


def _upsert_after(command: UpdateOne, key: Key, server: Server) -> Plan[Doc | None]:
    """Run an upsert that returns AFTER: one round trip, since MongoDB always returns an
    upsert's post-image.

    secantusdb replies ``value: null`` to an upsert that a concurrent upsert beat to the insert
    (it applies our pipeline to the winner's document, then forgets the post-image); on that
    server alone the document is read back, a second round trip, and may have changed again
    by then (``None`` or not ours: the caller tries again).
    """
    after = yield from _upsert(command)
    if after is not None:
        return after  # type: ignore[no-any-return]
    if server == "mongodb":
        raise not_like_mongodb(key)
    return (yield FindOne({"_id": doc_id(key)}))  # type: ignore[no-any-return]


def replace_command(
    key: Key,
    data: JSONObject,
    *,
    expected_version: int,
    expires_at: float | None,
    now: float,
    token: ObjectId,
) -> UpdateOne:
    """Replace a live document at ``expected_version``, else leave it; returns AFTER."""
    matches = {"$and": [live_expr(now), {"$eq": ["$v", expected_version]}]}
    pipeline = _switch(
        token, [(matches, _new_document(data, expected_version + 1, expires_at, token))], "$$ROOT"
    )
    return UpdateOne({"_id": doc_id(key)}, pipeline, upsert=False, return_after=True)


def write_outcome(after: Doc | None, now: float, token: ObjectId) -> Record | Literal[True] | None:
    """``True`` if our conditional write produced ``after``, else the live record left
    unchanged (or ``None``).

    Every conditional write returns AFTER rather than BEFORE: when the condition fails the
    document is untouched, so AFTER is the current record, and a post-image is what the
    server captured atomically with the write (secantusdb's pre-image is read before it
    takes its lock, so it can be stale; MongoDB's is exact either way).
    """
    if after is not None and after.get("w") == token:
        return True
    return decode_live(after, now)


def delete_filter(key: Key, expected_version: int | None, now: float) -> Filter:
    """``_id`` and the live condition, plus the version when the delete is conditional.

    The whole condition sits in the filter (not in Python after the fact): a delete that
    lands is then known to have removed a live record, on any server. An expired document
    is left for the TTL index; it is absent to every operation already.
    """
    if expected_version is None:
        return {"_id": doc_id(key), **live_filter(now)}
    return {"_id": doc_id(key), "v": expected_version, **live_filter(now)}


def fresh_counter(
    key: Key, field: str, by: float, expires_at: float | None, token: ObjectId
) -> Doc:
    """The document an increment creates where no document exists."""
    document: Doc = {"_id": doc_id(key), "d": {field: by}, "v": 1, "e": expires_at, "w": token}
    expires = expiry_date(expires_at)
    if expires is not None:
        document["exp"] = expires
    return document


def increment_command(
    key: Key,
    field: str,
    by: float,
    *,
    expires_at: float | None,
    now: float,
    token: ObjectId,
    upsert: bool,
) -> UpdateOne:
    """Add ``by`` to ``d.<field>`` server-side; returns AFTER.

    Absent (upsert only) or expired: a fresh version-1 document ``{field: by}``. Live with a
    numeric or missing field: ``$add`` (ints stay ints), version + 1, expiry kept. Live with
    anything else in the field: unchanged, which the decoder reports as
    :class:`InvalidRecord`.
    """
    path = f"$d.{field}"
    fresh: dict[str, Any] = {
        "_id": "$_id",
        "d": {field: {"$literal": by}},
        "v": 1,
        "e": expires_at,
        "w": token,
    }
    expires = expiry_date(expires_at)
    if expires is not None:
        fresh["exp"] = expires
    bumped = {
        "$mergeObjects": [
            "$$ROOT",
            {
                "d": {"$mergeObjects": ["$d", {field: {"$add": [{"$ifNull": [path, 0]}, by]}}]},
                "v": {"$add": ["$v", 1]},
                "w": token,
            },
        ]
    }
    numeric: dict[str, Any] = {"$isNumber": path}
    if isinstance(by, int) and by:
        # $add turns an int64 overflow into a double: an integer field must stay in range.
        in_range = (
            {"$lte": [path, MAX_INTEGER - by]} if by > 0 else {"$gte": [path, MIN_INTEGER - by]}
        )
        integer = {"$in": [{"$type": path}, ["int", "long"]]}
        numeric = {"$and": [numeric, {"$or": [{"$not": [integer]}, in_range]}]}
    numeric_or_missing = {"$or": [numeric, {"$eq": [{"$type": path}, "missing"]}]}
    pipeline = _switch(
        token, [({"$not": [live_expr(now)]}, fresh), (numeric_or_missing, bumped)], "$$ROOT"
    )
    return UpdateOne({"_id": doc_id(key)}, pipeline, upsert=upsert, return_after=True)


def increment_outcome(after: Doc, key: Key, field: str, token: ObjectId, by: float) -> Record:
    """The incremented record, or :class:`InvalidRecord`: a post-image our write did not
    produce is a live document whose ``field`` holds something other than a number, or an
    integer that ``by`` would take out of the signed 64-bit range."""
    if after.get("w") == token:
        return decode(after)
    value = after.get("d", {}).get(field)
    if integer_sum_overflows(value, by):
        raise InvalidRecord(
            f"cannot increment {field!r} of {key}: {value} + {by} would leave the signed "
            "64-bit integer range"
        )
    raise InvalidRecord(f"cannot increment {field!r} of {key}: it holds {value!r}, not a number")


def _increment_without_upsert(
    key: Key, field: str, amount: float, expires_at: float | None, *, now: float, token: ObjectId
) -> Plan[Record]:
    """secantusdb's increment: one pipeline update whenever a document exists (live or
    expired). Where none exists, an ``insert`` of the fresh counter follows (a second round
    trip, only for a counter's first increment), and an insert that loses to a concurrent
    creator goes back to the update.

    Not an upsert: secantusdb loses a contended upsert's post-image (see
    :func:`_upsert_after`), and a read-back cannot recover the exact value this increment
    produced. ``_id`` uniqueness makes the insert atomic.
    """
    update = increment_command(
        key, field, amount, expires_at=expires_at, now=now, token=token, upsert=False
    )
    fresh = fresh_counter(key, field, amount, expires_at, token)
    for _ in range(RACE_ATTEMPTS):
        after = yield update
        if after is not None:
            return increment_outcome(after, key, field, token, amount)
        try:
            yield InsertOne(fresh)
        except DuplicateKeyError:
            continue
        return decode(fresh)
    raise StoreUnavailable(f"increment of {key} kept racing concurrent writers; try again")


# ---------------------------------------------------------------------------------------------
# Query command and page
# ---------------------------------------------------------------------------------------------


def query_command(
    partition: str, *, prefix: str, limit: int, cursor: str | None, descending: bool, now: float
) -> FindMany:
    """``find`` on the (``_id.p``, ``_id.s``) index: prefix range, cursor bound, live; one
    extra document is fetched to learn whether another page exists."""
    sort_range: dict[str, str] = {}
    if prefix:
        sort_range["$gte"] = prefix
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            sort_range["$lt"] = upper
    if cursor is not None:
        after = decode_cursor(cursor, partition)
        if descending:
            sort_range["$lt"] = min(after, sort_range.get("$lt", after))
        else:
            sort_range["$gt"] = after
    query: Filter = {"_id.p": partition}
    if sort_range:
        query["_id.s"] = sort_range
    query.update(live_filter(now))
    return FindMany(query, "_id.s", -1 if descending else 1, limit + 1)


def page_from(docs: Sequence[Doc], limit: int) -> Page:
    """The page and, when more documents matched, the cursor after its last record."""
    records = [decode(doc) for doc in docs[:limit]]
    cursor = (
        encode_cursor(records[-1].key.partition, records[-1].key.sort)
        if len(docs) > limit and records
        else None
    )
    return Page(records, cursor)


# ---------------------------------------------------------------------------------------------
# Transaction items, commit and abort
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One transaction item with its validated values (computed once, before any I/O)."""

    operation: Operation
    data: JSONObject | None = None
    ttl: float | None = None


def _prepare(operation: Operation, settings: Settings) -> _Prepared:
    match operation:
        case Create(data=data, ttl=ttl):
            return _Prepared(operation, _record_data(data, settings), ttl)
        case Replace(data=data, expected_version=version, ttl=ttl):
            validate_version(version)
            return _Prepared(operation, _record_data(data, settings), ttl)
        case Delete(expected_version=version) | Check(expected_version=version):
            if version is not None:
                validate_version(version)
            return _Prepared(operation)
        case Increment(field=field, by=by, ttl=ttl):
            validate_field(field)
            validate_amount(by)
            return _Prepared(operation, None, ttl)


def check_command(key: Key, expected_version: int | None, now: float, token: ObjectId) -> UpdateOne:
    """A Check that *writes*, so a concurrent transaction touching the key conflicts with it.

    MongoDB transactions run at snapshot isolation: a plain read would allow write skew (two
    transactions each checking what the other writes). Requiring a live version: touch ``w``.
    Requiring absence: leave a live document alone (a conflict), else upsert a tombstone —
    ``v = 0``, already expired, removed by the TTL index — that stays invisible to every
    operation. Returns AFTER.
    """
    if expected_version is None:
        tombstone = {"_id": "$_id", "d": {}, "v": 0, "e": float("-inf"), "exp": _EPOCH, "w": token}
        pipeline = _switch(token, [(live_expr(now), "$$ROOT")], tombstone)
        return UpdateOne({"_id": doc_id(key)}, pipeline, upsert=True, return_after=True)
    matches = {"$and": [live_expr(now), {"$eq": ["$v", expected_version]}]}
    touched = {"$mergeObjects": ["$$ROOT", {"w": token}]}
    pipeline = _switch(token, [(matches, touched)], "$$ROOT")
    return UpdateOne({"_id": doc_id(key)}, pipeline, upsert=False, return_after=True)


def _transaction_item(
    index: int, item: _Prepared, now: float, server: Server
) -> Plan[Record | None]:
    """One item inside the transaction; raises :class:`TransactionConflict` when it fails."""
    operation, token = item.operation, ObjectId()
    match operation:
        case Create() | Replace():
            assert item.data is not None
            return (
                yield from _write_item(
                    index,
                    operation,
                    item.data,
                    expiry_from_ttl(item.ttl, now),
                    now=now,
                    token=token,
                    server=server,
                )
            )
        case Delete():
            yield from _delete_item(index, operation, now)
            return None
        case Check():
            yield from _check_item(index, operation, now, token)
            return None
        case Increment(field=field, by=by):
            command = increment_command(
                operation.key,
                field,
                by,
                expires_at=expiry_from_ttl(item.ttl, now),
                now=now,
                token=token,
                upsert=True,
            )
            after = yield from _upsert(command)
            if after is None and server == "mongodb":
                raise not_like_mongodb(operation.key)
            if after is None:
                # secantusdb lost the post-image (see _upsert_after); a read cannot recover
                # the value this increment produced, so the item counts as a conflict.
                raise TransactionConflict(index, operation, "the record changed concurrently")
            try:
                return increment_outcome(after, operation.key, field, token, by)
            except InvalidRecord as exc:
                msg = f"transaction item {index}: {exc}"
                raise InvalidRecord(msg) from None


def _write_item(
    index: int,
    operation: Create | Replace,
    data: JSONObject,
    expires_at: float | None,
    *,
    now: float,
    token: ObjectId,
    server: Server,
) -> Plan[Record]:
    key = operation.key
    if isinstance(operation, Create):
        command = create_command(key, data, expires_at, now, token)
        after = yield from _upsert_after(command, key, server)
        outcome = create_outcome(after, Record(key, data, 1, expires_at), now, token)
        if isinstance(outcome, AlreadyExists):
            raise TransactionConflict(
                index, operation, "a live record already exists", outcome.current
            )
        if outcome is None:
            raise TransactionConflict(index, operation, "the record changed concurrently")
        return outcome
    version = operation.expected_version
    after = yield replace_command(
        key, data, expected_version=version, expires_at=expires_at, now=now, token=token
    )
    found = write_outcome(after, now, token)
    if found is not True:
        raise TransactionConflict(index, operation, _version_reason(version, found), found)
    return Record(key, data, version + 1, expires_at)


def _delete_item(index: int, operation: Delete, now: float) -> Plan[None]:
    version = operation.expected_version
    removed = yield DeleteOne(delete_filter(operation.key, version, now))
    if version is not None and removed is None:
        current = decode_live((yield FindOne({"_id": doc_id(operation.key)})), now)
        raise TransactionConflict(index, operation, _version_reason(version, current), current)


def _check_item(index: int, operation: Check, now: float, token: ObjectId) -> Plan[None]:
    version = operation.expected_version
    found = write_outcome((yield check_command(operation.key, version, now, token)), now, token)
    if version is None:
        if found is not True:
            reason = "expected no live record" if found else "the record changed concurrently"
            raise TransactionConflict(index, operation, reason, found)
        return
    if found is not True:
        raise TransactionConflict(index, operation, _version_reason(version, found), found)


def _version_reason(expected_version: int, current: Record | None) -> str:
    found = "no live record" if current is None else f"version {current.version}"
    return f"expected version {expected_version}, found {found}"


def _is_transient(exc: PyMongoError) -> bool:
    # A timeout already spent the operation's whole budget (e.g. no server reachable):
    # retrying it here would multiply the caller's wait, so it surfaces as StoreUnavailable.
    if exc.timeout:
        return False
    return exc.has_error_label("TransientTransactionError") or getattr(exc, "code", None) == 112


def backoff_seconds(attempt: int) -> float:
    """Full-jitter exponential backoff between transaction attempts."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography


def _commit() -> Plan[None]:
    """Commit; an unknown commit result is retried (commit is idempotent), once more."""
    try:
        yield CommitTransaction()
    except PyMongoError as exc:
        if not exc.has_error_label("UnknownTransactionCommitResult"):
            raise
        yield CommitTransaction()


def _abort_quietly() -> Plan[None]:
    # The transaction is being abandoned anyway; the server aborts it on its own if this fails.
    try:
        yield AbortTransaction()
    except PyMongoError:
        return


def _is_write_conflict(exc: PyMongoError) -> bool:
    return getattr(exc, "code", None) == 112


# ---------------------------------------------------------------------------------------------
# The engine: one plan per operation; and each operation as a store runs it
# ---------------------------------------------------------------------------------------------


class MongoEngine:
    """MongoDB's plans, the :class:`~stalwart.storage._engine.Engine` of the MongoDB stores.

    Its state is the store's :class:`Settings`. The plans take checked arguments (the shared
    store validates keys, queries and a transaction's shape) and the call's ``now``.

    >>> engine = MongoEngine(Settings(clock=lambda: 0.0))
    >>> next(engine.get(Key("acct-1"), now=0.0)).filter["_id"]
    {'p': 'acct-1', 's': ''}
    """

    __slots__ = ("settings",)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def max_item_bytes(self) -> int:
        """Largest record data, in bytes of compact JSON."""
        return self.settings.max_item_bytes

    @property
    def max_transaction_items(self) -> int:
        """Operations per transaction (a stalwart limit; MongoDB has none)."""
        return MAX_TRANSACTION_ITEMS

    def get(self, key: Key, now: float) -> Plan[Record | None]:
        """``get``: one ``find`` on ``_id`` plus the live condition."""
        doc = yield FindOne({"_id": doc_id(key), **live_filter(now)})
        return decode_live(doc, now)

    def create(self, key: Key, data: JSONObject, ttl: float | None, now: float) -> Plan[Record]:
        """``create``: one upsert; AFTER tells our write from a live record that blocked it.

        On MongoDB the first attempt always decides; only secantusdb's read-back can need another.
        """
        stored = _record_data(data, self.settings)
        expires_at = expiry_from_ttl(ttl, now)
        token = ObjectId()
        record = Record(key, stored, 1, expires_at)
        server: Server = yield DetectServer()
        command = create_command(key, stored, expires_at, now, token)
        for _ in range(RACE_ATTEMPTS):
            after = yield from _upsert_after(command, key, server)
            outcome = create_outcome(after, record, now, token)
            if isinstance(outcome, AlreadyExists):
                raise outcome
            if outcome is not None:
                return outcome
        raise StoreUnavailable(f"create of {key} kept racing concurrent writers; try again")

    def replace(
        self,
        key: Key,
        data: JSONObject,
        expected_version: int,
        ttl: float | None,
        now: float,
    ) -> Plan[Record]:
        """``replace``: one pipeline update; AFTER carries the current record on a conflict."""
        validate_version(expected_version)
        stored = _record_data(data, self.settings)
        expires_at = expiry_from_ttl(ttl, now)
        token = ObjectId()
        after = yield replace_command(
            key,
            stored,
            expected_version=expected_version,
            expires_at=expires_at,
            now=now,
            token=token,
        )
        outcome = write_outcome(after, now, token)
        if outcome is not True:
            raise VersionConflict(key, expected_version, outcome)
        return Record(key, stored, expected_version + 1, expires_at)

    def delete(self, key: Key, expected_version: int | None, now: float) -> Plan[bool]:
        """``delete``: one ``find_one_and_delete``.

        Unconditional: ``True`` if a live record was removed. Conditional: on no match the current
        record is read in a second round trip -- the only conflict path that needs one, because a
        delete cannot return a document it did not remove (see docs/storage/mongodb.md).
        """
        if expected_version is not None:
            validate_version(expected_version)
        removed = yield DeleteOne(delete_filter(key, expected_version, now))
        if expected_version is None or removed is not None:
            return removed is not None
        current = yield FindOne({"_id": doc_id(key), **live_filter(now)})
        raise VersionConflict(key, expected_version, decode_live(current, now))

    def increment(
        self, key: Key, field: str, by: float, ttl: float | None, now: float
    ) -> Plan[Record]:
        """``increment``: one upsert whose pipeline update adds ``by`` server-side; AFTER is the
        result (on secantusdb: :func:`_increment_without_upsert`)."""
        validate_field(field)
        amount = validate_amount(by)
        expires_at = expiry_from_ttl(ttl, now)
        token = ObjectId()
        server: Server = yield DetectServer()
        if server == "secantusdb":
            return (
                yield from _increment_without_upsert(
                    key, field, amount, expires_at, now=now, token=token
                )
            )
        after = yield from _upsert(
            increment_command(
                key, field, amount, expires_at=expires_at, now=now, token=token, upsert=True
            )
        )
        if after is None:
            raise not_like_mongodb(key)
        return increment_outcome(after, key, field, token, amount)

    def query(
        self,
        partition: str,
        *,
        prefix: str,
        limit: int,
        cursor: str | None,
        descending: bool,
        now: float,
    ) -> Plan[Page]:
        """``query``: one ``find`` (the driver drains the batch)."""
        command = query_command(
            partition, prefix=prefix, limit=limit, cursor=cursor, descending=descending, now=now
        )
        docs = yield command
        return page_from(docs, limit)

    def transact(self, operations: Sequence[Operation], now: float) -> Plan[list[Record | None]]:
        """``transact``: one multi-document transaction; each item is the same conditional write
        as its single-record twin.

        A failed condition aborts and raises :class:`TransactionConflict` (a non-numeric counter
        raises :class:`InvalidRecord`, like :meth:`increment`). Transient errors -- above all
        ``WriteConflict`` with a concurrent transaction -- retry the whole transaction with
        backoff; when the attempts run out, a write conflict raises :class:`TransactionConflict`
        naming the item that collided (``-1``: at commit), anything else
        :class:`StoreUnavailable`.

        A retry reads the clock again: the backoff may have let records expire meanwhile.
        """
        prepared = [_prepare(operation, self.settings) for operation in operations]
        server: Server = yield DetectServer()
        last_error: PyMongoError | None = None
        conflict_index = -1
        for attempt in range(TRANSACTION_ATTEMPTS):
            if attempt:
                yield Sleep(backoff_seconds(attempt))
                now = self.settings.clock()
            yield StartTransaction()
            index = 0
            try:
                results: list[Record | None] = []
                for index, item in enumerate(prepared):
                    results.append((yield from _transaction_item(index, item, now, server)))
            except PyMongoError as exc:
                yield from _abort_quietly()
                if not _is_transient(exc):
                    raise
                last_error, conflict_index = exc, index
                continue
            except Exception:
                # A failed condition, a non-numeric counter or a record BSON cannot hold.
                yield from _abort_quietly()
                raise
            try:
                yield from _commit()
            except PyMongoError as exc:
                if not _is_transient(exc):
                    raise
                last_error, conflict_index = exc, -1
                continue
            return results
        assert last_error is not None
        if _is_write_conflict(last_error):
            operation = operations[conflict_index] if conflict_index >= 0 else None
            reason = (
                "write conflict with concurrent writers, still after "
                f"{TRANSACTION_ATTEMPTS} attempts"
            )
            raise TransactionConflict(conflict_index, operation, reason) from last_error
        msg = f"transaction failed {TRANSACTION_ATTEMPTS} times: {last_error}"
        raise StoreUnavailable(msg) from last_error
