"""Helpers for the back-office tests: operators, a seeded tenant, forms with their CSRF token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ledger.backoffice.operators import Role, create_operator
from ledger.domain.models import Account, NewAccount, NewTransfer, Transfer
from ledger.service import SyncLedger

from stalwart.storage import Store

CHROMIUM_INSTALL_HINT: Final = (
    "the back-office browser tests need Debian's chromium: sudo apt-get install chromium"
)
BROWSER_SKIP_REASON: Final = f"NOT RUN: {CHROMIUM_INSTALL_HINT}"
PASSWORD = "correct horse battery"
TENANT = "acme"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
KEY_FIELD = re.compile(r'name="key" value="([0-9a-f]{32})"')


def csrf_token(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)


def make_operators(store: Store, tenant: str = TENANT) -> None:
    """``olivia`` (operator) and ``victor`` (viewer) of ``tenant``; ``gina`` of globex."""
    create_operator(store, "olivia", PASSWORD, tenant=tenant, role=Role.OPERATOR)
    create_operator(store, "victor", PASSWORD, tenant=tenant, role=Role.VIEWER)
    create_operator(store, "gina", PASSWORD, tenant="globex", role=Role.OPERATOR)


@dataclass(frozen=True)
class Seeded:
    cash: Account
    alice: Account
    bob: Account
    deposits: list[Transfer]
    pending: Transfer


def seed(ledger: SyncLedger, tenant: str = TENANT) -> Seeded:
    """Three USD accounts, a few posted deposits to Alice and one pending transfer to Bob."""
    cash = ledger.create_account(
        tenant,
        NewAccount(currency="USD", name="Cash at bank", normal_balance="debit", external_id="cash"),
    )
    alice = ledger.create_account(
        tenant, NewAccount(currency="USD", name="Alice wallet", external_id="wallet-alice")
    )
    bob = ledger.create_account(
        tenant, NewAccount(currency="USD", name="Bob wallet", external_id="wallet-bob")
    )
    deposits = [
        ledger.create_transfer(
            tenant,
            NewTransfer(
                debit_account_id=cash.id,
                credit_account_id=alice.id,
                amount=amount,
                currency="USD",
                external_id=f"deposit-{n}",
            ),
            idempotency_key=f"deposit-{n}",
        )[0]
        for n, amount in enumerate((10_000, 2_550, 7_025), start=1)
    ]
    pending, _ = ledger.create_transfer(
        tenant,
        NewTransfer(
            debit_account_id=cash.id,
            credit_account_id=bob.id,
            amount=5_000,
            currency="USD",
            pending=True,
            external_id="hold-1",
        ),
        idempotency_key="hold-1",
    )
    return Seeded(cash, alice, bob, deposits, pending)


IMPORT_CSV = """external_id,debit_account,credit_account,amount,currency
imp-1,cash,wallet-alice,10.00,USD
imp-2,cash,wallet-bob,12.345,USD
imp-3,cash,nobody,1.00,USD
imp-4,wallet-alice,wallet-bob,2.50,USD
imp-5,cash,wallet-bob,0.75,USD
"""
"""Five transfers between the seeded accounts: rows 2 (three decimals in USD) and 3 (an
unknown account) are rejected, the other three posted."""
