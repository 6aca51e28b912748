# Copyright 2026 stalwart contributors
"""The SQLite engine's pure half: schema, statements, row decoding and the plans.

No connection is touched here. Every single-record write is ONE statement whose condition lives
in SQL (``ON CONFLICT ... DO UPDATE ... WHERE expired``, ``UPDATE ... WHERE version = ? AND
live``), returning the new state with ``RETURNING``; an empty result means the condition failed.
:class:`SQLiteEngine` turns each operation into a plan of :data:`Command` objects (see
:mod:`stalwart.storage._engine`); :mod:`stalwart.storage._sqlite` performs them.
"""

# ruff: noqa: S608 - the only name spliced into SQL is the table, checked by validate_table()

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, assert_never

from stalwart.storage._contract import (
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
    StoreConfigurationError,
    TransactionConflict,
    VersionConflict,
    encode_data,
    expiry_from_ttl,
    integer_sum_overflows,
    stored_copy,
    validate_amount,
    validate_field,
    validate_key,
    validate_version,
)
from stalwart.storage._engine import Plan
from stalwart.storage._query import decode_cursor, encode_cursor, prefix_upper_bound

_TABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_LIVE: Final = "(expires_at IS NULL OR expires_at > :now)"
_EXPIRED: Final = "(expires_at IS NOT NULL AND expires_at <= :now)"
# The field's current value and JSON type, looked up with json_each because SQLite 3.40's JSON
# paths cannot address labels containing '"' or '\'.
_FIELD_VALUE: Final = "(SELECT value FROM json_each(data) WHERE key = :field)"
_FIELD_TYPE: Final = "(SELECT type FROM json_each(data) WHERE key = :field)"
_SUM: Final = f"(coalesce({_FIELD_VALUE}, 0) + :by)"
# Reals are printed with 17 significant digits so they survive the trip back to a Python float;
# SQLite's own JSON rendering keeps only 15 (0.1 + 0.2 would come back as 0.3).
# An increment may proceed on a numeric (or missing) field, unless an integer plus an integer
# overflowed: SQLite then returns a REAL, where the contract wants InvalidRecord (64-bit range).
_FIELD_KIND: Final = f"coalesce({_FIELD_TYPE}, 'integer')"
_INCREMENTABLE: Final = (
    f"({_FIELD_KIND} = 'real' OR ({_FIELD_KIND} = 'integer' "
    f"AND (typeof(:by) = 'real' OR typeof({_SUM}) = 'integer')))"
)
_SUM_AS_JSON: Final = (
    f"json(CASE WHEN typeof({_SUM}) = 'integer' THEN CAST({_SUM} AS TEXT) "
    f"ELSE printf('%!.17g', {_SUM}) END)"
)


def validate_table(name: str) -> str:
    """Accept only plain identifiers: the name is spliced into SQL text."""
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise StoreConfigurationError(f"table name {name!r} must match {_TABLE_NAME.pattern}")
    return name


@dataclass(frozen=True, slots=True)
class Statements:
    """Every SQL statement the engine runs, for one table."""

    schema: tuple[str, ...]
    get: str
    create: str
    replace: str
    delete: str
    delete_if: str
    increment: str
    check_absent: str
    check_version: str
    sweep: str
    query: dict[tuple[bool, bool, bool], str]
    """Keyed by (descending, has an upper bound, has a cursor)."""


def statements(table: str) -> Statements:
    """Build the statements for ``table`` once; they are cached by sqlite3 per connection."""
    t = f'"{validate_table(table)}"'
    where_key = "partition = :partition AND sort = :sort"
    schema = (
        (
            f"CREATE TABLE IF NOT EXISTS {t} (partition TEXT NOT NULL, sort TEXT NOT NULL, "
            "data TEXT NOT NULL, version INTEGER NOT NULL, expires_at REAL, "
            "PRIMARY KEY (partition, sort)) WITHOUT ROWID"
        ),
        (
            f'CREATE INDEX IF NOT EXISTS "{table}_expires_at" ON {t} (expires_at) '
            "WHERE expires_at IS NOT NULL"
        ),
    )
    query: dict[tuple[bool, bool, bool], str] = {}
    for descending in (False, True):
        for bounded in (False, True):
            for after_cursor in (False, True):
                clauses = ["partition = :partition", "sort >= :low", _LIVE]
                if bounded:
                    clauses.append("sort < :high")
                if after_cursor:
                    clauses.append("sort < :cursor" if descending else "sort > :cursor")
                order = "DESC" if descending else "ASC"
                query[descending, bounded, after_cursor] = (
                    f"SELECT sort, data, version, expires_at FROM {t} "
                    f"WHERE {' AND '.join(clauses)} ORDER BY sort {order} LIMIT :limit"
                )
    return Statements(
        schema=schema,
        get=f"SELECT data, version, expires_at FROM {t} WHERE {where_key} AND {_LIVE}",
        create=(
            f"INSERT INTO {t} (partition, sort, data, version, expires_at) "
            "VALUES (:partition, :sort, :data, 1, :expires_at) "
            "ON CONFLICT (partition, sort) DO UPDATE SET data = excluded.data, version = 1, "
            f"expires_at = excluded.expires_at WHERE {_EXPIRED} "
            "RETURNING version, expires_at"
        ),
        replace=(
            f"UPDATE {t} SET data = :data, version = version + 1, expires_at = :expires_at "
            f"WHERE {where_key} AND version = :expected AND {_LIVE} "
            "RETURNING version, expires_at"
        ),
        # Expired rows are removed too (they are garbage), but only a live one counts as deleted.
        # Liveness is judged from the returned expires_at: SQLite 3.40 evaluates "expires_at IS
        # NULL" wrongly in a RETURNING clause of a DELETE on a WITHOUT ROWID table.
        delete=f"DELETE FROM {t} WHERE {where_key} RETURNING expires_at",
        delete_if=(
            f"DELETE FROM {t} WHERE {where_key} AND version = :expected AND {_LIVE} RETURNING 1"
        ),
        increment=(
            f"INSERT INTO {t} (partition, sort, data, version, expires_at) "
            "VALUES (:partition, :sort, :data, 1, :expires_at) "
            "ON CONFLICT (partition, sort) DO UPDATE SET "
            f"data = CASE WHEN {_EXPIRED} THEN excluded.data "
            f"ELSE json_patch(data, json_object(:field, {_SUM_AS_JSON})) END, "
            f"version = CASE WHEN {_EXPIRED} THEN 1 ELSE version + 1 END, "
            f"expires_at = CASE WHEN {_EXPIRED} THEN excluded.expires_at ELSE expires_at END "
            f"WHERE {_EXPIRED} OR {_INCREMENTABLE} "
            "RETURNING data, version, expires_at"
        ),
        check_absent=f"SELECT 1 FROM {t} WHERE {where_key} AND {_LIVE}",
        check_version=f"SELECT 1 FROM {t} WHERE {where_key} AND version = :expected AND {_LIVE}",
        sweep=(
            f"DELETE FROM {t} WHERE (partition, sort) IN (SELECT partition, sort FROM {t} "
            "WHERE expires_at <= :now LIMIT :limit) RETURNING 1"
        ),
        query=query,
    )


class StepKind(StrEnum):
    """What a prepared statement does, which decides how its result reads."""

    CREATE = "create"
    REPLACE = "replace"
    DELETE = "delete"
    DELETE_IF = "delete_if"
    INCREMENT = "increment"
    CHECK_ABSENT = "check_absent"
    CHECK_VERSION = "check_version"


type Row = tuple[Any, ...]
type Params = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Step:
    """One validated operation turned into a statement and its parameters, ready to run."""

    kind: StepKind
    key: Key
    sql: str
    params: Params
    data: JSONObject | None = None
    """The decoded data a Create or Replace writes (returned in its Record)."""


def _key_params(key: Key, now: float) -> Params:
    return {"partition": key.partition, "sort": key.sort, "now": now}


def prepare(  # noqa: PLR0911 - one return per kind of operation reads best
    operation: Operation, sql: Statements, now: float, max_item_bytes: int
) -> Step:
    """Validate ``operation`` (nothing is sent before this succeeds) and build its statement."""
    if not isinstance(operation, Create | Replace | Delete | Check | Increment):
        raise InvalidRecord(f"unknown operation {operation!r}")
    key = validate_key(operation.key)
    params = _key_params(key, now)
    match operation:
        case Create(data=data, ttl=ttl):
            encoded = encode_data(data, max_bytes=max_item_bytes)
            params |= {"data": encoded, "expires_at": expiry_from_ttl(ttl, now)}
            return Step(StepKind.CREATE, key, sql.create, params, stored_copy(data, encoded))
        case Replace(data=data, expected_version=expected, ttl=ttl):
            encoded = encode_data(data, max_bytes=max_item_bytes)
            params |= {
                "data": encoded,
                "expires_at": expiry_from_ttl(ttl, now),
                "expected": validate_version(expected),
            }
            return Step(StepKind.REPLACE, key, sql.replace, params, stored_copy(data, encoded))
        case Delete(expected_version=expected):
            if expected is None:
                return Step(StepKind.DELETE, key, sql.delete, params)
            params["expected"] = validate_version(expected)
            return Step(StepKind.DELETE_IF, key, sql.delete_if, params)
        case Check(expected_version=expected):
            if expected is None:
                return Step(StepKind.CHECK_ABSENT, key, sql.check_absent, params)
            params["expected"] = validate_version(expected)
            return Step(StepKind.CHECK_VERSION, key, sql.check_version, params)
        case Increment(field=field, by=by, ttl=ttl):
            field = validate_field(field)
            by = validate_amount(by)
            params |= {
                "field": field,
                "by": by,
                "expires_at": expiry_from_ttl(ttl, now),
                "data": encode_data({field: by}, max_bytes=max_item_bytes),
            }
            return Step(StepKind.INCREMENT, key, sql.increment, params)
    assert_never(operation)


def succeeded(step: Step, rows: list[Row]) -> bool:
    """Whether the statement's condition held (an unconditional delete always holds)."""
    if step.kind is StepKind.CHECK_ABSENT:
        return not rows
    return step.kind is StepKind.DELETE or bool(rows)


def write_result(step: Step, rows: list[Row]) -> Record | bool | None:
    """Decode a successful step: the new Record, a delete's bool, or None for a Check."""
    match step.kind:
        case StepKind.CREATE | StepKind.REPLACE:
            version, expires_at = rows[0]
            assert step.data is not None
            return Record(step.key, step.data, version, expires_at)
        case StepKind.INCREMENT:
            data, version, expires_at = rows[0]
            return Record(step.key, json.loads(data), version, expires_at)
        case StepKind.DELETE:
            return bool(rows) and (rows[0][0] is None or rows[0][0] > step.params["now"])
        case StepKind.DELETE_IF:
            return True
        case StepKind.CHECK_ABSENT | StepKind.CHECK_VERSION:
            return None


def conflict_reason(step: Step, current: Record | None) -> str:
    """Say in words why a step's condition failed."""
    found = "no live record" if current is None else f"a live record at version {current.version}"
    match step.kind:
        case StepKind.CREATE | StepKind.CHECK_ABSENT:
            return f"expected no live record, found {found}"
        case StepKind.INCREMENT:
            field, by = step.params["field"], step.params["by"]
            if current is not None and integer_sum_overflows(current.data.get(field), by):
                return f"field {field!r} + {by} would leave the signed 64-bit integer range"
            return f"field {field!r} of the live record is not a number"
        case _:
            return f"expected version {step.params.get('expected')}, found {found}"


def record_from_row(key: Key, row: Row) -> Record:
    """Decode ``(data, version, expires_at)``."""
    data, version, expires_at = row
    return Record(key, json.loads(data), version, expires_at)


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """A validated query: its statement, parameters and page size."""

    sql: str
    params: Params
    limit: int


def plan_query(
    sql: Statements,
    partition: str,
    *,
    prefix: str,
    limit: int,
    cursor: str | None,
    descending: bool,
    now: float,
) -> QueryPlan:
    """Pick a checked query's statement (one extra row detects more)."""
    high = prefix_upper_bound(prefix)
    params: Params = {"partition": partition, "low": prefix, "now": now, "limit": limit + 1}
    if high is not None:
        params["high"] = high
    if cursor is not None:
        params["cursor"] = decode_cursor(cursor, partition)
    statement = sql.query[bool(descending), high is not None, cursor is not None]
    return QueryPlan(statement, params, limit)


def page_records(partition: str, rows: list[Row], limit: int) -> tuple[list[Record], str | None]:
    """Turn up to ``limit + 1`` rows into a page and its cursor."""
    records = [
        record_from_row(Key(partition, sort), (data, version, expires_at))
        for sort, data, version, expires_at in rows[:limit]
    ]
    cursor = encode_cursor(partition, records[-1].key.sort) if len(rows) > limit else None
    return records, cursor


# ---------------------------------------------------------------------------------------------
# The engine: one plan per operation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Read:
    """Run a statement that writes nothing; its rows are sent back."""

    sql: str
    params: Params


@dataclass(frozen=True, slots=True)
class Write:
    """Run a statement under the database's write lock; its rows are sent back."""

    sql: str
    params: Params


class Transaction(StrEnum):
    """``BEGIN IMMEDIATE`` takes SQLite's write lock first, so reads inside cannot go stale;
    ``COMMIT`` ends it. A plan that ends any other way is rolled back by the executor."""

    BEGIN = "BEGIN IMMEDIATE"
    COMMIT = "COMMIT"


type Command = Read | Write | Transaction


class SQLiteEngine:
    """SQLite's plans: ONE statement per operation when its condition holds.

    When it does not, the statement is evaluated again inside ``BEGIN IMMEDIATE`` together with
    a read of the record that failed it, so the error carries exactly that record (another
    process may have written in between; then the second evaluation decides).

    >>> engine = SQLiteEngine("demo", max_item_bytes=400_000, max_transaction_items=100)
    >>> plan = engine.get(Key("acct-1"), now=0.0)
    >>> next(plan).sql == engine.sql.get
    True
    """

    def __init__(self, table: str, *, max_item_bytes: int, max_transaction_items: int) -> None:
        self.sql = statements(table)
        self.max_item_bytes = max_item_bytes
        self.max_transaction_items = max_transaction_items

    def create_schema(self) -> Plan[Command, None]:
        """Create the table and its expiry index if missing."""
        for statement in self.sql.schema:
            yield Write(statement, {})

    def get(self, key: Key, now: float) -> Plan[Command, Record | None]:
        """One ``SELECT`` of the live record."""
        rows = yield Read(self.sql.get, _key_params(key, now))
        return record_from_row(key, rows[0]) if rows else None

    def create(
        self, key: Key, data: JSONObject, ttl: float | None, now: float
    ) -> Plan[Command, Record]:
        """One upsert that writes only over an expired record."""
        result = yield from self._write(Create(key, data, ttl), now)
        assert isinstance(result, Record)
        return result

    def replace(
        self, key: Key, data: JSONObject, expected_version: int, ttl: float | None, now: float
    ) -> Plan[Command, Record]:
        """One ``UPDATE ... WHERE version = :expected AND live``."""
        result = yield from self._write(Replace(key, data, expected_version, ttl), now)
        assert isinstance(result, Record)
        return result

    def delete(self, key: Key, expected_version: int | None, now: float) -> Plan[Command, bool]:
        """One ``DELETE``, conditional on the version when one is expected."""
        result = yield from self._write(Delete(key, expected_version), now)
        assert isinstance(result, bool)
        return result

    def increment(
        self, key: Key, field: str, by: float, ttl: float | None, now: float
    ) -> Plan[Command, Record]:
        """One upsert adding ``by`` to the field in SQL."""
        result = yield from self._write(Increment(key, field, by, ttl), now)
        assert isinstance(result, Record)
        return result

    def query(
        self,
        partition: str,
        *,
        prefix: str,
        limit: int,
        cursor: str | None,
        descending: bool,
        now: float,
    ) -> Plan[Command, Page]:
        """One ``SELECT`` of up to ``limit + 1`` live rows in sort order."""
        plan = plan_query(
            self.sql,
            partition,
            prefix=prefix,
            limit=limit,
            cursor=cursor,
            descending=descending,
            now=now,
        )
        rows = yield Read(plan.sql, plan.params)
        records, next_cursor = page_records(partition, rows, plan.limit)
        return Page(records, next_cursor)

    def transact(
        self, operations: Sequence[Operation], now: float
    ) -> Plan[Command, list[Record | None]]:
        """Every item's statement inside ``BEGIN IMMEDIATE``; the first failed condition ends
        the plan with an error (and the executor rolls back)."""
        steps = [prepare(op, self.sql, now, self.max_item_bytes) for op in operations]
        results: list[Record | None] = []
        yield Transaction.BEGIN
        for index, step in enumerate(steps):
            rows = yield Write(step.sql, step.params)
            if not succeeded(step, rows):
                current = yield from self._current(step)
                if step.kind is StepKind.INCREMENT:
                    raise InvalidRecord(conflict_reason(step, current))
                raise TransactionConflict(
                    index, operations[index], conflict_reason(step, current), current
                )
            result = write_result(step, rows)
            results.append(result if isinstance(result, Record) else None)
        yield Transaction.COMMIT
        return results

    def sweep(self, limit: int, now: float) -> Plan[Command, int]:
        """Physically delete up to ``limit`` expired rows; return how many went."""
        rows = yield Write(self.sql.sweep, {"now": now, "limit": limit})
        return len(rows)

    def _current(self, step: Step) -> Plan[Command, Record | None]:
        rows = yield Read(self.sql.get, step.params)
        return record_from_row(step.key, rows[0]) if rows else None

    def _write(self, operation: Operation, now: float) -> Plan[Command, Record | bool | None]:
        step = prepare(operation, self.sql, now, self.max_item_bytes)
        rows = yield Write(step.sql, step.params)
        if succeeded(step, rows):
            return write_result(step, rows)
        yield Transaction.BEGIN
        rows = yield Write(step.sql, step.params)
        if succeeded(step, rows):
            yield Transaction.COMMIT
            return write_result(step, rows)
        current = yield from self._current(step)
        yield Transaction.COMMIT
        raise single_conflict(step, current)


def single_conflict(step: Step, current: Record | None) -> StorageError:
    """The error of a single-record write whose condition failed."""
    match step.kind:
        case StepKind.CREATE:
            return AlreadyExists(step.key, current)
        case StepKind.INCREMENT:
            return InvalidRecord(conflict_reason(step, current))
        case _:
            return VersionConflict(step.key, step.params.get("expected"), current)
