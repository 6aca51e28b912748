"""When every attempt loses the optimistic-lock race, the caller gets ``Contention`` (409)
after a bounded number of attempts, and nothing of its transfer is written."""

from __future__ import annotations

import pytest
from ledger.domain.errors import Contention
from ledger.domain.models import NewAccount, NewTransfer, NormalBalance
from ledger.invariants import check_invariants
from ledger.service import SyncLedger

from stalwart.resilience import retry
from stalwart.storage import open_store

T = "acme"


class RivalWritesFirst:
    """A real store on which a rival transfer commits (for real, on the same accounts) just
    before each of our transacts: each of our attempts then fails its balance condition."""

    def __init__(self, store, rival) -> None:
        self._store = store
        self._rival = rival
        self.attempts = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    def transact(self, operations):
        self.attempts += 1
        self._rival(self.attempts)
        return self._store.transact(operations)


def _draft(debit, credit, amount):
    return NewTransfer(
        debit_account_id=debit.id, credit_account_id=credit.id, amount=amount, currency="USD"
    )


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
def test_contention_is_retried_then_reported(engine, store_url_factory):
    store = open_store(store_url_factory(engine)())
    plain = SyncLedger(store)
    cash = plain.create_account(
        T, NewAccount(currency="USD", name="cash", normal_balance=NormalBalance.DEBIT)
    )
    alice = plain.create_account(T, NewAccount(currency="USD", name="alice"))

    def rival(attempt: int) -> None:
        plain.create_transfer(T, _draft(cash, alice, 1), idempotency_key=f"rival-{attempt}")

    contended = RivalWritesFirst(store, rival)
    policy = retry(on=Contention, attempts=3, base_s=0.0)
    ledger = SyncLedger(contended, retry_policy=policy)
    with pytest.raises(Contention) as raised:
        ledger.create_transfer(T, _draft(cash, alice, 500), idempotency_key="mine")
    assert raised.value.status == 409
    assert contended.attempts == 3  # bounded: exactly the policy's attempts
    assert plain.get_balance(T, alice.id).posted == 3  # the rivals' transfers only
    assert len(plain.list_transfers(T).data) == 3
    # The same key later, without rivals, creates the transfer (nothing was half written).
    created, replayed = plain.create_transfer(T, _draft(cash, alice, 500), idempotency_key="mine")
    assert (created.amount, replayed) == (500, False)
    assert check_invariants(store, T) == []
    store.close()
