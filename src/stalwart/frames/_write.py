"""write_frame / async_write_frame: each row a record, created exactly once per row key.

The write is planned once, as a generator that does no I/O: it yields store calls
(:class:`_Transact`, :class:`_Create`, :class:`_Get`) and is sent each call's result, or the
AlreadyExists / TransactionConflict / InvalidRecord it raised. The sync and async shells only
run those calls (through the retry policy) and send the outcomes back, so both behave the same.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import pandas as pd

from stalwart.frames._convert import convert_column, key_value, row_sort_key
from stalwart.frames._errors import FrameConflictError, FrameError, FrameValueError
from stalwart.resilience import RetryPolicy, retry
from stalwart.storage import (
    AlreadyExists,
    AsyncStore,
    Create,
    InvalidRecord,
    JSONObject,
    Key,
    Store,
    StoreUnavailable,
    TransactionConflict,
)
from stalwart.storage._contract import encode_data, validate_key

type OnConflict = Literal["error", "report"]

BLOCK_ROWS: Final = 5_000
"""Rows converted and validated together before any of them is written (bounds memory)."""
_CREATE_ROUNDS: Final = 3
"""Create/get rounds for one row whose record keeps vanishing (expiring, deleted) meanwhile."""


def default_retry_policy() -> RetryPolicy:
    """Retry a throttled or unreachable store: 6 attempts, full jitter from 50 ms, capped at 2 s.

    >>> default_retry_policy().attempts
    6
    """
    return retry(StoreUnavailable, attempts=6, base_s=0.05, cap_s=2.0, name="stalwart.frames")


@dataclass(frozen=True, slots=True)
class RowConflict:
    """A row whose key already held different data (it was not overwritten)."""

    position: int
    label: Hashable
    key: Key
    data: JSONObject
    """What the row would have stored."""
    stored: JSONObject
    """What the key holds (or, for a repeated key inside the frame, the earlier row's data)."""


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What one write did: ``written + already_present + len(conflicts)`` is the row count.

    ``already_present`` counts rows whose key already held the same data (from an earlier or
    interrupted run, or an earlier row of the same frame): they were not written again. A
    chunk whose reply was lost and which the retry then found written counts there too.
    """

    written: int
    already_present: int
    conflicts: tuple[RowConflict, ...] = ()


@dataclass(slots=True)
class _Tally:
    written: int = 0
    already_present: int = 0
    conflicts: list[RowConflict] = field(default_factory=list)

    def report(self) -> WriteReport:
        return WriteReport(self.written, self.already_present, tuple(self.conflicts))


@dataclass(frozen=True, slots=True)
class _Row:
    position: int
    label: Hashable
    key: Key
    data: JSONObject


@dataclass(frozen=True, slots=True)
class _Transact:
    operations: list[Create]


@dataclass(frozen=True, slots=True)
class _Create:
    operation: Create


@dataclass(frozen=True, slots=True)
class _Get:
    key: Key


type _Request = _Transact | _Create | _Get
type _Plan = Generator[_Request, Any, WriteReport]
_SENT_BACK: Final = (AlreadyExists, TransactionConflict, InvalidRecord)
"""Errors the shells send into the plan instead of raising them."""


@dataclass(frozen=True, slots=True)
class _Options:
    partition: str
    key_columns: tuple[str, ...]
    chunk_rows: int
    ttl: float | None
    on_conflict: OnConflict
    max_item_bytes: int


def _plan_frame(frame: pd.DataFrame, options: _Options) -> _Plan:
    tally = _Tally()
    for start in range(0, len(frame), BLOCK_ROWS):
        rows = _block_rows(frame.iloc[start : start + BLOCK_ROWS], start, options, tally)
        for first in range(0, len(rows), options.chunk_rows):
            yield from _write_chunk(rows[first : first + options.chunk_rows], options, tally)
    return tally.report()


def _block_rows(block: pd.DataFrame, start: int, options: _Options, tally: _Tally) -> list[_Row]:
    """Convert and key every row of ``block``; a key repeated inside it is settled here."""
    columns = [str(name) for name in block.columns]
    labels = block.index
    converted = [
        convert_column(block.iloc[:, i].to_numpy(dtype=object), labels, name, first=start)
        for i, name in enumerate(columns)
    ]
    key_indices = [columns.index(name) for name in options.key_columns]
    rows: list[_Row] = []
    seen: dict[Key, _Row] = {}
    for offset, values in enumerate(zip(*converted, strict=True)):
        position, label = start + offset, labels[offset]
        parts = [
            key_value(values[i], position=position, label=label, column=columns[i])
            for i in key_indices
        ]
        key = Key(options.partition, row_sort_key(parts))
        try:
            validate_key(key)
        except InvalidRecord as exc:
            raise FrameValueError(
                f"its key is invalid: {exc}", position=position, label=label
            ) from None
        row = _Row(position, label, key, dict(zip(columns, values, strict=True)))
        earlier = seen.get(key)
        if earlier is None:
            seen[key] = row
            rows.append(row)
        else:
            _settle(row, earlier.data, options, tally)
    return rows


def _write_chunk(
    rows: Sequence[_Row], options: _Options, tally: _Tally
) -> Generator[_Request, Any, None]:
    """Create ``rows`` in one transaction. A row found present is settled and the rest retried
    as one transaction once (a stray present row costs one more call); at a second present
    row the rest go one by one: a chunk that is mostly present (a re-run, or the part of a
    resumed run done before the crash) then costs one create per row, where dropping one row
    per failed transaction would send the chunk about ``len(rows)`` times."""
    pending = list(rows)
    conflicts = 0
    while len(pending) > 1 and conflicts < 2:
        operations = [Create(row.key, row.data, ttl=options.ttl) for row in pending]
        outcome = yield _Transact(operations)
        if isinstance(outcome, InvalidRecord):
            _raise_for_invalid(pending, outcome, options.max_item_bytes)
        if not isinstance(outcome, TransactionConflict):
            tally.written += len(pending)
            return
        if outcome.index < 0:  # the engine could not say which item: settle them one by one
            break
        conflicts += 1
        row = pending.pop(outcome.index)
        if outcome.current is None:  # e.g. another transaction held it: ask the row itself
            yield from _write_row(row, options, tally)
        else:
            _settle(row, outcome.current.data, options, tally)
    for row in pending:
        yield from _write_row(row, options, tally)


def _write_row(row: _Row, options: _Options, tally: _Tally) -> Generator[_Request, Any, None]:
    for _ in range(_CREATE_ROUNDS):
        outcome = yield _Create(Create(row.key, row.data, ttl=options.ttl))
        if isinstance(outcome, InvalidRecord):
            raise FrameValueError(str(outcome), position=row.position, label=row.label) from outcome
        if not isinstance(outcome, AlreadyExists):
            tally.written += 1
            return
        current = outcome.current
        if current is None:
            current = yield _Get(row.key)
        if current is not None:
            _settle(row, current.data, options, tally)
            return
    raise FrameError(
        f"row {row.position} (index label {row.label!r}): {row.key} kept appearing and "
        f"disappearing over {_CREATE_ROUNDS} attempts (expiring or deleted concurrently)"
    )


def _settle(row: _Row, stored: JSONObject, options: _Options, tally: _Tally) -> None:
    """Count a row whose key already holds ``stored``: the same data, or a conflict."""
    if stored == row.data:
        tally.already_present += 1
        return
    conflict = RowConflict(row.position, row.label, row.key, row.data, stored)
    if options.on_conflict == "error":
        raise FrameConflictError(conflict, tally.report())
    tally.conflicts.append(conflict)


def _raise_for_invalid(rows: Sequence[_Row], error: InvalidRecord, max_bytes: int) -> None:
    """Name the row that made a transaction invalid (only ever run on that failure path)."""
    for row in rows:
        try:
            encode_data(row.data, max_bytes=max_bytes)
        except InvalidRecord as exc:
            raise FrameValueError(str(exc), position=row.position, label=row.label) from None
    raise error


def _options(
    store: Store | AsyncStore,
    frame: pd.DataFrame,
    *,
    partition: str,
    key_columns: Sequence[str],
    chunk_rows: int | None,
    ttl: float | None,
    on_conflict: OnConflict,
) -> _Options:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    names = list(frame.columns)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"column names must be str, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"column names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    if isinstance(key_columns, str) or not key_columns:
        raise ValueError("key_columns must be a non-empty sequence of column names")
    missing = [name for name in key_columns if name not in names]
    if missing:
        raise ValueError(f"key_columns {missing} are not columns of the frame ({names})")
    if on_conflict not in ("error", "report"):
        raise ValueError(f"on_conflict must be 'error' or 'report', got {on_conflict!r}")
    limit = store.max_transaction_items
    chosen = limit if chunk_rows is None else chunk_rows
    if isinstance(chosen, bool) or not isinstance(chosen, int) or not 1 <= chosen <= limit:
        raise ValueError(
            f"chunk_rows must be an int from 1 to {limit} on this store, got {chunk_rows!r}"
        )
    validate_key(Key(partition))
    return _Options(partition, tuple(key_columns), chosen, ttl, on_conflict, store.max_item_bytes)


def write_frame(
    store: Store,
    frame: pd.DataFrame,
    *,
    partition: str,
    key_columns: Sequence[str],
    on_conflict: OnConflict = "error",
    chunk_rows: int | None = None,
    ttl: float | None = None,
    retry_policy: RetryPolicy | None = None,
) -> WriteReport:
    """Store each row of ``frame`` as one record under ``partition``, exactly once per key.

    The sort key of a row is :func:`row_sort_key` of its ``key_columns`` values; the record's
    data is the whole row, converted by the rules of ``docs/frames.md``. Rows are created in
    transactions of ``chunk_rows`` (default: the store's ``max_transaction_items``) with
    create-if-absent, so a re-run, or a run resumed after a crash, writes no row twice: a row
    whose key already holds the same data counts as ``already_present``; one whose key holds
    different data is never overwritten -- ``on_conflict="error"`` raises
    :class:`FrameConflictError`, ``"report"`` lists it in the report and goes on. A chunk
    that fails on a present row is retried without it. ``StoreUnavailable`` (throttling,
    lost connections) is retried by ``retry_policy`` (:func:`default_retry_policy`).

    >>> import pandas as pd
    >>> from stalwart.storage import open_store
    >>> store = open_store("sqlite:///:memory:?table=frames")
    >>> df = pd.DataFrame({"id": ["a", "b"], "cents": [100, 250]})
    >>> write_frame(store, df, partition="payments", key_columns=["id"])
    WriteReport(written=2, already_present=0, conflicts=())
    >>> write_frame(store, df, partition="payments", key_columns=["id"])
    WriteReport(written=0, already_present=2, conflicts=())
    """
    options = _options(
        store, frame, partition=partition, key_columns=key_columns,
        chunk_rows=chunk_rows, ttl=ttl, on_conflict=on_conflict,
    )  # fmt: skip
    call = (retry_policy or default_retry_policy())(_call_sync)
    plan = _plan_frame(frame, options)
    outcome: Any = None
    try:
        while True:
            request = plan.send(outcome)
            try:
                outcome = call(store, request)
            except _SENT_BACK as exc:
                outcome = exc
    except StopIteration as done:
        report: WriteReport = done.value
        return report


async def async_write_frame(
    store: AsyncStore,
    frame: pd.DataFrame,
    *,
    partition: str,
    key_columns: Sequence[str],
    on_conflict: OnConflict = "error",
    chunk_rows: int | None = None,
    ttl: float | None = None,
    retry_policy: RetryPolicy | None = None,
) -> WriteReport:
    """The :class:`AsyncStore` twin of :func:`write_frame`, with the same semantics.

    Values are converted on the event loop's thread, a block of 5,000 rows at a time (tens of
    milliseconds per block); the writes are awaited.
    """
    options = _options(
        store, frame, partition=partition, key_columns=key_columns,
        chunk_rows=chunk_rows, ttl=ttl, on_conflict=on_conflict,
    )  # fmt: skip
    call = (retry_policy or default_retry_policy())(_call_async)
    plan = _plan_frame(frame, options)
    outcome: Any = None
    try:
        while True:
            request = plan.send(outcome)
            try:
                outcome = await call(store, request)
            except _SENT_BACK as exc:
                outcome = exc
    except StopIteration as done:
        report: WriteReport = done.value
        return report


def _call_sync(store: Store, request: _Request) -> Any:
    match request:
        case _Transact(operations):
            return store.transact(operations)
        case _Create(operation):
            return store.create(operation.key, operation.data, ttl=operation.ttl)
        case _Get(key):
            return store.get(key)


async def _call_async(store: AsyncStore, request: _Request) -> Any:
    match request:
        case _Transact(operations):
            return await store.transact(operations)
        case _Create(operation):
            return await store.create(operation.key, operation.data, ttl=operation.ttl)
        case _Get(key):
            return await store.get(key)
