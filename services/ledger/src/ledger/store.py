"""The ledger's records on the stalwart storage contract, and the plans that read and write them.

One store (one table), keys namespaced by tenant::

    t/{tenant}/accounts                 {account_id}           the account (version = ETag)
    t/{tenant}/account-external-ids     {external_id}          uniqueness of external ids
    t/{tenant}/balances                 {account_id}           totals + immutable rules + closed
    t/{tenant}/entries/{account_id}     {seq:012d}             the journal, gap-free
    t/{tenant}/transfers                {transfer_id}          created only if absent
    t/{tenant}/batches                  {batch_id}             a linked batch's ids + fingerprint
    t/{tenant}/pending-timeouts         {expires_ms:015d}/{id} pending transfers with a timeout
    t/{tenant}/events, webhooks/due     (ledger.webhooks.outbox) each change's event, same transact

Each ledger operation is a *plan*: a generator that yields :class:`Get`, :class:`Query` and
:class:`Transact` commands and receives their results (store errors are thrown in). Every
write of a plan is one ``transact``. :func:`run_sync` and :func:`run_async` drive a plan on a
:class:`~stalwart.storage.Store` or an :class:`~stalwart.storage.AsyncStore`; a plan raises
:class:`~ledger.domain.errors.Contention` when a record it read changed before its transact
committed, and the runners start the plan again (re-reading) under a bounded, jittered
:func:`stalwart.resilience.retry` policy. When the attempts run out, ``Contention`` (409)
reaches the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import TypeAdapter, ValidationError

from ledger.domain.accounts import initial_state, new_account_id
from ledger.domain.balances import (
    BalanceState,
    Movement,
    apply,
    available,
    check_constraints,
    pending,
    posted,
)
from ledger.domain.errors import (
    BatchTooLarge,
    Contention,
    ExternalIdTaken,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidRequest,
    LedgerError,
    NotFound,
    PreconditionFailed,
    TransferNotPending,
)
from ledger.domain.models import (
    Account,
    AccountStatus,
    Balance,
    Entry,
    EntryKind,
    Metadata,
    NewAccount,
    NewTransfer,
    NormalBalance,
    Transfer,
    TransferStatus,
)
from ledger.domain.transfers import (
    MAX_BATCH_TRANSFERS,
    check_new_transfer,
    check_pending,
    check_reversible,
    create_movements,
    fingerprint,
    post_movements,
    resolve_post_amount,
    transfer_id,
    void_movements,
)
from ledger.webhooks.outbox import OUTBOX_OPERATIONS, EventType, outbox_operations
from stalwart.resilience import RetryPolicy, retry
from stalwart.storage import (
    AsyncStore,
    Create,
    Delete,
    InvalidRecord,
    JSONObject,
    Key,
    Operation,
    Page,
    Record,
    Replace,
    StorageError,
    Store,
    TransactionConflict,
)

MAX_ID_CHARS: Final = 64
MAX_SCAN: Final = 500
"""Most records one list call reads when filters skip records; it then returns a short page
with ``has_more`` and a cursor to continue."""

# ---------------------------------------------------------------------------------------------
# Commands and runners
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Get:
    key: Key


@dataclass(frozen=True, slots=True)
class GetAll:
    """Several records at once: the async runner sends the reads together (one round trip on
    Redis, overlapping requests elsewhere); the reply is the records in order."""

    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Query:
    partition: str
    limit: int
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Transact:
    operations: Sequence[Operation]


type Command = Get | GetAll | Query | Transact
type Plan[T] = Generator[Command, Any, T]

CONTENTION_RETRY: Final = retry(
    on=Contention, attempts=12, base_s=0.002, cap_s=0.1, name="ledger.contention"
)
"""The default policy: up to 12 attempts, full jitter from 2 ms doubling to 100 ms."""


def run_sync[T](store: Store, make_plan: Callable[[], Plan[T]], policy: RetryPolicy) -> T:
    """Run a fresh plan from ``make_plan`` on ``store``, again while it raises Contention."""
    for attempt in policy:
        with attempt:
            return _drive_sync(store, make_plan())
    raise AssertionError("unreachable: the retry loop returns or raises")  # pragma: no cover


async def run_async[T](
    store: AsyncStore, make_plan: Callable[[], Plan[T]], policy: RetryPolicy
) -> T:
    """See :func:`run_sync`."""
    async for attempt in policy:
        with attempt:
            return await _drive_async(store, make_plan())
    raise AssertionError("unreachable: the retry loop returns or raises")  # pragma: no cover


def _drive_sync[T](store: Store, plan: Plan[T]) -> T:
    try:
        command = next(plan)
        while True:
            try:
                reply: object
                if isinstance(command, Get):
                    reply = store.get(command.key)
                elif isinstance(command, GetAll):
                    reply = [store.get(key) for key in command.keys]
                elif isinstance(command, Query):
                    reply = store.query(
                        command.partition, limit=command.limit, cursor=command.cursor
                    )
                else:
                    reply = store.transact(command.operations)
            except StorageError as exc:
                command = plan.throw(exc)
            else:
                command = plan.send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def _drive_async[T](store: AsyncStore, plan: Plan[T]) -> T:
    try:
        command = next(plan)
        while True:
            try:
                reply: object
                if isinstance(command, Get):
                    reply = await store.get(command.key)
                elif isinstance(command, GetAll):
                    reply = await asyncio.gather(*(store.get(key) for key in command.keys))
                elif isinstance(command, Query):
                    reply = await store.query(
                        command.partition, limit=command.limit, cursor=command.cursor
                    )
                else:
                    reply = await store.transact(command.operations)
            except StorageError as exc:
                command = plan.throw(exc)
            else:
                command = plan.send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def check_tenant(tenant: str) -> str:
    """A tenant id is 1-64 characters without ``/`` (it is part of every key)."""
    if not isinstance(tenant, str) or not 0 < len(tenant) <= MAX_ID_CHARS or "/" in tenant:
        raise InvalidRequest("a tenant id is 1 to 64 characters without '/'")
    return tenant


def known_id(object_id: str, what: str) -> str:
    """An id that can name a record (ours are UUIDs: short printable ASCII); anything else
    cannot exist, so it is NotFound rather than a store error about the key."""
    if (
        not isinstance(object_id, str)
        or not 0 < len(object_id) <= MAX_ID_CHARS
        or not (object_id.isascii() and object_id.isprintable())
        or "/" in object_id
    ):
        raise NotFound(f"{what} {object_id!r} not found")
    return object_id


def accounts_partition(tenant: str) -> str:
    return f"t/{tenant}/accounts"


def account_key(tenant: str, account_id: str) -> Key:
    return Key(accounts_partition(tenant), account_id)


def external_id_key(tenant: str, external_id: str) -> Key:
    return Key(f"t/{tenant}/account-external-ids", external_id)


def balances_partition(tenant: str) -> str:
    return f"t/{tenant}/balances"


def balance_key(tenant: str, account_id: str) -> Key:
    return Key(balances_partition(tenant), account_id)


def entries_partition(tenant: str, account_id: str) -> str:
    return f"t/{tenant}/entries/{account_id}"


def entry_key(tenant: str, account_id: str, seq: int) -> Key:
    return Key(entries_partition(tenant, account_id), f"{seq:012d}")


def transfers_partition(tenant: str) -> str:
    return f"t/{tenant}/transfers"


def transfer_key(tenant: str, transfer_id: str) -> Key:
    return Key(transfers_partition(tenant), transfer_id)


def transfer_days_partition(tenant: str, day: date) -> str:
    """The time index of one UTC day: a record per transfer created that day, sorted by
    creation time (a query per day keeps a time range's reads near its own transfers)."""
    return f"t/{tenant}/transfers-on/{day.isoformat()}"


def transfer_time_key(tenant: str, created_at: float, transfer_id: str) -> Key:
    return Key(
        transfer_days_partition(tenant, utc_day(created_at)),
        f"{_time_sort(created_at)}/{transfer_id}",
    )


def utc_day(epoch_seconds: float) -> date:
    return datetime.fromtimestamp(epoch_seconds, UTC).date()


def _time_sort(epoch_seconds: float) -> str:
    return f"{round(epoch_seconds * 1_000_000):017d}"


def batches_partition(tenant: str) -> str:
    return f"t/{tenant}/batches"


def batch_key(tenant: str, batch_id: str) -> Key:
    return Key(batches_partition(tenant), batch_id)


def timeouts_partition(tenant: str) -> str:
    return f"t/{tenant}/pending-timeouts"


def timeout_key(tenant: str, expires_at: float, transfer_id: str) -> Key:
    return Key(timeouts_partition(tenant), f"{_timeout_sort(expires_at)}/{transfer_id}")


def _timeout_sort(expires_at: float) -> str:
    return f"{round(expires_at * 1000):015d}"


# ---------------------------------------------------------------------------------------------
# Records <-> models
# ---------------------------------------------------------------------------------------------


def account_from_record(record: Record) -> Account:
    # Stored times are epoch seconds, which pydantic reads as UTC datetimes; extra stored
    # fields (tenant, fingerprint) are ignored by the models.
    return Account.model_validate({**record.data, "version": record.version})


_STATE_FIELDS: Final = (
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
    "entry_count",
)


def state_from_record(record: Record) -> BalanceState:
    data = record.data
    return BalanceState(
        account_id=data["account_id"],
        currency=data["currency"],
        normal_balance=NormalBalance(data["normal_balance"]),
        debits_must_not_exceed_credits=data["debits_must_not_exceed_credits"],
        credits_must_not_exceed_debits=data["credits_must_not_exceed_debits"],
        closed=data["closed"],
        **{name: data[name] for name in _STATE_FIELDS},
    )


def state_data(state: BalanceState) -> JSONObject:
    return {
        "account_id": state.account_id,
        "currency": state.currency,
        "normal_balance": str(state.normal_balance),
        "debits_must_not_exceed_credits": state.debits_must_not_exceed_credits,
        "credits_must_not_exceed_debits": state.credits_must_not_exceed_debits,
        "closed": state.closed,
        **{name: getattr(state, name) for name in _STATE_FIELDS},
    }


def balance_from_state(state: BalanceState) -> Balance:
    return Balance(
        account_id=state.account_id,
        currency=state.currency,
        normal_balance=state.normal_balance,
        debits_pending=state.debits_pending,
        debits_posted=state.debits_posted,
        credits_pending=state.credits_pending,
        credits_posted=state.credits_posted,
        posted=posted(state),
        pending=pending(state),
        available=available(state),
    )


def entry_from_record(record: Record) -> Entry:
    return Entry.model_validate({**record.data, "seq": int(record.key.sort)})


def transfer_from_record(record: Record) -> Transfer:
    return Transfer.model_validate(record.data)


# ---------------------------------------------------------------------------------------------
# The journal of one transaction: balance changes and their entries
# ---------------------------------------------------------------------------------------------


class _Journal:
    """The balances one transaction reads and changes, and the entries it appends. Several
    transfers of a batch may touch one account: each account is read once and replaced once
    (at the version read), its entries numbered on from its entry count."""

    def __init__(self, tenant: str, now: float, known: dict[str, Record] | None = None) -> None:
        self.tenant = tenant
        self.now = now
        self.known = {} if known is None else known
        """Balance records written by this process's previous transact, used instead of a
        read (see :func:`create_transfers_plan`); a stale one makes the transact fail."""
        self.versions: dict[str, int] = {}
        self.states: dict[str, BalanceState] = {}
        self.entries: list[Operation] = []

    def load(self, *account_ids: str) -> Plan[list[BalanceState]]:
        """The accounts' balance states; those neither read nor known yet are read together."""
        missing = [a for a in dict.fromkeys(account_ids) if a not in self.states]
        unread = [a for a in missing if a not in self.known]
        read: dict[str, Record | None] = {}
        if unread:
            keys = tuple(balance_key(self.tenant, known_id(a, "account")) for a in unread)
            records: list[Record | None] = yield GetAll(keys)
            read = dict(zip(unread, records, strict=True))
        for account_id in missing:
            record = self.known.get(account_id) or read[account_id]
            if record is None:
                raise NotFound(f"account {account_id!r} not found")
            self.versions[account_id] = record.version
            self.states[account_id] = state_from_record(record)
        return [self.states[a] for a in account_ids]

    def move(
        self, account_id: str, movement: Movement, transfer_id: str, kind: EntryKind, amount: int
    ) -> None:
        state = apply(self.states[account_id], movement)
        check_constraints(state)
        self.states[account_id] = state
        self.entries.append(
            Create(
                entry_key(self.tenant, account_id, state.entry_count),
                {
                    "account_id": account_id,
                    "transfer_id": transfer_id,
                    "side": str(movement.side),
                    "kind": str(kind),
                    "amount": amount,
                    "pending_delta": movement.pending_delta,
                    "posted_delta": movement.posted_delta,
                    "balance_after": state.totals().model_dump(),
                    "created_at": self.now,
                },
            )
        )

    def move_both(
        self,
        *,
        debit_id: str,
        credit_id: str,
        movements: tuple[Movement, Movement],
        transfer_id: str,
        kind: EntryKind,
        amount: int,
    ) -> None:
        self.move(debit_id, movements[0], transfer_id, kind, amount)
        self.move(credit_id, movements[1], transfer_id, kind, amount)

    def checkpoint(self) -> tuple[dict[str, int], dict[str, BalanceState], int]:
        """The journal's state now, to :meth:`rollback` to if the next transfer is refused."""
        return dict(self.versions), dict(self.states), len(self.entries)

    def rollback(self, saved: tuple[dict[str, int], dict[str, BalanceState], int]) -> None:
        versions, states, entry_count = saved
        self.versions, self.states = versions, states
        del self.entries[entry_count:]

    def operations(self) -> list[Operation]:
        replaces: list[Operation] = [
            Replace(
                balance_key(self.tenant, account_id),
                state_data(state),
                expected_version=self.versions[account_id],
            )
            for account_id, state in self.states.items()
        ]
        return replaces + self.entries


def _written(results: list[Record | None]) -> Record:
    """The record the transact's first operation (a Create or Replace) wrote."""
    first = results[0]
    assert first is not None
    return first


def _commit(operations: Sequence[Operation], what: str) -> Plan[list[Record | None]]:
    """Write ``operations`` in one transact; a failed condition is contention (re-read, retry)."""
    try:
        results: list[Record | None] = yield Transact(operations)
    except TransactionConflict as exc:
        raise Contention(f"{what}: records changed concurrently; retry later") from exc
    except InvalidRecord as exc:
        raise _unstorable(exc) from exc
    return results


def _unstorable(exc: InvalidRecord) -> InvalidRequest:
    """What the store refused to hold (e.g. text with a lone surrogate): the request's fault."""
    return InvalidRequest(f"the request cannot be stored: {exc}")


# ---------------------------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------------------------


def create_account_plan(tenant: str, new: NewAccount, now: float) -> Plan[Account]:
    account_id = new_account_id(now)
    data: JSONObject = {
        "id": account_id,
        "tenant": tenant,
        **new.model_dump(mode="json"),
        "status": str(AccountStatus.OPEN),
        "created_at": now,
    }
    operations: list[Operation] = [
        Create(account_key(tenant, account_id), data),
        Create(balance_key(tenant, account_id), state_data(initial_state(account_id, new))),
    ]
    if new.external_id is not None:
        operations.append(
            Create(external_id_key(tenant, new.external_id), {"account_id": account_id})
        )
    try:
        results = yield Transact(operations)
    except InvalidRecord as exc:
        raise _unstorable(exc) from exc
    except TransactionConflict as exc:
        if new.external_id is not None:
            owner = yield Get(external_id_key(tenant, new.external_id))
            if owner is not None:
                raise ExternalIdTaken(
                    f"external_id {new.external_id!r} already names account "
                    f"{owner.data['account_id']}"
                ) from exc
        raise Contention("account creation collided; retry") from exc
    created = _written(results)
    return account_from_record(created)


def _required(
    make_key: Callable[[str, str], Key], tenant: str, object_id: str, what: str
) -> Plan[Record]:
    """The record of ``object_id`` (``make_key`` names it), or ``NotFound``."""
    record: Record | None = yield Get(make_key(tenant, known_id(object_id, what)))
    if record is None:
        raise NotFound(f"{what} {object_id!r} not found")
    return record


def _account_record(tenant: str, account_id: str) -> Plan[Record]:
    return (yield from _required(account_key, tenant, account_id, "account"))


def get_account_plan(tenant: str, account_id: str) -> Plan[Account]:
    return account_from_record((yield from _account_record(tenant, account_id)))


def _check_version(record: Record, expected_version: int) -> None:
    if record.version != expected_version:
        raise PreconditionFailed(
            f"account {record.key.sort} is at version {record.version}, not {expected_version}"
        )


_METADATA: Final = TypeAdapter(Metadata)


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The metadata rules of the models, for callers that pass a plain dict."""
    try:
        return _METADATA.validate_python(metadata, strict=True)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid metadata: {exc.errors()[0]['msg']}") from None


def update_metadata_plan(
    tenant: str, account_id: str, metadata: dict[str, str], expected_version: int
) -> Plan[Account]:
    metadata = check_metadata(metadata)
    record = yield from _account_record(tenant, account_id)
    _check_version(record, expected_version)
    updated = yield from _commit(
        [Replace(record.key, {**record.data, "metadata": metadata}, expected_version)],
        "metadata update",
    )
    result = _written(updated)
    return account_from_record(result)


def close_account_plan(tenant: str, account_id: str, expected_version: int) -> Plan[Account]:
    record = yield from _account_record(tenant, account_id)
    _check_version(record, expected_version)
    if record.data["status"] == AccountStatus.CLOSED:
        return account_from_record(record)
    balance: Record = yield Get(balance_key(tenant, account_id))
    updated = yield from _commit(
        [
            Replace(
                record.key, {**record.data, "status": str(AccountStatus.CLOSED)}, record.version
            ),
            Replace(balance.key, {**balance.data, "closed": True}, balance.version),
        ],
        "account close",
    )
    result = _written(updated)
    return account_from_record(result)


def get_account_by_external_id_plan(tenant: str, external_id: str) -> Plan[Account]:
    """The account whose ``external_id`` this is (``NotFound`` if none)."""
    owner = yield from _required(external_id_key, tenant, external_id, "account with external_id")
    return (yield from get_account_plan(tenant, owner.data["account_id"]))


def get_balance_plan(tenant: str, account_id: str) -> Plan[Balance]:
    record = yield from _required(balance_key, tenant, account_id, "account")
    return balance_from_state(state_from_record(record))


# ---------------------------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------------------------


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise InvalidRequest(f"limit must be an integer from 1 to 100, got {limit!r}")
    return limit


def scan_plan[T](
    partition: str,
    limit: int,
    cursor: str | None,
    convert: Callable[[Record], Plan[T | None]],
    *,
    past_end: Callable[[Record], bool] | None = None,
) -> Plan[tuple[list[T], str | None]]:
    """Up to ``limit`` items of ``partition`` in sort-key order, each record converted (``None``
    skips it), and the cursor after the last record read (``None``: nothing follows). A
    record for which ``past_end`` holds ends the list (it and what follows are not read).

    Each query asks for exactly the items still missing, so the store's cursor always points
    right after the last record used: paging has no gaps or duplicates even while records are
    inserted. Filters that skip records read at most :data:`MAX_SCAN` of them per call.
    """
    items: list[T] = []
    scanned = 0
    while True:
        try:
            page: Page = yield Query(partition, limit - len(items), cursor)
        except InvalidRecord as exc:
            raise InvalidCursor("the cursor does not belong to this list") from exc
        for record in page.records:
            if past_end is not None and past_end(record):
                return items, None
            item = yield from convert(record)
            if item is not None:
                items.append(item)
        scanned += len(page.records)
        cursor = page.cursor
        if len(items) == limit or cursor is None or scanned >= MAX_SCAN:
            return items, cursor


def _plain[T](value: T) -> Plan[T]:
    """A plan that reads nothing and returns ``value``."""
    yield from ()
    return value


def list_accounts_plan(
    tenant: str, limit: int, cursor: str | None, currency: str | None, status: str | None
) -> Plan[tuple[list[Account], str | None]]:
    def convert(record: Record) -> Plan[Account | None]:
        data = record.data
        keep = (currency is None or data["currency"] == currency) and (
            status is None or data["status"] == status
        )
        return _plain(account_from_record(record) if keep else None)

    return (yield from scan_plan(accounts_partition(tenant), limit, cursor, convert))


def list_entries_plan(
    tenant: str, account_id: str, limit: int, cursor: str | None
) -> Plan[tuple[list[Entry], str | None]]:
    yield from _account_record(tenant, account_id)  # another tenant's account is NotFound

    def convert(record: Record) -> Plan[Entry | None]:
        return _plain(entry_from_record(record))

    return (yield from scan_plan(entries_partition(tenant, account_id), limit, cursor, convert))


_CREATING_KINDS: Final = frozenset({EntryKind.PENDING, EntryKind.POSTED})


MAX_RANGE_DAYS: Final = 366
"""Longest time range one transfer list covers (it reads one index partition per day)."""


def list_transfers_plan(
    tenant: str,
    account_id: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    *,
    created_gte: float | None = None,
    created_lt: float | None = None,
    now: float,
) -> Plan[tuple[list[Transfer], str | None]]:
    """A tenant's transfers: with a time range, oldest first (``created_lt`` defaults to now);
    else by id; with ``account_id``, in the order they reached that account."""

    def keep(transfer: Transfer) -> Transfer | None:
        return transfer if status is None or transfer.status == status else None

    if created_gte is None and created_lt is not None:
        raise InvalidRequest("a time range needs created_gte (created_lt defaults to now)")
    timed = created_gte is not None
    start = created_gte if created_gte is not None else 0.0
    end = created_lt if created_lt is not None else now + 1e-6  # now itself included

    if account_id is None and not timed:

        def convert(record: Record) -> Plan[Transfer | None]:
            return _plain(keep(transfer_from_record(record)))

        return (yield from scan_plan(transfers_partition(tenant), limit, cursor, convert))

    if account_id is None:
        return (
            yield from _transfers_in_range(
                tenant, start, end, keep=keep, limit=limit, cursor=cursor
            )
        )

    yield from _account_record(tenant, account_id)

    def convert_entry(record: Record) -> Plan[Transfer | None]:
        data = record.data
        if data["kind"] not in _CREATING_KINDS or data["created_at"] < start:
            return None  # a later step of a transfer already listed, or before the range
        found: Record = yield Get(transfer_key(tenant, data["transfer_id"]))
        return keep(transfer_from_record(found))

    def entry_past_end(record: Record) -> bool:
        created_at: float = record.data["created_at"]
        return created_at >= end

    return (
        yield from scan_plan(
            entries_partition(tenant, account_id),
            limit,
            cursor,
            convert_entry,
            past_end=entry_past_end if timed else None,
        )
    )


def _transfers_in_range(
    tenant: str,
    start: float,
    end: float,
    *,
    keep: Callable[[Transfer], Transfer | None],
    limit: int,
    cursor: str | None,
) -> Plan[tuple[list[Transfer], str | None]]:
    """Transfers created in [start, end), oldest first, walking the time index day by day.
    The cursor is ``<day>/<that day's store cursor>``."""
    if end <= start:
        return [], None
    first, last = _range_days(start, end)
    day, day_cursor = _range_cursor(cursor, first, last)
    low, high = _time_sort(start), _time_sort(end)

    def in_range(record: Record) -> Plan[Transfer | None]:
        if record.key.sort < low:
            return None
        found: Record = yield Get(transfer_key(tenant, record.data["transfer_id"]))
        return keep(transfer_from_record(found))

    def past_end(record: Record) -> bool:
        return record.key.sort >= high

    items: list[Transfer] = []
    while True:
        found, day_cursor = yield from scan_plan(
            transfer_days_partition(tenant, day),
            limit - len(items),
            day_cursor,
            in_range,
            past_end=past_end,
        )
        items += found
        if day_cursor is None:
            if day == last:
                return items, None
            day += timedelta(days=1)
        if len(items) == limit or day_cursor is not None:
            # A full page, or a day cut short by the scan bound: continue from here.
            return items, f"{day.isoformat()}/{day_cursor or ''}"


def _range_days(start: float, end: float) -> tuple[date, date]:
    first, last = utc_day(start), utc_day(end - 1e-6)
    if (last - first).days >= MAX_RANGE_DAYS:
        raise InvalidRequest(f"a time range covers at most {MAX_RANGE_DAYS} days")
    return first, last


def _range_cursor(cursor: str | None, first: date, last: date) -> tuple[date, str | None]:
    if cursor is None:
        return first, None
    day_text, _, day_cursor = cursor.partition("/")
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        day = date.min
    if not first <= day <= last:
        raise InvalidCursor("the cursor does not belong to this list")
    return day, day_cursor or None


# ---------------------------------------------------------------------------------------------
# Transfers
# ---------------------------------------------------------------------------------------------


def _transfer_data(
    new: NewTransfer,
    transfer_id: str,
    now: float,
    request_fingerprint: str,
    *,
    reverses: str | None = None,
    batch_id: str | None = None,
) -> JSONObject:
    expires_at = now + new.timeout_s if new.timeout_s is not None else None
    return {
        "id": transfer_id,
        "debit_account_id": new.debit_account_id,
        "credit_account_id": new.credit_account_id,
        "amount": new.amount,
        "currency": new.currency,
        "status": str(TransferStatus.PENDING if new.pending else TransferStatus.POSTED),
        "posted_amount": 0 if new.pending else new.amount,
        "pending": new.pending,
        "timeout_s": new.timeout_s,
        "expires_at": expires_at,
        "metadata": new.metadata,
        "external_id": new.external_id,
        "reverses": reverses,
        "reversed_by": None,
        "batch_id": batch_id,
        "created_at": now,
        "resolved_at": None,
        "fingerprint": request_fingerprint,
    }


def _add_transfer(
    journal: _Journal,
    new: NewTransfer,
    transfer_id: str,
    request_fingerprint: str,
    *,
    reverses: str | None = None,
    batch_id: str | None = None,
) -> Plan[list[Operation]]:
    """Apply a new transfer to the journal; return its own records (transfer, time index,
    timeout, its ``transfer.created`` event)."""
    debit, credit = yield from journal.load(new.debit_account_id, new.credit_account_id)
    check_new_transfer(new, debit, credit)
    kind = EntryKind.PENDING if new.pending else EntryKind.POSTED
    movements = create_movements(new.amount, pending=new.pending)
    journal.move_both(
        debit_id=new.debit_account_id,
        credit_id=new.credit_account_id,
        movements=movements,
        transfer_id=transfer_id,
        kind=kind,
        amount=new.amount,
    )
    data = _transfer_data(
        new, transfer_id, journal.now, request_fingerprint, reverses=reverses, batch_id=batch_id
    )
    operations: list[Operation] = [
        Create(transfer_key(journal.tenant, transfer_id), data),
        Create(
            transfer_time_key(journal.tenant, journal.now, transfer_id),
            {"transfer_id": transfer_id},
        ),
    ]
    if data["expires_at"] is not None:
        operations.append(
            Create(
                timeout_key(journal.tenant, data["expires_at"], transfer_id),
                {"transfer_id": transfer_id, "expires_at": data["expires_at"]},
            )
        )
    return operations + outbox_operations(journal.tenant, EventType.CREATED, data, journal.now)


def _replayed(key: Key, request_fingerprint: str) -> Plan[Record | None]:
    """The record an earlier request with this idempotency key created, if any; raise
    ``IdempotencyKeyReused`` if that request had another body."""
    existing: Record | None = yield Get(key)
    if existing is not None and existing.data["fingerprint"] != request_fingerprint:
        raise IdempotencyKeyReused(
            "this idempotency key was used with another request; nothing was written"
        )
    return existing


def _exactly_once[T](
    key: Key,
    request_fingerprint: str,
    attempt: Plan[T],
    replay: Callable[[Record], Plan[T]],
) -> Plan[tuple[T, bool]]:
    """Run ``attempt`` (whose transact creates the record at ``key``); if it fails for any
    reason, first look for a record an earlier request with the same key created: then the
    answer is that request's (replayed), whatever the ledger looks like now."""
    try:
        result = yield from attempt
    except LedgerError:  # a refusal, or contention (also: the record at ``key`` exists)
        existing = yield from _replayed(key, request_fingerprint)
        if existing is None:
            raise
        return (yield from replay(existing)), True
    return result, False


def _replay_transfer(record: Record) -> Plan[Transfer]:
    return _plain(transfer_from_record(record))


def create_transfer_plan(
    tenant: str, new: NewTransfer, idempotency_key: str, now: float
) -> Plan[tuple[Transfer, bool]]:
    new_id = transfer_id(tenant, idempotency_key)
    request_fingerprint = fingerprint(new.model_dump(mode="json"))

    def attempt() -> Plan[Transfer]:
        journal = _Journal(tenant, now)
        own = yield from _add_transfer(journal, new, new_id, request_fingerprint)
        results = yield from _commit(own + journal.operations(), "transfer")
        created = _written(results)
        return transfer_from_record(created)

    key = transfer_key(tenant, new_id)
    return (yield from _exactly_once(key, request_fingerprint, attempt(), _replay_transfer))


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """What :func:`create_transfers_plan` did with one request: ``created`` it, found it already
    created by the same request (``duplicate``: a re-run or a resumed run), or ``rejected`` it
    (``error`` says why; nothing of it was written)."""

    transfer_id: str | None
    status: Literal["created", "duplicate", "rejected"]
    error: LedgerError | None = None


type TransferRequest = tuple[NewTransfer, str]
"""A transfer to create and its idempotency key."""


def _transfer_operation_count(new: NewTransfer) -> int:
    """Records a new transfer writes besides balances: itself, its time index, two entries,
    its event (with its due record), maybe a timeout."""
    return 4 + OUTBOX_OPERATIONS + (new.timeout_s is not None)


def transfer_chunks(requests: Sequence[TransferRequest], max_operations: int) -> list[range]:
    """Consecutive slices of ``requests`` whose transfers fit one transact each (their own
    records plus one balance per distinct account), in order."""
    chunks: list[range] = []
    start, operations, accounts = 0, 0, set[str]()
    for index, (new, _) in enumerate(requests):
        touched = {new.debit_account_id, new.credit_account_id}
        cost = _transfer_operation_count(new) + len(touched - accounts)
        if index > start and operations + cost > max_operations:
            chunks.append(range(start, index))
            start, operations, accounts = index, 0, set()
            cost = _transfer_operation_count(new) + len(touched)
        operations += cost
        accounts |= touched
    if start < len(requests):
        chunks.append(range(start, len(requests)))
    return chunks


@dataclass
class TransfersRun:
    """What one ``create_transfers`` call carries from a chunk's transact to the next."""

    balances: dict[str, Record] = field(default_factory=dict)
    """The balance records this run's transacts wrote last, by account id."""
    careful: bool = False
    """Read everything (whether each transfer exists, every balance) before writing."""


def create_transfers_plan(
    tenant: str, requests: Sequence[TransferRequest], now: float, run: TransfersRun
) -> Plan[list[TransferOutcome]]:
    """Independent (not linked) transfers in ONE transact, each exactly once per idempotency
    key with the id :func:`create_transfer_plan` derives: one already created with the same
    request is a ``duplicate``, with another request ``idempotency_key_reused``; one the rules
    refuse is ``rejected`` alone (the journal rolls back to before it). Balances touched by
    several transfers are computed cumulatively and replaced once. ``requests`` must fit one
    transact (:func:`transfer_chunks`); a concurrent change is ``Contention`` (the runner
    re-runs the plan, which then reads everything).

    An import is mostly new transfers on the balances its previous transact wrote, so a chunk
    is first written *optimistically*: no read of whether each transfer exists (its ``Create``
    fails if it does) and the balances as ``run`` remembers them (their ``Replace`` fails if
    another writer changed one). Only if that transact fails, or a transfer was refused on that
    view, is the chunk done again *carefully*, reading everything, which then decides. Reading
    everything every time doubled the store operations of a 100,000-row import (each transfer
    read, each touched balance read per chunk: ~180,000 reads beside ~380,000 writes) and made
    it ~30% slower end to end.
    """
    if not run.careful:
        outcomes = yield from _transfers_attempt(tenant, requests, now, run, careful=False)
        if outcomes is not None:
            return outcomes
    run.careful, run.balances = True, {}
    outcomes = yield from _transfers_attempt(tenant, requests, now, run, careful=True)
    assert outcomes is not None
    # A re-run or a resumed run meets its duplicates in a row: stay careful while it does.
    run.careful = any(outcome.status == "duplicate" for outcome in outcomes)
    return outcomes


def _created_before(new_id: str, earlier: str, request_fingerprint: str) -> TransferOutcome:
    """The outcome of a request whose transfer exists (made by a request of fingerprint
    ``earlier``)."""
    if earlier == request_fingerprint:
        return TransferOutcome(new_id, "duplicate")
    reused = IdempotencyKeyReused(
        "this idempotency key was used with another request; nothing was written"
    )
    return TransferOutcome(new_id, "rejected", reused)


def _transfers_attempt(
    tenant: str,
    requests: Sequence[TransferRequest],
    now: float,
    run: TransfersRun,
    *,
    careful: bool,
) -> Plan[list[TransferOutcome] | None]:
    """One attempt of :func:`create_transfers_plan`; ``None``: an optimistic one gave up
    (nothing written)."""
    journal = _Journal(tenant, now, None if careful else run.balances)
    outcomes: list[TransferOutcome] = []
    own: list[Operation] = []
    planned: dict[str, str] = {}  # id -> fingerprint of the transfers this transact creates
    for new, idempotency_key in requests:
        try:
            new_id = transfer_id(tenant, idempotency_key)
        except LedgerError as exc:
            outcomes.append(TransferOutcome(None, "rejected", exc))
            continue
        request_fingerprint = fingerprint(new.model_dump(mode="json"))
        earlier = planned.get(new_id)
        if earlier is None and careful:
            existing: Record | None = yield Get(transfer_key(tenant, new_id))
            earlier = None if existing is None else existing.data["fingerprint"]
        if earlier is not None:
            outcomes.append(_created_before(new_id, earlier, request_fingerprint))
            continue
        saved = journal.checkpoint()
        try:
            own += yield from _add_transfer(journal, new, new_id, request_fingerprint)
        except LedgerError as exc:
            if not careful:
                return None  # refused on a remembered view: decide on a fresh one
            journal.rollback(saved)
            outcomes.append(TransferOutcome(new_id, "rejected", exc))
            continue
        planned[new_id] = request_fingerprint
        outcomes.append(TransferOutcome(new_id, "created"))
    if not own:
        return outcomes
    balances = journal.operations()
    try:
        results = yield from _commit(own + balances, "transfers")
    except Contention:
        if careful:
            raise
        return None
    written = results[len(own) : len(own) + len(journal.states)]  # the balances' Replaces
    run.balances.update((record.key.sort, record) for record in written if record is not None)
    return outcomes


def _transfer_record(tenant: str, transfer_id: str) -> Plan[Record]:
    return (yield from _required(transfer_key, tenant, transfer_id, "transfer"))


def get_transfer_plan(tenant: str, transfer_id: str) -> Plan[Transfer]:
    return transfer_from_record((yield from _transfer_record(tenant, transfer_id)))


_RESOLVED_EVENTS: Final = {
    EntryKind.POST: EventType.POSTED,
    EntryKind.VOID: EventType.VOIDED,
    EntryKind.EXPIRE: EventType.EXPIRED,
}


def resolve_plan(
    tenant: str, transfer_id: str, kind: EntryKind, amount: int | None, now: float
) -> Plan[Transfer]:
    """Post (``amount``: all by default), void or expire a pending transfer, at most once."""
    record = yield from _transfer_record(tenant, transfer_id)
    data = record.data
    check_pending(TransferStatus(data["status"]), transfer_id)
    reserved: int = data["amount"]
    expires_at: float | None = data["expires_at"]
    if kind is EntryKind.POST:
        posted_amount = resolve_post_amount(reserved, amount, expires_at=expires_at, now=now)
        movements = post_movements(reserved, posted_amount)
    else:
        if kind is EntryKind.EXPIRE and (expires_at is None or now < expires_at):
            raise TransferNotPending(f"transfer {transfer_id} is not due to expire")
        posted_amount = 0
        movements = void_movements(reserved)
    journal = _Journal(tenant, now)
    yield from journal.load(data["debit_account_id"], data["credit_account_id"])
    journal.move_both(
        debit_id=data["debit_account_id"],
        credit_id=data["credit_account_id"],
        movements=movements,
        transfer_id=transfer_id,
        kind=kind,
        amount=reserved,
    )
    status = TransferStatus.POSTED if kind is EntryKind.POST else TransferStatus.VOIDED
    resolved = {**data, "status": str(status), "posted_amount": posted_amount, "resolved_at": now}
    operations: list[Operation] = [Replace(record.key, resolved, record.version)]
    if expires_at is not None:
        operations.append(Delete(timeout_key(tenant, expires_at, transfer_id)))
    operations += outbox_operations(tenant, _RESOLVED_EVENTS[kind], resolved, now)
    results = yield from _commit(operations + journal.operations(), f"{kind} of {transfer_id}")
    updated = _written(results)
    return transfer_from_record(updated)


def reverse_plan(
    tenant: str, original_id: str, idempotency_key: str, now: float
) -> Plan[tuple[Transfer, bool]]:
    """A new posted transfer undoing ``original_id``'s posted amount; at most once, because the
    original's ``reversed_by`` is set (at the version read) in the same transact."""
    reversal_id = transfer_id(tenant, idempotency_key, "reversal")
    request_fingerprint = fingerprint({"reverses": original_id})

    def attempt() -> Plan[Transfer]:
        original = yield from _transfer_record(tenant, original_id)
        data = original.data
        check_reversible(TransferStatus(data["status"]), data["reversed_by"], original_id)
        new = NewTransfer(
            debit_account_id=data["credit_account_id"],
            credit_account_id=data["debit_account_id"],
            amount=data["posted_amount"],
            currency=data["currency"],
            metadata={},
            external_id=None,
        )
        journal = _Journal(tenant, now)
        own = yield from _add_transfer(
            journal, new, reversal_id, request_fingerprint, reverses=original_id
        )
        reversed_data = {**data, "reversed_by": reversal_id}
        marked = Replace(original.key, reversed_data, original.version)
        event = outbox_operations(tenant, EventType.REVERSED, reversed_data, now)
        results = yield from _commit([*own, marked, *event, *journal.operations()], "reversal")
        created = _written(results)
        return transfer_from_record(created)

    key = transfer_key(tenant, reversal_id)
    return (yield from _exactly_once(key, request_fingerprint, attempt(), _replay_transfer))


def batch_operation_count(transfers: Sequence[NewTransfer]) -> int:
    """Store operations a batch's transact needs: the batch record, four records per transfer
    (itself, its time index, its event and the event's due record; five with a timeout), one
    balance per distinct account, two journal entries per transfer."""
    accounts = {t.debit_account_id for t in transfers} | {t.credit_account_id for t in transfers}
    timeouts = sum(1 for t in transfers if t.timeout_s is not None)
    return 1 + (4 + OUTBOX_OPERATIONS) * len(transfers) + timeouts + len(accounts)


def create_batch_plan(
    tenant: str,
    transfers: Sequence[NewTransfer],
    idempotency_key: str,
    now: float,
    max_operations: int,
) -> Plan[tuple[list[Transfer], bool]]:
    """A linked batch: every transfer or none, in one transact. The first failing transfer is
    named by its position (``LedgerError.index``)."""
    batch_id = transfer_id(tenant, idempotency_key, "batch")
    request_fingerprint = fingerprint([t.model_dump(mode="json") for t in transfers])

    def attempt() -> Plan[list[Transfer]]:
        if not transfers:
            raise InvalidRequest("a batch needs at least one transfer")
        if len(transfers) > MAX_BATCH_TRANSFERS:
            raise BatchTooLarge(
                f"a batch holds at most {MAX_BATCH_TRANSFERS} transfers, got {len(transfers)}"
            )
        needed = batch_operation_count(transfers)
        if needed > max_operations:
            raise BatchTooLarge(
                f"this batch needs {needed} store operations in one transaction; this store "
                f"allows {max_operations} (each transfer takes {4 + OUTBOX_OPERATIONS}, plus 1 "
                "per account and 1 for the batch)"
            )
        journal = _Journal(tenant, now)
        own: list[Operation] = []
        ids = [transfer_id(tenant, idempotency_key, "batch", str(i)) for i in range(len(transfers))]
        for index, new in enumerate(transfers):
            try:
                own += yield from _add_transfer(
                    journal, new, ids[index], request_fingerprint, batch_id=batch_id
                )
            except LedgerError as exc:
                raise exc.at(index) from exc
        batch: Operation = Create(
            batch_key(tenant, batch_id),
            {"id": batch_id, "transfer_ids": ids, "fingerprint": request_fingerprint},
        )
        results = yield from _commit([batch, *own, *journal.operations()], "batch")
        return [
            transfer_from_record(result)
            for result in results
            if result is not None and result.key.partition == transfers_partition(tenant)
        ]

    def replay(batch: Record) -> Plan[list[Transfer]]:
        found: list[Transfer] = []
        for member in batch.data["transfer_ids"]:
            transfer = yield from get_transfer_plan(tenant, member)
            found.append(transfer)
        return found

    key = batch_key(tenant, batch_id)
    return (yield from _exactly_once(key, request_fingerprint, attempt(), replay))


def _due_timeouts(tenant: str, now: float) -> Plan[list[str]]:
    """Ids of pending transfers whose timeout has passed, oldest first."""
    due: list[str] = []
    cursor: str | None = None
    while True:
        page: Page = yield Query(timeouts_partition(tenant), 100, cursor)
        for record in page.records:
            if record.data["expires_at"] > now:
                return due
            due.append(record.data["transfer_id"])
        cursor = page.cursor
        if cursor is None:
            return due


def expire_pending_plan(tenant: str, now: float) -> Plan[int]:
    """Void every pending transfer whose timeout passed; return how many were voided. One
    under contention (or resolved meanwhile) is left alone: posted or voided by someone else,
    or expired by the next run."""
    expired = 0
    for due_id in (yield from _due_timeouts(tenant, now)):
        try:
            yield from resolve_plan(tenant, due_id, EntryKind.EXPIRE, None, now)
        except (TransferNotPending, Contention):
            continue
        expired += 1
    return expired
