"""``create_transfers``, the facade's bulk write for imports, on every engine, sync and async:
many independent transfers per transact, each exactly once per idempotency key, a refused one
rejected alone, balances computed cumulatively. Each test ends on a consistent ledger."""

from __future__ import annotations

import asyncio
import time

import pytest
from ledger.domain.models import Account, NewAccount, NewTransfer, NormalBalance
from ledger.invariants import check_invariants
from ledger.service import SyncLedger

from stalwart.storage import open_store

T = "acme"

# Each engine once, the two facades alternating (the full engine x mode matrix doubles the
# time on the emulators for no more coverage: both facades run the same plans).
ONE_MODE_PER_ENGINE = pytest.mark.parametrize(
    "engine_mode",
    [("sqlite", "sync"), ("redis", "async"), ("dynamodb", "sync"), ("mongodb", "async")],
    ids=["sqlite-sync", "redis-async", "dynamodb-sync", "mongodb-async"],
)


@pytest.mark.slow
@ONE_MODE_PER_ENGINE
async def test_create_transfers_chunks_rejects_alone_and_reruns_as_duplicates(ledger):
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    alice = await ledger.account("alice", no_overdraft=True)
    bob = await ledger.account("bob")
    euro = await ledger.account("euro", currency="EUR")
    requests = [(ledger.draft(cash, alice, 100), f"import:fund-{i}") for i in range(30)]
    # Alice holds 3000 after the funding: 20 x 120 fit, the 26th on would overdraw her.
    requests += [(ledger.draft(alice, bob, 120), f"import:pay-{i}") for i in range(30)]
    requests.append((ledger.draft(cash, euro, 5), "import:wrong-currency"))
    requests.append((ledger.draft(cash, alice, 100), "import:fund-0"))  # the same request again
    requests.append((ledger.draft(cash, alice, 999), "import:fund-1"))  # its key, another body

    outcomes = await ledger.create_transfers(T, requests)

    assert len(outcomes) == len(requests)
    statuses = [outcome.status for outcome in outcomes]
    assert statuses[:55] == ["created"] * 55  # 30 fundings, then 25 payments (25 x 120 = 3000)
    assert statuses[55:60] == ["rejected"] * 5
    assert {outcomes[i].error.code for i in range(55, 60)} == {"insufficient_funds"}
    assert outcomes[60].error.code == "currency_mismatch"
    assert statuses[61:] == ["duplicate", "rejected"]
    assert outcomes[62].error.code == "idempotency_key_reused"
    # The same ids create_transfer derives: the API sees the imported transfers as its own.
    replayed, was_replayed = await ledger.create_transfer(
        T, requests[0][0], idempotency_key=requests[0][1]
    )
    assert was_replayed
    assert replayed.id == outcomes[0].transfer_id
    assert (await ledger.get_balance(T, alice.id)).available == 0
    assert (await ledger.get_balance(T, bob.id)).available == 25 * 120

    again = await ledger.create_transfers(T, requests[:60])  # a re-run writes nothing
    assert [o.status for o in again] == ["duplicate"] * 55 + ["rejected"] * 5
    assert [o.transfer_id for o in again[:55]] == [o.transfer_id for o in outcomes[:55]]
    assert (await ledger.get_balance(T, bob.id)).available == 25 * 120
    entries = await ledger.list_entries(T, bob.id, limit=100)
    assert len(entries.data) == 25  # one journal entry per payment, numbered without gaps
    assert [entry.seq for entry in entries.data] == list(range(1, 26))
    assert await ledger.invariants() == []


@pytest.mark.parametrize(
    # On the emulators every chunk of every writer collides on the same four balances: seconds
    # of retries that prove nothing the two real servers do not.
    "engine_mode",
    [("sqlite", "sync"), ("redis", "async")],
    ids=["sqlite-sync", "redis-async"],
)
async def test_concurrent_create_transfers_on_shared_balances_post_each_once(ledger):
    # Each call remembers the balances its last transact wrote; the others' writes make those
    # stale, so transacts fail and the chunks are redone from fresh reads.
    cash = await ledger.account("cash", normal=NormalBalance.DEBIT)
    wallets = [await ledger.account(f"w{i}") for i in range(3)]

    def requests(writer: int) -> list:
        return [
            (ledger.draft(cash, wallets[i % 3], 1 + writer), f"import:{writer}-{i}")
            for i in range(45)  # two chunks each
        ]

    runs = await asyncio.gather(*(ledger.create_transfers(T, requests(w)) for w in range(3)))

    for outcomes in runs:
        assert [o.status for o in outcomes] == ["created"] * 45
    total = sum([(await ledger.get_balance(T, w.id)).posted for w in wallets])
    assert total == 45 * (1 + 2 + 3)
    assert await ledger.invariants() == []


def test_a_refusal_on_a_remembered_balance_is_decided_again_on_fresh_reads(tmp_path):
    # The second chunk starts from the balance its first transact wrote (16); another writer
    # credits 50 meanwhile, so the 30 the second chunk debits fits the real balance (66).
    store = open_store(f"sqlite:///{tmp_path / 'ledger.db'}?table=ledger")
    other = SyncLedger(store)
    cash = other.create_account(T, NewAccount(currency="USD", name="cash", normal_balance="debit"))
    alice = other.create_account(
        T,
        NewAccount(currency="USD", name="alice", flags={"debits_must_not_exceed_credits": True}),
    )
    bob = other.create_account(T, NewAccount(currency="USD", name="bob"))
    plans_started = 0

    def clock() -> float:  # read as each chunk's plan starts
        nonlocal plans_started
        plans_started += 1
        if plans_started == 2:
            deposit = NewTransfer(
                debit_account_id=cash.id, credit_account_id=alice.id, amount=50, currency="USD"
            )
            other.create_transfer(T, deposit, idempotency_key="meanwhile")
        return time.time()

    def draft(debit: Account, credit: Account, amount: int) -> NewTransfer:
        return NewTransfer(
            debit_account_id=debit.id, credit_account_id=credit.id, amount=amount, currency="USD"
        )

    # 16 transfers of 6 operations (with their outbox events) and 2 balances fill one transact.
    requests = [(draft(cash, alice, 1), f"fund-{i}") for i in range(16)]
    requests.append((draft(alice, bob, 30), "pay"))

    outcomes = SyncLedger(store, clock=clock).create_transfers(T, requests)

    assert [o.status for o in outcomes] == ["created"] * 17
    assert other.get_balance(T, alice.id).available == 16 + 50 - 30
    assert check_invariants(store, T) == []
    store.close()
