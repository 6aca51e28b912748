"""The issue's invariants under real concurrency, on every engine: threads (sync facade) or
tasks (async facade) against one store. Each worker makes a fixed number of calls, outcomes
are counted, and the ledger is audited (``check_invariants``) at the end."""

from __future__ import annotations

import asyncio
from collections import Counter

from ledger.domain.errors import (
    AlreadyReversed,
    IdempotencyKeyReused,
    InsufficientFunds,
    LedgerError,
    PreconditionFailed,
    TransferNotPending,
)
from ledger.domain.models import NormalBalance, TransferStatus

T = "acme"


async def _outcome(call) -> str:
    try:
        await call
    except LedgerError as exc:
        return exc.code
    return "ok"


async def test_hot_accounts_keep_sums_journal_and_constraint(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    wallet = await ledger.account("wallet", no_overdraft=True)
    shop = await ledger.account("shop")
    # 4 writers on 2 hot accounts; moto's and secantusdb's emulated transactions are slow, so
    # fewer rounds there (and less money, so the wallet's limit is still reached).
    fast = ledger.engine in {"sqlite", "redis"}
    rounds, fund = (10, 100) if fast else (5, 40)
    await ledger.create_transfer(T, ledger.draft(cash, wallet, fund), idempotency_key="fund")

    # Two facades, as two processes would be: inside one, transfers sharing an account wait
    # for each other; between the two, they collide in the store and are retried.
    facades = (ledger, ledger.twin())

    async def worker(n: int) -> list[str]:
        outcomes = []
        for i in range(rounds):
            new = ledger.draft(wallet, shop, 7) if i % 3 else ledger.draft(shop, wallet, 3)
            create = facades[n % 2].create_transfer(T, new, idempotency_key=f"{n}-{i}")
            outcomes.append(await _outcome(create))
        return outcomes

    results = Counter(
        o for outcomes in await asyncio.gather(*map(worker, range(4))) for o in outcomes
    )
    assert set(results) <= {"ok", "insufficient_funds"}, results  # no contention left over
    assert results["insufficient_funds"] > 0  # the limit was reached under concurrency
    assert ledger.retries > 0  # the writers really collided (and were retried)
    balance = await ledger.get_balance(T, wallet.id)
    assert balance.available >= 0
    assert balance.debits_posted <= balance.credits_posted
    assert await ledger.invariants() == []


async def test_one_process_queues_transfers_on_shared_accounts_instead_of_colliding(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    shop = await ledger.account("shop")

    async def worker(n: int) -> None:
        for i in range(3):
            draft = ledger.draft(cash, shop, 1)
            await ledger.create_transfer(T, draft, idempotency_key=f"{n}-{i}")

    await asyncio.gather(*map(worker, range(4)))
    assert ledger.retries == 0  # 12 concurrent transfers on 2 accounts, not one collision
    assert (await ledger.get_balance(T, shop.id)).posted == 12
    assert await ledger.invariants() == []


async def test_concurrent_identical_creates_make_one_transfer_and_identical_answers(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice")
    new = ledger.draft(cash, alice, 250)
    answers = await asyncio.gather(
        *(ledger.create_transfer(T, new, idempotency_key="same") for _ in range(8))
    )
    assert len({transfer.model_dump_json() for transfer, _ in answers}) == 1
    assert sorted(replayed for _, replayed in answers) == [False] + [True] * 7
    assert len((await ledger.list_transfers(T)).data) == 1
    assert (await ledger.get_balance(T, alice.id)).posted == 250
    assert await ledger.invariants() == []


async def test_the_same_key_with_another_body_changes_nothing(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice")
    bodies = [ledger.draft(cash, alice, 10), ledger.draft(cash, alice, 20)]
    outcomes = await asyncio.gather(
        *(ledger.create_transfer(T, bodies[i % 2], idempotency_key="k") for i in range(8)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, tuple)]
    losers = [o for o in outcomes if not isinstance(o, tuple)]
    assert len(winners) == 4
    assert all(isinstance(o, IdempotencyKeyReused) for o in losers), losers
    assert len({transfer.model_dump_json() for transfer, _ in winners}) == 1
    amount = winners[0][0].amount
    assert (await ledger.get_balance(T, alice.id)).posted == amount
    assert len((await ledger.list_transfers(T)).data) == 1
    assert await ledger.invariants() == []


async def test_a_pending_transfer_resolves_at_most_once(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice")
    hold, _ = await ledger.create_transfer(
        T, ledger.draft(cash, alice, 100, pending=True), idempotency_key="h"
    )
    calls = [
        ledger.post_transfer(T, hold.id, amount=30),
        ledger.post_transfer(T, hold.id, amount=60),
        ledger.post_transfer(T, hold.id),
        ledger.void_transfer(T, hold.id),
        ledger.post_transfer(T, hold.id, amount=90),
        ledger.void_transfer(T, hold.id),
    ]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    resolved = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(resolved) == 1, outcomes
    assert all(isinstance(o, TransferNotPending) for o in outcomes if isinstance(o, Exception))
    final = await ledger.get_transfer(T, hold.id)
    assert final == resolved[0]
    assert final.posted_amount <= final.amount
    balance = await ledger.get_balance(T, alice.id)
    assert (balance.credits_pending, balance.credits_posted) == (0, final.posted_amount)
    assert await ledger.invariants() == []


async def test_a_reversal_happens_at_most_once(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice")
    paid, _ = await ledger.create_transfer(T, ledger.draft(cash, alice, 80), idempotency_key="p")
    outcomes = await asyncio.gather(
        *(ledger.reverse_transfer(T, paid.id, idempotency_key=f"r{i}") for i in range(6)),
        return_exceptions=True,
    )
    reversals = [o for o in outcomes if isinstance(o, tuple)]
    assert len(reversals) == 1, outcomes
    assert all(isinstance(o, AlreadyReversed) for o in outcomes if not isinstance(o, tuple))
    assert (await ledger.get_transfer(T, paid.id)).reversed_by == reversals[0][0].id
    assert (await ledger.get_balance(T, alice.id)).posted == 0
    assert await ledger.invariants() == []


async def test_concurrent_linked_batches_are_all_or_nothing(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    wallet = await ledger.account("wallet", no_overdraft=True)
    shop = await ledger.account("shop")
    bob = await ledger.account("bob")
    await ledger.create_transfer(T, ledger.draft(cash, wallet, 100), idempotency_key="fund")
    batch = [ledger.draft(wallet, shop, 30), ledger.draft(shop, bob, 30, pending=True)]
    outcomes = await asyncio.gather(
        *(ledger.create_batch(T, batch, idempotency_key=f"b{i}") for i in range(6)),
        return_exceptions=True,
    )
    created = [o for o in outcomes if isinstance(o, tuple)]
    refused = [o for o in outcomes if not isinstance(o, tuple)]
    assert len(created) == 3  # 3 x 30 of the wallet's 100
    assert all(isinstance(o, InsufficientFunds) and o.index == 0 for o in refused), refused
    by_batch = Counter(t.batch_id for t in (await ledger.list_transfers(T, limit=100)).data)
    assert sorted(by_batch.values()) == [1, 2, 2, 2]  # the funding transfer and 3 whole batches
    assert (await ledger.get_balance(T, wallet.id)).available == 10
    assert await ledger.invariants() == []


async def test_pagination_under_concurrent_inserts_has_no_gaps_or_duplicates(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice")
    start = ledger.clock()
    before = []
    for key in "abcdef":
        before.append(
            (await ledger.create_transfer(T, ledger.draft(cash, alice, 1), idempotency_key=key))[0]
        )
        ledger.clock.advance(0.001)
    writing = True

    async def writer() -> None:
        i = 0
        while writing:
            await ledger.create_transfer(T, ledger.draft(cash, alice, 1), idempotency_key=f"w{i}")
            i += 1

    listings = {  # a page of each listing: (what identifies its items, the page)
        "entries": (
            lambda e: e.seq,
            lambda cursor: ledger.list_entries(T, alice.id, limit=2, cursor=cursor),
        ),
        "transfers": (
            lambda t: t.id,
            lambda cursor: ledger.list_transfers(T, account_id=alice.id, limit=2, cursor=cursor),
        ),
        "all": (lambda t: t.id, lambda cursor: ledger.list_transfers(T, limit=2, cursor=cursor)),
        "by time": (
            lambda t: t.id,
            lambda cursor: ledger.list_transfers(T, created_gte=start, limit=2, cursor=cursor),
        ),
    }
    task = asyncio.ensure_future(writer())
    try:
        for listing, (identify, fetch) in listings.items():
            seen, cursor = [], None
            while True:
                page = await fetch(cursor)
                seen += [identify(item) for item in page.data]
                cursor = page.next_cursor
                if not page.has_more or len(seen) >= 14:
                    break
            assert len(seen) == len(set(seen)), listing  # no duplicates
            if listing == "entries":
                assert seen == list(range(1, len(seen) + 1))  # no gaps
            elif listing in {"transfers", "by time"}:
                assert seen[:6] == [t.id for t in before]  # journal/time order, none skipped
            else:
                assert seen == sorted(seen)
    finally:
        writing = False
        await task
    assert await ledger.invariants() == []
    assert all(t.status is TransferStatus.POSTED for t in before)


async def test_concurrent_updates_of_one_version_let_exactly_one_through(ledger):
    alice = await ledger.account("alice")
    outcomes = await asyncio.gather(
        *(
            ledger.update_account_metadata(T, alice.id, {"n": str(i)}, expected_version=1)
            for i in range(6)
        ),
        ledger.close_account(T, alice.id, expected_version=1),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, PreconditionFailed) for o in outcomes if isinstance(o, Exception))
    assert await ledger.get_account(T, alice.id) == winners[0]
    assert winners[0].version == 2
