"""check_invariants finds what it claims to find: each corruption of a consistent ledger is
reported (so the other tests' ``invariants() == []`` cannot pass vacuously)."""

from __future__ import annotations

import pytest
from ledger.domain.models import NewAccount, NewTransfer, NormalBalance
from ledger.invariants import check_invariants
from ledger.service import SyncLedger
from ledger.store import balance_key, batch_key, entry_key, transfer_key

from stalwart.storage import Delete, Replace, open_store

T = "acme"


@pytest.fixture
def book(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'ledger.db'}?table=ledger")
    ledger = SyncLedger(store)
    cash = ledger.create_account(
        T, NewAccount(currency="USD", name="cash", normal_balance=NormalBalance.DEBIT)
    )
    wallet = ledger.create_account(
        T, NewAccount(currency="USD", name="w", flags={"debits_must_not_exceed_credits": True})
    )

    def draft(debit, credit, amount, **fields):
        return NewTransfer(
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=amount,
            currency="USD",
            **fields,
        )

    paid, _ = ledger.create_transfer(T, draft(cash, wallet, 100), idempotency_key="p")
    ledger.reverse_transfer(T, paid.id, idempotency_key="r")
    ledger.create_transfer(T, draft(cash, wallet, 100), idempotency_key="p2")
    ledger.create_transfer(T, draft(wallet, cash, 10, pending=True), idempotency_key="h")
    batch, _ = ledger.create_batch(
        T, [draft(cash, wallet, 1), draft(wallet, cash, 1)], idempotency_key="b"
    )
    assert check_invariants(store, T) == []
    yield store, wallet.id, paid.id, batch
    store.close()


def _edit(store, key, **changes):
    record = store.get(key)
    store.transact([Replace(key, {**record.data, **changes}, expected_version=record.version)])


def test_a_cached_balance_that_disagrees_with_the_journal(book):
    store, wallet, _, _ = book
    _edit(store, balance_key(T, wallet), credits_posted=10**6)
    found = "\n".join(check_invariants(store, T))
    assert "posted debits minus credits" in found
    assert "journal replay" in found


def test_a_constrained_account_below_zero(book):
    store, wallet, _, _ = book
    _edit(store, balance_key(T, wallet), debits_posted=10**6)
    assert any("exceed posted credits" in v for v in check_invariants(store, T))


def test_a_gap_in_the_journal(book):
    store, wallet, _, _ = book
    store.transact([Delete(entry_key(T, wallet, 2))])
    found = "\n".join(check_invariants(store, T))
    assert "are not 1.." in found


def test_a_transfer_whose_entries_do_not_match_its_state(book):
    store, _, paid, _ = book
    _edit(store, transfer_key(T, paid), posted_amount=150)
    found = "\n".join(check_invariants(store, T))
    assert f"transfer {paid}: posted 150 of 100" in found
    assert "entries moved" in found


def test_a_broken_reversal_link_and_a_partial_batch(book):
    store, _, paid, batch = book
    _edit(store, transfer_key(T, paid), reversed_by=None)
    store.transact([Delete(batch_key(T, batch[0].batch_id))])
    found = "\n".join(check_invariants(store, T))
    assert "does not point back" in found
    assert "does not list it" in found
