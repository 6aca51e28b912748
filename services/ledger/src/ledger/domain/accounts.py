"""Account rules (pure): ids, the initial ledger state, metadata changes and closing."""

from __future__ import annotations

import os
import threading
import time

from ledger.domain.balances import BalanceState
from ledger.domain.errors import AccountClosed
from ledger.domain.models import NewAccount

_last_id = 0
_last_id_lock = threading.Lock()


def new_account_id(now: float | None = None) -> str:
    """A UUIDv7 (time-ordered, RFC 9562): accounts list in creation order. Within one process
    ids are strictly increasing even inside one millisecond (RFC 9562's "monotonic random").

    >>> a, b = new_account_id(1.0), new_account_id(1.0)
    >>> a < b and len(a) == 36 and a[14] == "7"
    True
    """
    global _last_id  # noqa: PLW0603 - the process-wide monotonic counter is the point
    millis = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10)) & (2**80 - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    with _last_id_lock:
        if value <= _last_id:  # same millisecond (or a clock step back): count on
            value = _increment(_last_id)
        _last_id = value
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _increment(value: int) -> int:
    """The next id after ``value``, counting in the random bits (skipping version/variant)."""
    random_b = (value & (2**62 - 1)) + 1
    if random_b < 2**62:
        return (value & ~(2**62 - 1)) | random_b
    random_a = ((value >> 64) & 0xFFF) + 1  # carry into rand_a (then the timestamp)
    head = (value >> 76 << 76) + ((random_a >> 12) << 80)
    return head | (0x7 << 76) | ((random_a & 0xFFF) << 64) | (0x2 << 62)


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
