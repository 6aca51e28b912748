"""Account rules (pure): ids, the initial ledger state, metadata changes and closing."""

from __future__ import annotations

import os
import time

from ledger.domain.balances import BalanceState
from ledger.domain.errors import AccountClosed
from ledger.domain.models import NewAccount


def new_account_id(now: float | None = None) -> str:
    """A UUIDv7 (time-ordered, RFC 9562): accounts list in creation order.

    >>> a, b = new_account_id(1.0), new_account_id(2.0)
    >>> a < b and len(a) == 36 and a[14] == "7"
    True
    """
    millis = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10)) & (2**80 - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def initial_state(account_id: str, new: NewAccount) -> BalanceState:
    """The ledger state of a new account: its rules copied, every total at zero."""
    return BalanceState(
        account_id=account_id,
        currency=new.currency,
        normal_balance=new.normal_balance,
        debits_must_not_exceed_credits=new.flags.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=new.flags.credits_must_not_exceed_debits,
    )


def check_open(state: BalanceState) -> None:
    """Raise ``AccountClosed`` for a closed account (no new transfers touch it)."""
    if state.closed:
        raise AccountClosed(f"account {state.account_id} is closed")
