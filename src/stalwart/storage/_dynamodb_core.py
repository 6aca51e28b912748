# Copyright 2026 stalwart contributors
"""DynamoDB wire logic without I/O: item codec, request builders, reply decoders, error mapping.

:class:`DynamoDBEngine` makes one *plan* per operation: a generator that yields :class:`Call`
(one low-level client request, e.g. ``Call("put_item", {...})``) or :class:`Sleep`, receives the
response dict (or a :class:`Failure` for a ``ClientError``) and returns the operation's result.
The sync and async executors in :mod:`stalwart.storage.dynamodb` only perform the steps, so both
share every rule here.

Item layout (one item per record)::

    pk       S  partition
    sk       S  sort key; "" is stored as "\\x00" (DynamoDB key attributes cannot be empty,
                and NUL is banned in keys, so it cannot collide and sorts first)
    v        N  version
    exp_at   N  exact expiry (epoch seconds); 1E+100 when the record never expires, so every
                item has it and every liveness check is the single comparison ``exp_at > :now``
    exp      N  ceil(exp_at) for DynamoDB TTL (integer seconds); NULL when it never expires
                (TTL ignores non-numbers)
    f:<name> N  a top-level data field holding a number DynamoDB can represent exactly, or
             S  the compact JSON of any other top-level value
    fl       SS names of the number fields that are floats (absent when none)

Top-level fields are top-level attributes so that :func:`increment_plan` is ONE UpdateItem
(``SET f = if_not_exists(f, 0) + :by``) that works on an absent record too: a Map attribute
would need the map to exist first (two round trips on the common "create a counter" path), and a
single JSON string cannot be incremented server-side at all. Values other than numbers stay JSON
strings, so nested numbers never meet DynamoDB's Decimal type and round-trip exactly.
"""

from __future__ import annotations

import decimal
import json
import math
import random
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from botocore.exceptions import BotoCoreError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from stalwart.storage._contract import (
    MAX_INTEGER,
    MIN_INTEGER,
    AlreadyExists,
    Check,
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
from stalwart.storage._query import decode_cursor, encode_cursor

type AttributeValue = dict[str, Any]
type Item = dict[str, AttributeValue]
type Request = dict[str, Any]
type Number = int | float

PK: Final = "pk"
SK: Final = "sk"
VERSION: Final = "v"
EXPIRES_AT: Final = "exp_at"
TTL_ATTRIBUTE: Final = "exp"
FLOAT_FIELDS: Final = "fl"
FIELD_PREFIX: Final = "f:"
EMPTY_SORT: Final = "\x00"
NEVER: Final = "1E+100"
_NEVER_DECIMAL: Final = decimal.Decimal(NEVER)

MAX_DATA_BYTES: Final = 350_000
"""Largest data JSON accepted: DynamoDB's item limit is 400 KB; the rest is keys and metadata."""
MAX_TRANSACTION_ITEMS: Final = 100
"""TransactWriteItems' limit."""
MAX_PARTITION_BYTES: Final = 2048
MAX_SORT_BYTES: Final = 1024
CONTENTION_ATTEMPTS: Final = 10
"""Rounds of an internal optimistic loop (expired-record increment, increments inside transact)
before giving up with StoreUnavailable; each round only repeats after another writer won."""
CONTENTION_BACKOFF_S: Final = 0.01
CONTENTION_BACKOFF_CAP_S: Final = 0.25

# DynamoDB numbers: 38 significant digits, magnitude 1E-130 .. 9.99E+125. Trapping Inexact (not
# Rounded) accepts 10**50 (trailing zeros) but refuses 39 significant digits.
_DYNAMO_NUMBERS: Final = decimal.Context(
    prec=38,
    Emax=125,
    Emin=-130,
    traps=[
        decimal.Inexact,
        decimal.Overflow,
        decimal.Underflow,
        decimal.Subnormal,
        decimal.InvalidOperation,
    ],
)
_ARITHMETIC: Final = decimal.Context(prec=38, traps=[decimal.InvalidOperation])

_THROTTLING_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "LimitExceededException",
        "TransactionInProgressException",
        "InternalFailure",
    }
)
_THROTTLING_REASONS: Final = frozenset(
    {"ProvisionedThroughputExceeded", "ThrottlingError", "RequestLimitExceeded"}
)


# ---------------------------------------------------------------------------------------------
# Plan steps and replies
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One request to the low-level client: ``client.<operation>(**request)``."""

    operation: str
    request: Request


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before the next step (only table creation polls)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Failure:
    """A ``ClientError`` as a plan sees it: the error code, message and full response."""

    code: str
    message: str
    response: Mapping[str, Any]
    cause: BaseException

    @property
    def item(self) -> Item | None:
        """The item DynamoDB returned with a failed condition (``ALL_OLD``)."""
        item = self.response.get("Item")
        return cast("Item", item) if item else None


type Reply = Mapping[str, Any] | Failure | None
type Plan[T] = Generator[Call | Sleep, Reply, T]


def failure_from_response(response: Mapping[str, Any], cause: BaseException) -> Failure:
    """Wrap a botocore ``ClientError.response`` for a plan."""
    error = response.get("Error", {})
    return Failure(str(error.get("Code", "")), str(error.get("Message", "")), response, cause)


def map_failure(failure: Failure) -> StorageError:
    """The contract error for a DynamoDB error response that no plan handles itself."""
    status = int(failure.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if failure.code in _THROTTLING_CODES or status >= 500:
        return StoreUnavailable(f"DynamoDB {failure.code or status}: {failure.message}")
    if failure.code == "ValidationException":
        return InvalidRecord(f"DynamoDB rejected the request: {failure.message}")
    if failure.code == "ResourceNotFoundException":
        return StorageError(
            f"DynamoDB table not found (create it, or open with "
            f"create=true in development): {failure.message}"
        )
    return StorageError(f"DynamoDB {failure.code}: {failure.message}")


def map_transport_error(exc: BaseException) -> StorageError:
    """The contract error for an exception raised before any DynamoDB response arrived."""
    if isinstance(exc, HTTPClientError | BotoConnectionError | OSError | TimeoutError):
        return StoreUnavailable(f"DynamoDB unreachable: {type(exc).__name__}: {exc}")
    if isinstance(exc, BotoCoreError):
        return StorageError(f"DynamoDB client error: {type(exc).__name__}: {exc}")
    return StorageError(f"unexpected DynamoDB client failure: {type(exc).__name__}: {exc}")


def _expect_success(reply: Reply) -> Mapping[str, Any]:
    if isinstance(reply, Failure):
        raise map_failure(reply) from reply.cause
    assert reply is not None
    return reply


# ---------------------------------------------------------------------------------------------
# Item codec
# ---------------------------------------------------------------------------------------------


def dynamo_number(value: float) -> str | None:
    """``value`` as a DynamoDB N string, or ``None`` if DynamoDB cannot hold it exactly.

    >>> dynamo_number(2.5), dynamo_number(10**40), dynamo_number(10**40 + 1)
    ('2.5', '10000000000000000000000000000000000000000', None)
    """
    exact = decimal.Decimal(value) if isinstance(value, int) else decimal.Decimal(repr(value))
    try:
        fitted = _DYNAMO_NUMBERS.create_decimal(exact)
    except decimal.DecimalException:
        return None
    if fitted.is_zero():
        return "0"  # DynamoDB has no negative zero; the float marker keeps 0.0 a float
    return format(fitted, "f")


def _decode_number(text: str, *, is_float: bool) -> Number:
    number = decimal.Decimal(text)
    if is_float or number != number.to_integral_value():
        return float(number)
    return int(number)


def encode_sort(sort: str) -> str:
    """The stored ``sk`` for a contract sort key.

    >>> encode_sort(""), encode_sort("2026-11")
    ('\\x00', '2026-11')
    """
    return sort or EMPTY_SORT


def decode_sort(stored: str) -> str:
    """The contract sort key for a stored ``sk``."""
    return "" if stored == EMPTY_SORT else stored


def check_key_bytes(key: Key) -> Key:
    """DynamoDB's byte limits on key attributes, for a key the contract's rules accepted."""
    if len(key.partition.encode()) > MAX_PARTITION_BYTES:
        raise InvalidRecord(f"key partition is over DynamoDB's {MAX_PARTITION_BYTES}-byte limit")
    if len(key.sort.encode()) > MAX_SORT_BYTES:
        raise InvalidRecord(f"key sort is over DynamoDB's {MAX_SORT_BYTES}-byte limit")
    return key


def key_attributes(key: Key) -> Item:
    """The ``Key`` parameter of a request."""
    return {PK: {"S": key.partition}, SK: {"S": encode_sort(key.sort)}}


def normalize_data(data: JSONObject) -> JSONObject:
    """Validate ``data`` and return it exactly as JSON will give it back (str keys, lists)."""
    return stored_copy(data, encode_data(data, max_bytes=MAX_DATA_BYTES))


def _field_value(value: Any) -> tuple[AttributeValue, bool]:
    """Encode one top-level value; the flag says it is a float stored as N."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = dynamo_number(value)
        if number is not None:
            return {"N": number}, isinstance(value, float)
    return {"S": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}, False


def _expiry_attributes(expires_at: float | None) -> Item:
    if expires_at is None:
        return {EXPIRES_AT: {"N": NEVER}, TTL_ATTRIBUTE: {"NULL": True}}
    exact = dynamo_number(expires_at)
    if exact is None:  # pragma: no cover - a finite float epoch always fits
        raise InvalidRecord(f"expiry {expires_at!r} is not storable")
    return {EXPIRES_AT: {"N": exact}, TTL_ATTRIBUTE: {"N": str(math.ceil(expires_at))}}


def encode_item(key: Key, data: JSONObject, version: int, expires_at: float | None) -> Item:
    """The full item for a record (``data`` already normalized)."""
    item: Item = {
        **key_attributes(key),
        VERSION: {"N": str(version)},
        **_expiry_attributes(expires_at),
    }
    floats: list[str] = []
    for name, value in data.items():
        item[FIELD_PREFIX + name], is_float = _field_value(value)
        if is_float:
            floats.append(name)
    if floats:
        item[FLOAT_FIELDS] = {"SS": sorted(floats)}
    return item


def decode_expiry(item: Item) -> float | None:
    """The record's ``expires_at`` from an item."""
    stored = item.get(EXPIRES_AT)
    if stored is None or "N" not in stored:
        return None
    exact = decimal.Decimal(stored["N"])
    return None if exact >= _NEVER_DECIMAL else float(exact)


def decode_item(item: Item) -> Record:
    """The record stored in ``item`` (whether live or not)."""
    floats = set(item.get(FLOAT_FIELDS, {}).get("SS", ()))
    data: JSONObject = {}
    for attribute, value in item.items():
        if not attribute.startswith(FIELD_PREFIX):
            continue
        name = attribute[len(FIELD_PREFIX) :]
        if "N" in value:
            data[name] = _decode_number(value["N"], is_float=name in floats)
        else:
            data[name] = json.loads(value["S"])
    key = Key(item[PK]["S"], decode_sort(item[SK]["S"]))
    return Record(key, data, int(item[VERSION]["N"]), decode_expiry(item))


def is_live(item: Item, now: float) -> bool:
    """Whether ``item`` holds a record that has not expired at ``now``."""
    expires_at = decode_expiry(item)
    return expires_at is None or expires_at > now


def live_record(item: Item | None, now: float) -> Record | None:
    """``decode_item`` for a live item; ``None`` for a missing or expired one."""
    if item is None or VERSION not in item or not is_live(item, now):
        return None
    return decode_item(item)


def _now_value(now: float) -> AttributeValue:
    text = dynamo_number(now)
    assert text is not None
    return {"N": text}


# ---------------------------------------------------------------------------------------------
# Conditions (names and values are returned together: DynamoDB rejects unused placeholders)
# ---------------------------------------------------------------------------------------------

_ABSENT_OR_EXPIRED: Final = "attribute_not_exists(#pk) OR #ea <= :now"
_LIVE_AT_VERSION: Final = "#v = :expected AND #ea > :now"


def _condition(expression: str, now: float, expected: int | None = None) -> Request:
    names = {"#ea": EXPIRES_AT}
    values: dict[str, AttributeValue] = {":now": _now_value(now)}
    if "#pk" in expression:
        names["#pk"] = PK
    if expected is not None:
        names["#v"] = VERSION
        values[":expected"] = {"N": str(expected)}
    return {
        "ConditionExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def create_condition(now: float) -> Request:
    """Absent, or present but expired."""
    return _condition(_ABSENT_OR_EXPIRED, now)


def version_condition(expected: int, now: float) -> Request:
    """Live at exactly ``expected``."""
    return _condition(_LIVE_AT_VERSION, now, expected)


def live_condition(now: float) -> Request:
    """Present and live (an absent item has no ``exp_at``, so the comparison is false)."""
    return _condition("#ea > :now", now)


# ---------------------------------------------------------------------------------------------
# Request builders
# ---------------------------------------------------------------------------------------------


def get_request(table: str, key: Key) -> Request:
    """GetItem, strongly consistent."""
    return {"TableName": table, "Key": key_attributes(key), "ConsistentRead": True}


def put_request(table: str, item: Item, condition: Request) -> Request:
    """Conditional PutItem that returns the old item when the condition fails."""
    return {
        "TableName": table,
        "Item": item,
        **condition,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def delete_request(table: str, key: Key, expected_version: int | None, now: float) -> Request:
    """DeleteItem conditional on liveness (and the version when given)."""
    condition = (
        live_condition(now)
        if expected_version is None
        else version_condition(expected_version, now)
    )
    return {
        "TableName": table,
        "Key": key_attributes(key),
        **condition,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def increment_request(
    table: str, key: Key, field: str, by: float, *, expires_at: float | None, now: float
) -> Request:
    """One UpdateItem that increments a live record or creates an absent one.

    The condition fails on an expired record (handled by :func:`increment_plan`), on a
    non-numeric field and on an integer sum outside the signed 64-bit range (the ALL_OLD item
    tells them apart).
    """
    amount = dynamo_number(by)
    if amount is None:
        raise InvalidRecord(f"increment amount {by!r} is outside DynamoDB's number range")
    expiry = _expiry_attributes(expires_at)
    update = (
        "SET #f = if_not_exists(#f, :zero) + :by, #v = if_not_exists(#v, :zero) + :one, "
        "#ea = if_not_exists(#ea, :ea), #exp = if_not_exists(#exp, :exp)"
    )
    names = {
        "#pk": PK,
        "#f": FIELD_PREFIX + field,
        "#v": VERSION,
        "#ea": EXPIRES_AT,
        "#exp": TTL_ATTRIBUTE,
    }
    values: dict[str, AttributeValue] = {
        ":zero": {"N": "0"},
        ":one": {"N": "1"},
        ":by": {"N": amount},
        ":ea": expiry[EXPIRES_AT],
        ":exp": expiry[TTL_ATTRIBUTE],
        ":now": _now_value(now),
        ":number": {"S": "N"},
    }
    condition = (
        "(attribute_not_exists(#pk) OR #ea > :now) AND "
        "(attribute_not_exists(#f) OR attribute_type(#f, :number))"
    )
    names["#fl"] = FLOAT_FIELDS
    if isinstance(by, int):
        # An integer field (one not listed as a float) must stay inside the signed 64-bit range.
        condition += (
            " AND (attribute_not_exists(#f) OR contains(#fl, :name) OR #f BETWEEN :lo AND :hi)"
        )
        values[":name"] = {"S": field}
        values[":lo"] = {"N": str(MIN_INTEGER - min(by, 0))}
        values[":hi"] = {"N": str(MAX_INTEGER - max(by, 0))}
    else:
        # Adding a float makes the field a float for good; ADD on a string set is atomic too.
        update += " ADD #fl :fl"
        values[":fl"] = {"SS": [field]}
    return {
        "TableName": table,
        "Key": key_attributes(key),
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ReturnValues": "ALL_NEW",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def query_request(
    table: str,
    partition: str,
    *,
    prefix: str,
    limit: int,
    descending: bool,
    start_sort: str | None,
    now: float,
) -> Request:
    """One Query page; expired records are filtered server-side (after ``Limit`` applies)."""
    names = {"#pk": PK, "#ea": EXPIRES_AT}
    values: dict[str, AttributeValue] = {":p": {"S": partition}, ":now": _now_value(now)}
    key_condition = "#pk = :p"
    if prefix:
        key_condition += " AND begins_with(#sk, :prefix)"
        names["#sk"] = SK
        values[":prefix"] = {"S": prefix}
    request: Request = {
        "TableName": table,
        "KeyConditionExpression": key_condition,
        "FilterExpression": "#ea > :now",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ConsistentRead": True,
        "ScanIndexForward": not descending,
        "Limit": limit,
    }
    if start_sort is not None:
        request["ExclusiveStartKey"] = {PK: {"S": partition}, SK: {"S": start_sort}}
    return request


# ---------------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A validated operation: normalized data and its TTL, ready to build on each attempt."""

    operation: Operation
    data: JSONObject | None = None


def _prepare(operation: Operation, now: float) -> _Prepared:
    check_key_bytes(operation.key)
    match operation:
        case Create(data=data, ttl=ttl):
            expiry_from_ttl(ttl, now)
            return _Prepared(operation, normalize_data(data))
        case Replace(data=data, expected_version=expected, ttl=ttl):
            validate_version(expected)
            expiry_from_ttl(ttl, now)
            return _Prepared(operation, normalize_data(data))
        case Increment(field=field, by=by, ttl=ttl):
            validate_field(field)
            validate_amount(by)
            expiry_from_ttl(ttl, now)
            if dynamo_number(by) is None:
                raise InvalidRecord(f"increment amount {by!r} is outside DynamoDB's range")
            return _Prepared(operation)
        case Delete(expected_version=expected) | Check(expected_version=expected):
            if expected is not None:
                validate_version(expected)
            return _Prepared(operation)


def _add(current: Number, by: Number) -> Number:
    """``current + by`` the way DynamoDB computes it (decimal), typed like the contract."""
    total = _ARITHMETIC.add(
        decimal.Decimal(repr(current) if isinstance(current, float) else current),
        decimal.Decimal(repr(by) if isinstance(by, float) else by),
    )
    if isinstance(current, float) or isinstance(by, float):
        return float(total)
    return int(total)


def _incremented(
    operation: Increment,
    snapshot: Item | None,
    now: float,
) -> tuple[Record, Request]:
    """The record an Increment writes given the snapshot read, and the condition pinning it."""
    key = operation.key
    current = live_record(snapshot, now)
    if current is None:
        record = Record(
            key, {operation.field: operation.by}, 1, expiry_from_ttl(operation.ttl, now)
        )
        return record, create_condition(now)
    assert snapshot is not None
    stored = snapshot.get(FIELD_PREFIX + operation.field)
    if stored is not None and "N" not in stored:
        raise _non_numeric(key, operation.field)
    old = current.data.get(operation.field, 0)
    if integer_sum_overflows(old, operation.by):
        raise _out_of_range(key, operation.field, operation.by)
    total = _add(old, operation.by)
    if (isinstance(total, float) and not math.isfinite(total)) or dynamo_number(total) is None:
        raise InvalidRecord(f"incrementing {operation.field!r} of {key} overflows DynamoDB")
    data = {**current.data, operation.field: total}
    record = Record(key, data, current.version + 1, current.expires_at)
    return record, version_condition(current.version, now)


def _transact_item(
    table: str,
    prepared: _Prepared,
    snapshot: Item | None,
    now: float,
) -> tuple[Request, Record | None]:
    operation = prepared.operation
    key = operation.key
    match operation:
        case Create(ttl=ttl):
            assert prepared.data is not None
            record = Record(key, prepared.data, 1, expiry_from_ttl(ttl, now))
            condition = create_condition(now)
        case Replace(expected_version=expected, ttl=ttl):
            assert prepared.data is not None
            record = Record(key, prepared.data, expected + 1, expiry_from_ttl(ttl, now))
            condition = version_condition(expected, now)
        case Increment():
            record, condition = _incremented(operation, snapshot, now)
        case Delete(expected_version=None):
            return {"Delete": {"TableName": table, "Key": key_attributes(key)}}, None
        case Delete(expected_version=int() as expected):
            return {
                "Delete": {
                    "TableName": table,
                    "Key": key_attributes(key),
                    **version_condition(expected, now),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }, None
        case Check(expected_version=expected):
            condition = (
                create_condition(now) if expected is None else version_condition(expected, now)
            )
            return {
                "ConditionCheck": {
                    "TableName": table,
                    "Key": key_attributes(key),
                    **condition,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }, None
    item = encode_item(key, record.data, record.version, record.expires_at)
    return {"Put": put_request(table, item, condition)}, record


def _conflict_reason(operation: Operation, current: Record | None) -> str:
    found = "absent" if current is None else f"live at version {current.version}"
    match operation:
        case Create() | Check(expected_version=None):
            wanted = "absent"
        case (
            Replace(expected_version=expected)
            | Delete(expected_version=expected)
            | Check(expected_version=expected)
        ):
            wanted = f"live at version {expected}"
        case Increment():
            wanted = "unchanged since read"
    return f"condition failed: expected {wanted}, found {found}"


def decode_cancellation(
    failure: Failure, operations: Sequence[Operation], now: float, retryable: frozenset[int]
) -> StorageError | None:
    """The error for a TransactionCanceledException, or ``None`` to retry the transaction.

    ``retryable`` are the indices of Increments: their failed pin only means "changed since our
    read", and a DynamoDB ``TransactionConflict`` on them only "another transaction was writing
    it"; both retry, unless another item failed for real.
    """
    reasons = cast("list[dict[str, Any]]", failure.response.get("CancellationReasons") or [])
    codes = [str(reason.get("Code", "None")) for reason in reasons]
    for index, (reason, code) in enumerate(zip(reasons, codes, strict=False)):
        if code == "ConditionalCheckFailed" and index not in retryable:
            operation = operations[index]
            current = live_record(cast("Item | None", reason.get("Item")), now)
            return TransactionConflict(
                index, operation, _conflict_reason(operation, current), current
            )
    lost_race = False
    for index, code in enumerate(codes):
        if code in _THROTTLING_REASONS:
            return StoreUnavailable(f"DynamoDB {code} on transaction item {index}")
        if code in {"ValidationError", "ItemCollectionSizeLimitExceeded"}:
            message = reasons[index].get("Message", code)
            return InvalidRecord(f"DynamoDB rejected transaction item {index}: {message}")
        if code in {"ConditionalCheckFailed", "TransactionConflict"} and index in retryable:
            lost_race = True
        elif code == "TransactionConflict":
            # Another transaction held one of the caller's items: a lost race the caller
            # resolves like a conflict (re-read, decide, retry), so name the item.
            return TransactionConflict(
                index, operations[index], "another transaction was writing this item"
            )
    if lost_race:
        return None
    return TransactionConflict(-1, None, f"transaction cancelled: {failure.message}")


def contention_backoff(attempt: int) -> float:
    """Full-jitter pause before optimistic round ``attempt`` (1-based), so racers spread out."""
    ceiling = min(CONTENTION_BACKOFF_CAP_S, CONTENTION_BACKOFF_S * 2**attempt)
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography


def transact_get_request(table: str, keys: Sequence[Key]) -> Request:
    """TransactGetItems of the keys that Increments need to read."""
    return {
        "TransactItems": [{"Get": {"TableName": table, "Key": key_attributes(key)}} for key in keys]
    }


# ---------------------------------------------------------------------------------------------
# The engine: one plan per operation (exactly one Call per single-record operation)
# ---------------------------------------------------------------------------------------------


def _non_numeric(key: Key, field: str) -> InvalidRecord:
    return InvalidRecord(
        f"field {field!r} of {key} does not hold a number DynamoDB can "
        "increment (not a number, or beyond 38 significant digits)"
    )


def _out_of_range(key: Key, field: str, by: float) -> InvalidRecord:
    return InvalidRecord(
        f"field {field!r} of {key} + {by} would leave the signed 64-bit integer range"
    )


class DynamoDBEngine:
    """DynamoDB's plans on one table (the :class:`~stalwart.storage._engine.Engine` protocol).

    The store has checked keys, query arguments and the transaction's shape and passes ``now``;
    the plans add DynamoDB's own limits (key bytes, number range) and the data checks.

    >>> plan = DynamoDBEngine("orders").get(Key("acct-1"), now=0.0)
    >>> next(plan).operation
    'get_item'
    """

    __slots__ = ("table",)

    def __init__(self, table: str) -> None:
        self.table = table

    @property
    def max_item_bytes(self) -> int:
        """Largest data JSON: 350,000 bytes (DynamoDB's 400 KB item minus keys and metadata)."""
        return MAX_DATA_BYTES

    @property
    def max_transaction_items(self) -> int:
        """TransactWriteItems' limit: 100."""
        return MAX_TRANSACTION_ITEMS

    def get(self, key: Key, now: float) -> Plan[Record | None]:
        """GetItem and hide an expired record."""
        request = get_request(self.table, check_key_bytes(key))
        reply = _expect_success((yield Call("get_item", request)))
        return live_record(cast("Item | None", reply.get("Item")), now)

    def create(self, key: Key, data: JSONObject, ttl: float | None, now: float) -> Plan[Record]:
        """PutItem if absent or expired; AlreadyExists carries the ALL_OLD record."""
        check_key_bytes(key)
        normalized = normalize_data(data)
        expires_at = expiry_from_ttl(ttl, now)
        item = encode_item(key, normalized, 1, expires_at)
        reply = yield Call("put_item", put_request(self.table, item, create_condition(now)))
        if isinstance(reply, Failure):
            if reply.code == "ConditionalCheckFailedException":
                raise AlreadyExists(key, live_record(reply.item, now)) from reply.cause
            raise map_failure(reply) from reply.cause
        return Record(key, normalized, 1, expires_at)

    def replace(
        self, key: Key, data: JSONObject, expected_version: int, ttl: float | None, now: float
    ) -> Plan[Record]:
        """PutItem if live at ``expected_version``; VersionConflict carries the ALL_OLD record."""
        check_key_bytes(key)
        validate_version(expected_version)
        normalized = normalize_data(data)
        expires_at = expiry_from_ttl(ttl, now)
        item = encode_item(key, normalized, expected_version + 1, expires_at)
        condition = version_condition(expected_version, now)
        reply = yield Call("put_item", put_request(self.table, item, condition))
        if isinstance(reply, Failure):
            if reply.code == "ConditionalCheckFailedException":
                current = live_record(reply.item, now)
                raise VersionConflict(key, expected_version, current) from reply.cause
            raise map_failure(reply) from reply.cause
        return Record(key, normalized, expected_version + 1, expires_at)

    def delete(self, key: Key, expected_version: int | None, now: float) -> Plan[bool]:
        """DeleteItem if live (and at the version); a failed liveness check means False."""
        check_key_bytes(key)
        if expected_version is not None:
            validate_version(expected_version)
        reply = yield Call("delete_item", delete_request(self.table, key, expected_version, now))
        if isinstance(reply, Failure):
            if reply.code != "ConditionalCheckFailedException":
                raise map_failure(reply) from reply.cause
            if expected_version is None:
                return False
            current = live_record(reply.item, now)
            raise VersionConflict(key, expected_version, current) from reply.cause
        return True

    def increment(
        self, key: Key, field: str, by: float, ttl: float | None, now: float
    ) -> Plan[Record]:
        """One UpdateItem (ALL_NEW); only an expired record costs a conditional PutItem more.

        UpdateItem cannot drop the unknown fields of an expired record, so that rare path
        replaces it with a fresh ``{field: by}`` record, conditional on it still being absent or
        expired; if another writer revived it meanwhile, the increment is tried again.
        """
        check_key_bytes(key)
        validate_field(field)
        amount = validate_amount(by)
        expires_at = expiry_from_ttl(ttl, now)  # validated before any I/O
        request = increment_request(self.table, key, field, amount, expires_at=expires_at, now=now)
        for _ in range(CONTENTION_ATTEMPTS):
            reply = yield Call("update_item", request)
            if not isinstance(reply, Failure):
                return decode_item(cast("Item", _expect_success(reply)["Attributes"]))
            if reply.code != "ConditionalCheckFailedException":
                raise map_failure(reply) from reply.cause
            old = reply.item
            if old is not None and is_live(old, now):
                stored = old.get(FIELD_PREFIX + field)
                if stored is not None and "N" not in stored:
                    raise _non_numeric(key, field) from reply.cause
                floats = old.get(FLOAT_FIELDS, {}).get("SS", ())
                if (
                    stored is not None
                    and field not in floats
                    and integer_sum_overflows(_decode_number(stored["N"], is_float=False), amount)
                ):
                    raise _out_of_range(key, field, amount) from reply.cause
                # The item changed between the check and the reply (DynamoDB itself never
                # shows this; an emulator that applies an update in steps can): try again.
                continue
            item = encode_item(key, {field: amount}, 1, expires_at)
            reply = yield Call("put_item", put_request(self.table, item, create_condition(now)))
            if not isinstance(reply, Failure):
                return Record(key, {field: amount}, 1, expires_at)
            if reply.code != "ConditionalCheckFailedException":
                raise map_failure(reply) from reply.cause
        raise StoreUnavailable(f"increment of {key} kept losing races with other writers")

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
        """Query pages until ``limit`` live records (plus one, to know whether more exist)."""
        check_key_bytes(Key(partition))
        start = decode_cursor(cursor, partition) if cursor is not None else None
        if start == "":
            raise InvalidRecord("this query cursor belongs to another query")
        items: list[Item] = []
        while True:
            wanted = limit + 1 - len(items)
            request = query_request(
                self.table,
                partition,
                prefix=prefix,
                limit=wanted,
                descending=descending,
                start_sort=start,
                now=now,
            )
            reply = _expect_success((yield Call("query", request)))
            items.extend(cast("list[Item]", reply.get("Items", [])))
            last = reply.get("LastEvaluatedKey")
            if len(items) > limit or not last:
                break
            start = cast("Item", last)[SK]["S"]
        page = items[:limit]
        records = [decode_item(item) for item in page]
        more = len(items) > limit
        next_cursor = encode_cursor(partition, page[-1][SK]["S"]) if more else None
        return Page(records, next_cursor)

    def transact(self, operations: Sequence[Operation], now: float) -> Plan[list[Record | None]]:
        """TransactWriteItems; Increments are read first so their results are exact.

        A transaction without Increment is one round trip. With Increments, one
        TransactGetItems reads them, each Increment becomes a Put of the computed record pinned
        to the version read, and a lost race on those (never on the caller's own conditions)
        repeats both steps. botocore fills ``ClientRequestToken``, so its own retries of a
        write are idempotent.
        """
        table = self.table
        prepared = [_prepare(operation, now) for operation in operations]
        increments = [
            index for index, operation in enumerate(operations) if isinstance(operation, Increment)
        ]
        for attempt in range(CONTENTION_ATTEMPTS):
            if attempt:
                yield Sleep(contention_backoff(attempt))
            snapshots: dict[int, Item | None] = {}
            if increments:
                keys = [operations[index].key for index in increments]
                reply = _expect_success(
                    (yield Call("transact_get_items", transact_get_request(table, keys)))
                )
                responses = cast("list[dict[str, Any]]", reply.get("Responses", []))
                for index, response in zip(increments, responses, strict=True):
                    snapshots[index] = cast("Item | None", response.get("Item"))
            built = [
                _transact_item(table, entry, snapshots.get(index), now)
                for index, entry in enumerate(prepared)
            ]
            request = {"TransactItems": [item for item, _ in built]}
            written = yield Call("transact_write_items", request)
            if not isinstance(written, Failure):
                return [record for _, record in built]
            if written.code != "TransactionCanceledException":
                raise map_failure(written) from written.cause
            error = decode_cancellation(written, operations, now, frozenset(increments))
            if error is not None:
                raise error from written.cause
        raise StoreUnavailable("transaction increments kept losing races with other writers")


# ---------------------------------------------------------------------------------------------
# Table creation (development and tests; production tables come from IaC, see the docs)
# ---------------------------------------------------------------------------------------------

TABLE_POLL_SECONDS: Final = 0.2


def create_table_request(table: str) -> Request:
    """CreateTable: ``pk`` (S, HASH) + ``sk`` (S, RANGE), on-demand billing."""
    return {
        "TableName": table,
        "AttributeDefinitions": [
            {"AttributeName": PK, "AttributeType": "S"},
            {"AttributeName": SK, "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": PK, "KeyType": "HASH"},
            {"AttributeName": SK, "KeyType": "RANGE"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def create_table_plan(table: str, wait_seconds: float) -> Plan[None]:
    """Create the table if missing, wait until ACTIVE, enable TTL on ``exp``. Idempotent."""
    reply = yield Call("create_table", create_table_request(table))
    if isinstance(reply, Failure) and reply.code != "ResourceInUseException":
        raise map_failure(reply) from reply.cause
    for _ in range(max(1, math.ceil(wait_seconds / TABLE_POLL_SECONDS))):
        reply = yield Call("describe_table", {"TableName": table})
        if isinstance(reply, Failure) and reply.code != "ResourceNotFoundException":
            raise map_failure(reply) from reply.cause
        if (
            not isinstance(reply, Failure)
            and reply is not None
            and (reply["Table"]["TableStatus"] == "ACTIVE")
        ):
            break
        yield Sleep(TABLE_POLL_SECONDS)
    else:
        raise StoreUnavailable(f"table {table} did not become ACTIVE within {wait_seconds}s")
    reply = _expect_success((yield Call("describe_time_to_live", {"TableName": table})))
    description = reply.get("TimeToLiveDescription", {})
    status = description.get("TimeToLiveStatus")
    if status in {"ENABLED", "ENABLING"}:
        if description.get("AttributeName") != TTL_ATTRIBUTE:
            raise StorageError(
                f"table {table} has TTL on {description.get('AttributeName')!r}; "
                f"stalwart needs it on {TTL_ATTRIBUTE!r}"
            )
        return
    reply = yield Call(
        "update_time_to_live",
        {
            "TableName": table,
            "TimeToLiveSpecification": {"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        },
    )
    if isinstance(reply, Failure) and "already enabled" not in reply.message.lower():
        raise map_failure(reply) from reply.cause
