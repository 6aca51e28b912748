"""The ledger's facade: :class:`Ledger` (async, over an ``AsyncStore``) and :class:`SyncLedger`
(sync, over a ``Store``). Both run the same plans (``ledger.store``): :class:`_Calls` turns each
method's arguments into a plan once, and each facade method only runs it.

>>> from stalwart.storage import open_store
>>> from ledger.domain.models import NewAccount, NewTransfer
>>> ledger = SyncLedger(open_store("sqlite:///:memory:?table=ledger"))
>>> cash = ledger.create_account("acme", NewAccount(currency="USD", name="Cash",
...                                                 normal_balance="debit"))
>>> alice = ledger.create_account("acme", NewAccount(currency="USD", name="Alice"))
>>> transfer, replayed = ledger.create_transfer(
...     "acme",
...     NewTransfer(debit_account_id=cash.id, credit_account_id=alice.id, amount=1250,
...                 currency="USD"),
...     idempotency_key="deposit-1",
... )
>>> ledger.get_balance("acme", alice.id).available, replayed
(1250, False)
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from typing import Final

from pydantic import BaseModel

from ledger import store as plans
from ledger.domain.models import (
    Account,
    Balance,
    Entry,
    EntryKind,
    NewAccount,
    NewTransfer,
    Page,
    Transfer,
)
from ledger.store import (
    CONTENTION_RETRY,
    Plan,
    TransferOutcome,
    TransferRequest,
    check_tenant,
    run_async,
    run_sync,
)
from stalwart.resilience import RetryPolicy
from stalwart.storage import AsyncStore, Store

type MakePlan[T] = Callable[[], Plan[T]]


def paged[T: BaseModel](model: type[T], found: Plan[tuple[list[T], str | None]]) -> Plan[Page[T]]:
    """The items and cursor a list plan returns, as an API page of ``model``."""
    items, cursor = yield from found
    page: type[Page[T]] = Page[model]  # type: ignore[valid-type]  # concrete: Page[Account]
    return page(data=items, has_more=cursor is not None, next_cursor=cursor)


class _Calls:
    """Each facade method's plan (checked arguments, the clock read when the plan starts)."""

    def __init__(self, clock: Callable[[], float], max_transaction_items: int) -> None:
        self.clock = clock
        self.max_transaction_items = max_transaction_items

    def create_account(self, tenant: str, new: NewAccount) -> MakePlan[Account]:
        check_tenant(tenant)
        return lambda: plans.create_account_plan(tenant, new, self.clock())

    def get_account(self, tenant: str, account_id: str) -> MakePlan[Account]:
        check_tenant(tenant)
        return lambda: plans.get_account_plan(tenant, account_id)

    def list_accounts(
        self, tenant: str, limit: int, cursor: str | None, currency: str | None, status: str | None
    ) -> MakePlan[Page[Account]]:
        check_tenant(tenant)
        plans.check_limit(limit)  # refused before any I/O
        return lambda: paged(
            Account, plans.list_accounts_plan(tenant, limit, cursor, currency, status)
        )

    def update_account_metadata(
        self, tenant: str, account_id: str, metadata: dict[str, str], expected_version: int
    ) -> MakePlan[Account]:
        check_tenant(tenant)
        return lambda: plans.update_metadata_plan(tenant, account_id, metadata, expected_version)

    def close_account(
        self, tenant: str, account_id: str, expected_version: int
    ) -> MakePlan[Account]:
        check_tenant(tenant)
        return lambda: plans.close_account_plan(tenant, account_id, expected_version)

    def get_balance(self, tenant: str, account_id: str) -> MakePlan[Balance]:
        check_tenant(tenant)
        return lambda: plans.get_balance_plan(tenant, account_id)

    def list_entries(
        self, tenant: str, account_id: str, limit: int, cursor: str | None
    ) -> MakePlan[Page[Entry]]:
        check_tenant(tenant)
        plans.check_limit(limit)  # refused before any I/O
        return lambda: paged(Entry, plans.list_entries_plan(tenant, account_id, limit, cursor))

    def create_transfer(
        self, tenant: str, new: NewTransfer, idempotency_key: str
    ) -> MakePlan[tuple[Transfer, bool]]:
        check_tenant(tenant)
        return lambda: plans.create_transfer_plan(tenant, new, idempotency_key, self.clock())

    def create_transfers(
        self, tenant: str, requests: Sequence[TransferRequest]
    ) -> list[tuple[list[str], MakePlan[list[TransferOutcome]]]]:
        """One plan per transact-sized chunk of ``requests``, in order, with the accounts it
        touches."""
        check_tenant(tenant)
        requests = list(requests)  # the plans run later: a caller's list may change meanwhile
        run = plans.TransfersRun()

        def chunk_plan(chunk: range) -> tuple[list[str], MakePlan[list[TransferOutcome]]]:
            part = [requests[i] for i in chunk]
            accounts = [a for new, _ in part for a in (new.debit_account_id, new.credit_account_id)]
            return accounts, lambda: plans.create_transfers_plan(tenant, part, self.clock(), run)

        return [
            chunk_plan(chunk)
            for chunk in plans.transfer_chunks(requests, self.max_transaction_items)
        ]

    def get_account_by_external_id(self, tenant: str, external_id: str) -> MakePlan[Account]:
        check_tenant(tenant)
        return lambda: plans.get_account_by_external_id_plan(tenant, external_id)

    def get_transfer(self, tenant: str, transfer_id: str) -> MakePlan[Transfer]:
        check_tenant(tenant)
        return lambda: plans.get_transfer_plan(tenant, transfer_id)

    def list_transfers(
        self,
        tenant: str,
        account_id: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        *,
        created_gte: float | None,
        created_lt: float | None,
    ) -> MakePlan[Page[Transfer]]:
        check_tenant(tenant)
        plans.check_limit(limit)  # refused before any I/O
        return lambda: paged(
            Transfer,
            plans.list_transfers_plan(
                tenant,
                account_id,
                status,
                limit,
                cursor,
                created_gte=created_gte,
                created_lt=created_lt,
                now=self.clock(),
            ),
        )

    def resolve(
        self, tenant: str, transfer_id: str, kind: EntryKind, amount: int | None
    ) -> MakePlan[Transfer]:
        check_tenant(tenant)
        return lambda: plans.resolve_plan(tenant, transfer_id, kind, amount, self.clock())

    def reverse_transfer(
        self, tenant: str, transfer_id: str, idempotency_key: str
    ) -> MakePlan[tuple[Transfer, bool]]:
        check_tenant(tenant)
        return lambda: plans.reverse_plan(tenant, transfer_id, idempotency_key, self.clock())

    def create_batch(
        self, tenant: str, transfers: list[NewTransfer], idempotency_key: str
    ) -> MakePlan[tuple[list[Transfer], bool]]:
        check_tenant(tenant)
        return lambda: plans.create_batch_plan(
            tenant, transfers, idempotency_key, self.clock(), self.max_transaction_items
        )

    def expire_pending(self, tenant: str, now: float | None) -> MakePlan[int]:
        check_tenant(tenant)
        return lambda: plans.expire_pending_plan(tenant, self.clock() if now is None else now)


LOCK_STRIPES: Final = 256
"""Per-process locks transfers take on their accounts (hashed onto this many stripes)."""


def _stripes(tenant: str, account_ids: Sequence[str]) -> list[int]:
    """The stripes of ``account_ids``, each once, in one global order (no deadlock)."""
    return sorted({zlib.crc32(f"{tenant}/{a}".encode()) % LOCK_STRIPES for a in account_ids})


class Ledger:
    """The ledger over an :class:`~stalwart.storage.AsyncStore` (what the API calls).

    Errors are :class:`~ledger.domain.errors.LedgerError` subclasses with a stable ``code`` and
    HTTP ``status``. ``retry_policy`` bounds the optimistic-lock retries of one call (default
    :data:`ledger.store.CONTENTION_RETRY`); when they run out the call raises ``Contention``.
    """

    def __init__(
        self,
        store: AsyncStore,
        *,
        clock: Callable[[], float] = time.time,
        retry_policy: RetryPolicy = CONTENTION_RETRY,
    ) -> None:
        self.store = store
        self.retry_policy = retry_policy
        self._calls = _Calls(clock, store.max_transaction_items)
        self._account_locks = [asyncio.Lock() for _ in range(LOCK_STRIPES)]

    async def run_plan[T](self, make_plan: MakePlan[T]) -> T:
        """Run a plan made afresh for each attempt (contention re-runs it, under the
        ledger's retry policy)."""
        return await run_async(self.store, make_plan, self.retry_policy)

    @asynccontextmanager
    async def _accounts_held(self, tenant: str, *account_ids: str) -> AsyncIterator[None]:
        # Transfers of this process that share an account wait here rather than collide in
        # the store and retry: on 2 hot accounts that retrying cost most of the throughput.
        # Across processes the optimistic lock remains what keeps balances right.
        async with AsyncExitStack() as held:
            for stripe in _stripes(tenant, account_ids):
                await held.enter_async_context(self._account_locks[stripe])
            yield

    async def create_account(self, tenant: str, new: NewAccount) -> Account:
        """Create an account (``ExternalIdTaken`` if its external id names another)."""
        return await self.run_plan(self._calls.create_account(tenant, new))

    async def get_account(self, tenant: str, account_id: str) -> Account:
        """The account (``NotFound``, also for another tenant's id)."""
        return await self.run_plan(self._calls.get_account(tenant, account_id))

    async def list_accounts(
        self,
        tenant: str,
        *,
        limit: int = 10,
        cursor: str | None = None,
        currency: str | None = None,
        status: str | None = None,
    ) -> Page[Account]:
        """Accounts in creation order, optionally of one currency or status."""
        return await self.run_plan(
            self._calls.list_accounts(tenant, limit, cursor, currency, status)
        )

    async def update_account_metadata(
        self, tenant: str, account_id: str, metadata: dict[str, str], *, expected_version: int
    ) -> Account:
        """Replace the metadata if the account is at ``expected_version``, else
        ``PreconditionFailed`` (nothing changes)."""
        return await self.run_plan(
            self._calls.update_account_metadata(tenant, account_id, metadata, expected_version)
        )

    async def close_account(
        self, tenant: str, account_id: str, *, expected_version: int
    ) -> Account:
        """Close the account (no new transfers) if it is at ``expected_version``."""
        return await self.run_plan(self._calls.close_account(tenant, account_id, expected_version))

    async def get_balance(self, tenant: str, account_id: str) -> Balance:
        """The account's totals and balances."""
        return await self.run_plan(self._calls.get_balance(tenant, account_id))

    async def list_entries(
        self, tenant: str, account_id: str, *, limit: int = 10, cursor: str | None = None
    ) -> Page[Entry]:
        """The account's journal, oldest first."""
        return await self.run_plan(self._calls.list_entries(tenant, account_id, limit, cursor))

    async def create_transfer(
        self, tenant: str, new: NewTransfer, *, idempotency_key: str
    ) -> tuple[Transfer, bool]:
        """Create a transfer once per (tenant, idempotency key): ``(transfer, replayed)``."""
        make_plan = self._calls.create_transfer(tenant, new, idempotency_key)
        async with self._accounts_held(tenant, new.debit_account_id, new.credit_account_id):
            return await self.run_plan(make_plan)

    async def create_transfers(
        self, tenant: str, requests: Sequence[TransferRequest]
    ) -> list[TransferOutcome]:
        """Many independent transfers, each ``(new, idempotency_key)`` created exactly once as
        :meth:`create_transfer` would (same id, same fingerprint), written many per transact
        (as many as the store's ``max_transaction_items`` allows). One outcome per request, in
        order: ``created``, ``duplicate`` (already created by the same request: a re-run), or
        ``rejected`` with its error (refused by the rules, or ``idempotency_key_reused``), the
        others unaffected. Not linked: unlike :meth:`create_batch`, one refusal rejects only
        its own transfer. For imports (``ledger import``)."""
        outcomes: list[TransferOutcome] = []
        for accounts, make_plan in self._calls.create_transfers(tenant, requests):
            async with self._accounts_held(tenant, *accounts):
                outcomes += await self.run_plan(make_plan)
        return outcomes

    async def get_account_by_external_id(self, tenant: str, external_id: str) -> Account:
        """The account with this ``external_id`` (``NotFound`` if none)."""
        return await self.run_plan(self._calls.get_account_by_external_id(tenant, external_id))

    async def get_transfer(self, tenant: str, transfer_id: str) -> Transfer:
        """The transfer (``NotFound``, also for another tenant's id)."""
        return await self.run_plan(self._calls.get_transfer(tenant, transfer_id))

    async def list_transfers(
        self,
        tenant: str,
        *,
        account_id: str | None = None,
        status: str | None = None,
        limit: int = 10,
        cursor: str | None = None,
        created_gte: float | None = None,
        created_lt: float | None = None,
    ) -> Page[Transfer]:
        """The tenant's transfers by id, or one account's in the order they reached it. With
        ``created_gte`` (epoch seconds; ``created_lt`` defaults to now), only those created in
        that range, oldest first; a range covers at most 366 days (``invalid_request``)."""
        return await self.run_plan(
            self._calls.list_transfers(
                tenant,
                account_id,
                status,
                limit,
                cursor,
                created_gte=created_gte,
                created_lt=created_lt,
            )
        )

    async def post_transfer(
        self, tenant: str, transfer_id: str, *, amount: int | None = None
    ) -> Transfer:
        """Post a pending transfer, all of it or ``amount`` of it (the rest is released)."""
        return await self.run_plan(self._calls.resolve(tenant, transfer_id, EntryKind.POST, amount))

    async def void_transfer(self, tenant: str, transfer_id: str) -> Transfer:
        """Void a pending transfer (its reservation is released)."""
        return await self.run_plan(self._calls.resolve(tenant, transfer_id, EntryKind.VOID, None))

    async def reverse_transfer(
        self, tenant: str, transfer_id: str, *, idempotency_key: str
    ) -> tuple[Transfer, bool]:
        """Reverse a posted transfer, at most once: ``(reversal, replayed)``."""
        return await self.run_plan(
            self._calls.reverse_transfer(tenant, transfer_id, idempotency_key)
        )

    async def create_batch(
        self, tenant: str, transfers: list[NewTransfer], *, idempotency_key: str
    ) -> tuple[list[Transfer], bool]:
        """Linked transfers, all or none (``LedgerError.index`` names the failing one)."""
        return await self.run_plan(self._calls.create_batch(tenant, transfers, idempotency_key))

    async def expire_pending(self, tenant: str, *, now: float | None = None) -> int:
        """Void the pending transfers whose timeout passed; how many this call voided."""
        return await self.run_plan(self._calls.expire_pending(tenant, now))


class SyncLedger:
    """:class:`Ledger` over a synchronous :class:`~stalwart.storage.Store` (Flask, scripts,
    jobs): the same methods and semantics, not awaited."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        retry_policy: RetryPolicy = CONTENTION_RETRY,
    ) -> None:
        self.store = store
        self.retry_policy = retry_policy
        self._calls = _Calls(clock, store.max_transaction_items)
        self._account_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def run_plan[T](self, make_plan: MakePlan[T]) -> T:
        """See :meth:`Ledger.run_plan`."""
        return run_sync(self.store, make_plan, self.retry_policy)

    @contextmanager
    def _accounts_held(self, tenant: str, *account_ids: str) -> Iterator[None]:
        """See :meth:`Ledger._accounts_held`."""
        with ExitStack() as held:
            for stripe in _stripes(tenant, account_ids):
                held.enter_context(self._account_locks[stripe])
            yield

    def create_account(self, tenant: str, new: NewAccount) -> Account:
        """See :meth:`Ledger.create_account`."""
        return self.run_plan(self._calls.create_account(tenant, new))

    def get_account(self, tenant: str, account_id: str) -> Account:
        """See :meth:`Ledger.get_account`."""
        return self.run_plan(self._calls.get_account(tenant, account_id))

    def list_accounts(
        self,
        tenant: str,
        *,
        limit: int = 10,
        cursor: str | None = None,
        currency: str | None = None,
        status: str | None = None,
    ) -> Page[Account]:
        """See :meth:`Ledger.list_accounts`."""
        return self.run_plan(self._calls.list_accounts(tenant, limit, cursor, currency, status))

    def update_account_metadata(
        self, tenant: str, account_id: str, metadata: dict[str, str], *, expected_version: int
    ) -> Account:
        """See :meth:`Ledger.update_account_metadata`."""
        return self.run_plan(
            self._calls.update_account_metadata(tenant, account_id, metadata, expected_version)
        )

    def close_account(self, tenant: str, account_id: str, *, expected_version: int) -> Account:
        """See :meth:`Ledger.close_account`."""
        return self.run_plan(self._calls.close_account(tenant, account_id, expected_version))

    def get_balance(self, tenant: str, account_id: str) -> Balance:
        """See :meth:`Ledger.get_balance`."""
        return self.run_plan(self._calls.get_balance(tenant, account_id))

    def list_entries(
        self, tenant: str, account_id: str, *, limit: int = 10, cursor: str | None = None
    ) -> Page[Entry]:
        """See :meth:`Ledger.list_entries`."""
        return self.run_plan(self._calls.list_entries(tenant, account_id, limit, cursor))

    def create_transfer(
        self, tenant: str, new: NewTransfer, *, idempotency_key: str
    ) -> tuple[Transfer, bool]:
        """See :meth:`Ledger.create_transfer`."""
        make_plan = self._calls.create_transfer(tenant, new, idempotency_key)
        with self._accounts_held(tenant, new.debit_account_id, new.credit_account_id):
            return self.run_plan(make_plan)

    def create_transfers(
        self, tenant: str, requests: Sequence[TransferRequest]
    ) -> list[TransferOutcome]:
        """See :meth:`Ledger.create_transfers`."""
        outcomes: list[TransferOutcome] = []
        for accounts, make_plan in self._calls.create_transfers(tenant, requests):
            with self._accounts_held(tenant, *accounts):
                outcomes += self.run_plan(make_plan)
        return outcomes

    def get_account_by_external_id(self, tenant: str, external_id: str) -> Account:
        """See :meth:`Ledger.get_account_by_external_id`."""
        return self.run_plan(self._calls.get_account_by_external_id(tenant, external_id))

    def get_transfer(self, tenant: str, transfer_id: str) -> Transfer:
        """See :meth:`Ledger.get_transfer`."""
        return self.run_plan(self._calls.get_transfer(tenant, transfer_id))

    def list_transfers(
        self,
        tenant: str,
        *,
        account_id: str | None = None,
        status: str | None = None,
        limit: int = 10,
        cursor: str | None = None,
        created_gte: float | None = None,
        created_lt: float | None = None,
    ) -> Page[Transfer]:
        """See :meth:`Ledger.list_transfers`."""
        return self.run_plan(
            self._calls.list_transfers(
                tenant,
                account_id,
                status,
                limit,
                cursor,
                created_gte=created_gte,
                created_lt=created_lt,
            )
        )

    def post_transfer(
        self, tenant: str, transfer_id: str, *, amount: int | None = None
    ) -> Transfer:
        """See :meth:`Ledger.post_transfer`."""
        return self.run_plan(self._calls.resolve(tenant, transfer_id, EntryKind.POST, amount))

    def void_transfer(self, tenant: str, transfer_id: str) -> Transfer:
        """See :meth:`Ledger.void_transfer`."""
        return self.run_plan(self._calls.resolve(tenant, transfer_id, EntryKind.VOID, None))

    def reverse_transfer(
        self, tenant: str, transfer_id: str, *, idempotency_key: str
    ) -> tuple[Transfer, bool]:
        """See :meth:`Ledger.reverse_transfer`."""
        return self.run_plan(self._calls.reverse_transfer(tenant, transfer_id, idempotency_key))

    def create_batch(
        self, tenant: str, transfers: list[NewTransfer], *, idempotency_key: str
    ) -> tuple[list[Transfer], bool]:
        """See :meth:`Ledger.create_batch`."""
        return self.run_plan(self._calls.create_batch(tenant, transfers, idempotency_key))

    def expire_pending(self, tenant: str, *, now: float | None = None) -> int:
        """See :meth:`Ledger.expire_pending`."""
        return self.run_plan(self._calls.expire_pending(tenant, now))
