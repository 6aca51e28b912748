"""The facade's behaviour on every engine, sync and async: accounts, transfers, two-phase,
reversal, batches, optimistic locking, tenants. Each test ends on a consistent ledger."""

from __future__ import annotations

import pytest
from ledger.domain.errors import (
    AccountClosed,
    AlreadyReversed,
    BatchTooLarge,
    CurrencyMismatch,
    ExternalIdTaken,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidCursor,
    InvalidRequest,
    NotFound,
    PostExceedsPending,
    PreconditionFailed,
    SameAccount,
    TransferExpired,
    TransferNotPending,
    TransferNotPosted,
)
from ledger.domain.models import AccountStatus, NewAccount, NormalBalance, TransferStatus

T = "acme"


async def test_accounts_create_get_list_and_external_ids(ledger):
    made = [await ledger.account(f"a{i}") for i in range(5)]
    euro = await ledger.account("eur", currency="EUR")
    assert await ledger.get_account(T, made[0].id) == made[0]
    assert made[0].version == 1
    assert made[0].status is AccountStatus.OPEN

    seen, cursor = [], None
    while True:
        page = await ledger.list_accounts(T, limit=2, cursor=cursor)
        seen += [account.id for account in page.data]
        if not page.has_more:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    assert seen == [account.id for account in [*made, euro]]  # creation order, no gaps
    only_eur = await ledger.list_accounts(T, currency="EUR")
    assert [a.id for a in only_eur.data] == [euro.id]

    new = NewAccount(currency="USD", name="w", external_id="cus_1")
    first = await ledger.create_account(T, new)
    with pytest.raises(ExternalIdTaken) as taken:
        await ledger.create_account(T, new)
    assert first.id in taken.value.detail
    assert (await ledger.create_account("other", new)).external_id == "cus_1"  # per tenant

    with pytest.raises(NotFound):
        await ledger.get_account(T, "nope")
    for limit in (0, 101):
        with pytest.raises(InvalidRequest):
            await ledger.list_accounts(T, limit=limit)
    with pytest.raises(InvalidCursor):
        await ledger.list_accounts("other", cursor=cursor)
    assert await ledger.invariants() == []


async def test_transfer_balances_entries_and_exactly_once(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice", no_overdraft=True)
    deposit = ledger.draft(cash, alice, 10_000, metadata={"ref": "d1"})
    created, replayed = await ledger.create_transfer(T, deposit, idempotency_key="k1")
    assert not replayed
    assert created.status is TransferStatus.POSTED
    assert created.posted_amount == 10_000

    again, replayed = await ledger.create_transfer(T, deposit, idempotency_key="k1")
    assert replayed
    assert again == created
    with pytest.raises(IdempotencyKeyReused):
        await ledger.create_transfer(T, ledger.draft(cash, alice, 1), idempotency_key="k1")

    balance = await ledger.get_balance(T, alice.id)
    assert (balance.credits_posted, balance.posted, balance.available) == (10_000, 10_000, 10_000)
    assert (await ledger.get_balance(T, cash.id)).posted == 10_000  # debit-normal: positive

    with pytest.raises(InsufficientFunds):
        await ledger.create_transfer(T, ledger.draft(alice, cash, 10_001), idempotency_key="k2")
    with pytest.raises(SameAccount):
        await ledger.create_transfer(T, ledger.draft(cash, cash, 1), idempotency_key="k3")
    euro = await ledger.account("eur", currency="EUR")
    with pytest.raises(CurrencyMismatch):
        await ledger.create_transfer(T, ledger.draft(cash, euro, 1), idempotency_key="k4")
    with pytest.raises(NotFound):
        await ledger.create_transfer(
            T,
            ledger.draft(euro, euro, 1).model_copy(update={"debit_account_id": "missing"}),
            idempotency_key="k5",
        )

    entries = await ledger.list_entries(T, alice.id)
    assert [(e.seq, e.kind, e.posted_delta) for e in entries.data] == [(1, "posted", 10_000)]
    assert entries.data[0].balance_after.credits_posted == 10_000
    listed = await ledger.list_transfers(T, account_id=alice.id)
    assert [t.id for t in listed.data] == [created.id]
    assert (await ledger.list_transfers(T)).data == [created]
    assert (await ledger.list_transfers(T, status="pending")).data == []
    assert await ledger.invariants() == []


async def test_transfers_by_time_range_oldest_first_across_days(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice")
    bob = await ledger.account("bob")
    day = 86_400
    start = ledger.clock()
    made = []  # two transfers a day for three days, the second of each day pending
    for n in range(3):
        for to, pending in ((alice, False), (bob, True)):
            draft = ledger.draft(cash, to, 1, pending=pending)
            made.append(
                (await ledger.create_transfer(T, draft, idempotency_key=f"{n}{to.name}"))[0]
            )
            ledger.clock.advance(1)
        ledger.clock.advance(day)

    everything = await ledger.list_transfers(T, created_gte=start, limit=100)
    assert everything.data == made  # oldest first, now included by default
    assert not everything.has_more
    middle = await ledger.list_transfers(T, created_gte=start + day, created_lt=start + 2 * day)
    assert middle.data == made[2:4]

    seen, cursor = [], None  # one per page, across the days' index partitions
    while True:
        page = await ledger.list_transfers(T, created_gte=start, limit=1, cursor=cursor)
        seen += page.data
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert seen == made

    alices = await ledger.list_transfers(T, account_id=alice.id, created_gte=start + day)
    assert alices.data == [made[2], made[4]]
    pending = await ledger.list_transfers(T, status="pending", created_gte=start, limit=100)
    assert pending.data == made[1::2]
    assert (await ledger.list_transfers(T, created_gte=ledger.clock() + 1)).data == []

    with pytest.raises(InvalidRequest, match="created_gte"):
        await ledger.list_transfers(T, created_lt=start)
    with pytest.raises(InvalidRequest, match="366 days"):
        await ledger.list_transfers(T, created_gte=start - 400 * day)
    with pytest.raises(InvalidCursor):
        await ledger.list_transfers(T, created_gte=start, cursor="1999-01-01/")
    assert await ledger.invariants() == []


async def test_two_phase_post_partial_void_and_expiry(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice", no_overdraft=True)
    shop = await ledger.account("shop")
    await ledger.create_transfer(T, ledger.draft(cash, alice, 1000), idempotency_key="fund")

    hold, _ = await ledger.create_transfer(
        T, ledger.draft(alice, shop, 700, pending=True), idempotency_key="hold"
    )
    assert hold.status is TransferStatus.PENDING
    balance = await ledger.get_balance(T, alice.id)
    assert (balance.posted, balance.pending, balance.available) == (1000, 300, 300)
    with pytest.raises(InsufficientFunds):  # the reservation counts against the limit
        await ledger.create_transfer(T, ledger.draft(alice, shop, 301), idempotency_key="x")

    with pytest.raises(PostExceedsPending):
        await ledger.post_transfer(T, hold.id, amount=701)
    posted = await ledger.post_transfer(T, hold.id, amount=400)  # the other 300 is released
    assert (posted.status, posted.posted_amount) == (TransferStatus.POSTED, 400)
    balance = await ledger.get_balance(T, alice.id)
    assert (balance.posted, balance.available, balance.debits_pending) == (600, 600, 0)
    with pytest.raises(TransferNotPending):
        await ledger.post_transfer(T, hold.id)
    with pytest.raises(TransferNotPending):
        await ledger.void_transfer(T, hold.id)

    second, _ = await ledger.create_transfer(
        T, ledger.draft(alice, shop, 100, pending=True), idempotency_key="hold2"
    )
    voided = await ledger.void_transfer(T, second.id)
    assert (voided.status, voided.posted_amount) == (TransferStatus.VOIDED, 0)
    assert (await ledger.get_balance(T, alice.id)).available == 600

    timed, _ = await ledger.create_transfer(
        T, ledger.draft(alice, shop, 50, pending=True, timeout_s=60), idempotency_key="hold3"
    )
    assert await ledger.expire_pending(T) == 0
    ledger.clock.advance(61)
    with pytest.raises(TransferExpired):
        await ledger.post_transfer(T, timed.id)
    assert await ledger.expire_pending(T) == 1
    assert (await ledger.get_transfer(T, timed.id)).status is TransferStatus.VOIDED
    assert await ledger.expire_pending(T) == 0
    entries = await ledger.list_entries(T, alice.id, limit=100)
    assert [e.kind for e in entries.data] == [
        "posted", "pending", "post", "pending", "void", "pending", "expire",
    ]  # fmt: skip
    assert await ledger.invariants() == []


async def test_reversal_happens_once(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice", no_overdraft=True)
    paid, _ = await ledger.create_transfer(T, ledger.draft(cash, alice, 500), idempotency_key="p")
    pending, _ = await ledger.create_transfer(
        T, ledger.draft(cash, alice, 5, pending=True), idempotency_key="q"
    )
    with pytest.raises(TransferNotPosted):
        await ledger.reverse_transfer(T, pending.id, idempotency_key="r0")

    reversal, replayed = await ledger.reverse_transfer(T, paid.id, idempotency_key="r1")
    assert not replayed
    assert (reversal.reverses, reversal.amount) == (paid.id, 500)
    assert (reversal.debit_account_id, reversal.credit_account_id) == (alice.id, cash.id)
    assert (await ledger.get_transfer(T, paid.id)).reversed_by == reversal.id
    assert (await ledger.reverse_transfer(T, paid.id, idempotency_key="r1")) == (reversal, True)
    with pytest.raises(AlreadyReversed):
        await ledger.reverse_transfer(T, paid.id, idempotency_key="r2")
    with pytest.raises(IdempotencyKeyReused):  # the same key reversing another transfer
        await ledger.reverse_transfer(T, pending.id, idempotency_key="r1")
    assert (await ledger.get_balance(T, alice.id)).posted == 0
    assert await ledger.invariants() == []


async def test_batch_is_all_or_nothing_and_names_the_failing_item(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice", no_overdraft=True)
    bob = await ledger.account("bob")
    good = [ledger.draft(cash, alice, 100), ledger.draft(alice, bob, 60)]
    bad = [*good, ledger.draft(alice, bob, 41)]  # alice would hold 100 - 60 - 41 < 0

    with pytest.raises(InsufficientFunds) as failed:
        await ledger.create_batch(T, bad, idempotency_key="b1")
    assert failed.value.index == 2
    assert failed.value.extensions == {"index": 2}
    assert (await ledger.list_transfers(T)).data == []  # nothing was written
    assert (await ledger.get_balance(T, alice.id)).posted == 0

    created, replayed = await ledger.create_batch(T, good, idempotency_key="b2")
    assert not replayed
    assert [t.amount for t in created] == [100, 60]
    assert len({t.batch_id for t in created}) == 1
    assert (await ledger.create_batch(T, good, idempotency_key="b2")) == (created, True)
    with pytest.raises(IdempotencyKeyReused):
        await ledger.create_batch(T, good[:1], idempotency_key="b2")
    assert (await ledger.get_balance(T, alice.id)).posted == 40

    with pytest.raises(InvalidRequest):
        await ledger.create_batch(T, [], idempotency_key="b0")
    limit = ledger.facade.store.max_transaction_items
    too_many = [ledger.draft(cash, bob, 1) for _ in range(limit // 3 + 1)]
    with pytest.raises(BatchTooLarge) as large:
        await ledger.create_batch(T, too_many, idempotency_key="b3")
    assert str(limit) in large.value.detail
    assert await ledger.invariants() == []


async def test_stale_version_changes_nothing_and_closed_accounts_refuse_transfers(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice")
    updated = await ledger.update_account_metadata(
        T, alice.id, {"tier": "gold"}, expected_version=1
    )
    assert (updated.version, updated.metadata) == (2, {"tier": "gold"})
    with pytest.raises(PreconditionFailed):
        await ledger.update_account_metadata(T, alice.id, {"tier": "x"}, expected_version=1)
    with pytest.raises(PreconditionFailed):
        await ledger.close_account(T, alice.id, expected_version=1)
    assert await ledger.get_account(T, alice.id) == updated  # nothing changed

    hold, _ = await ledger.create_transfer(
        T, ledger.draft(cash, alice, 10, pending=True), idempotency_key="h"
    )
    await ledger.create_transfer(T, ledger.draft(cash, alice, 5), idempotency_key="t")
    assert (await ledger.get_account(T, alice.id)).version == 2  # transfers leave the ETag be
    closed = await ledger.close_account(T, alice.id, expected_version=2)
    assert (closed.status, closed.version) == (AccountStatus.CLOSED, 3)
    with pytest.raises(AccountClosed):
        await ledger.create_transfer(T, ledger.draft(cash, alice, 5), idempotency_key="t2")
    assert (await ledger.void_transfer(T, hold.id)).status is TransferStatus.VOIDED
    assert await ledger.invariants() == []


async def test_a_tenant_never_reaches_another_tenants_objects(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice")
    paid, _ = await ledger.create_transfer(T, ledger.draft(cash, alice, 5), idempotency_key="k")
    hold, _ = await ledger.create_transfer(
        T, ledger.draft(cash, alice, 5, pending=True), idempotency_key="h"
    )
    other = "globex"
    for call in (
        ledger.get_account(other, alice.id),
        ledger.get_balance(other, alice.id),
        ledger.list_entries(other, alice.id),
        ledger.get_transfer(other, paid.id),
        ledger.post_transfer(other, hold.id),
        ledger.void_transfer(other, hold.id),
        ledger.reverse_transfer(other, paid.id, idempotency_key="r"),
        ledger.list_transfers(other, account_id=alice.id),
        ledger.create_transfer(other, ledger.draft(cash, alice, 1), idempotency_key="k"),
        ledger.update_account_metadata(other, alice.id, {}, expected_version=1),
    ):
        with pytest.raises(NotFound):
            await call
    assert (await ledger.list_accounts(other)).data == []
    assert (await ledger.list_transfers(other)).data == []
    assert (await ledger.get_transfer(T, hold.id)).status is TransferStatus.PENDING
    assert await ledger.invariants() == []
    assert await ledger.invariants(other) == []


async def test_unstorable_input_is_a_client_error_and_writes_nothing(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice")
    lone = "\ud800"  # valid in a Python str (and in JSON escapes), not in UTF-8
    for metadata in ({"note": lone}, {"k" * 41: "v"}, {str(i): "v" for i in range(51)}):
        with pytest.raises(InvalidRequest):
            await ledger.update_account_metadata(T, alice.id, metadata, expected_version=1)
    for key in ("", "k" * 256, lone):
        with pytest.raises(InvalidRequest):
            await ledger.create_transfer(T, ledger.draft(cash, alice, 1), idempotency_key=key)
    for strange in (lone, "a/b", "x" * 65, "\x00"):
        with pytest.raises(NotFound):
            await ledger.get_transfer(T, strange)
        with pytest.raises(NotFound):
            await ledger.get_balance(T, strange)
    assert (await ledger.list_transfers(T)).data == []
    assert (await ledger.get_account(T, alice.id)).version == 1
    assert await ledger.invariants() == []
