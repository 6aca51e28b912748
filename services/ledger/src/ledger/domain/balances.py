"""An account's running totals and the balances derived from them (pure).

Every change is a :class:`Movement` on one side of one account: a change of that side's
pending total and of its posted total. A transfer moves the same amounts on the debit side of
one account and the credit side of another, so per currency the debits and credits of all
accounts stay equal (posted and pending separately).

>>> state = BalanceState("a1", "USD", NormalBalance.CREDIT)
>>> state = apply(state, Movement(Side.CREDIT, pending_delta=0, posted_delta=1000))
>>> state = apply(state, Movement(Side.DEBIT, pending_delta=300, posted_delta=0))
>>> posted(state), pending(state), available(state)
(1000, 700, 700)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ledger.domain.errors import BalanceOverflow, InsufficientFunds
from ledger.domain.models import NormalBalance, Side, Totals
from ledger.domain.money import MAX_BALANCE


@dataclass(frozen=True, slots=True)
class Movement:
    """A change of one side of one account."""

    side: Side
    pending_delta: int
    posted_delta: int


@dataclass(frozen=True, slots=True)
class BalanceState:
    """What a transfer needs to know about an account: its immutable rules (currency, normal
    side, constraint flags), whether it is closed, and its four totals."""

    account_id: str
    currency: str
    normal_balance: NormalBalance
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    closed: bool = False
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    entry_count: int = 0

    def totals(self) -> Totals:
        """The four totals as the API shows them."""
        return Totals(
            debits_pending=self.debits_pending,
            debits_posted=self.debits_posted,
            credits_pending=self.credits_pending,
            credits_posted=self.credits_posted,
        )


def apply(state: BalanceState, movement: Movement) -> BalanceState:
    """``state`` after ``movement`` (one more journal entry); ``BalanceOverflow`` if a total
    would leave the store's signed 64-bit integers."""
    if movement.side is Side.DEBIT:
        changed = replace(
            state,
            debits_pending=state.debits_pending + movement.pending_delta,
            debits_posted=state.debits_posted + movement.posted_delta,
            entry_count=state.entry_count + 1,
        )
    else:
        changed = replace(
            state,
            credits_pending=state.credits_pending + movement.pending_delta,
            credits_posted=state.credits_posted + movement.posted_delta,
            entry_count=state.entry_count + 1,
        )
    totals = (
        changed.debits_pending,
        changed.debits_posted,
        changed.credits_pending,
        changed.credits_posted,
    )
    if any(total > MAX_BALANCE for total in totals):
        raise BalanceOverflow(
            f"account {state.account_id}'s totals would exceed {MAX_BALANCE} minor units"
        )
    return changed


def check_constraints(state: BalanceState) -> None:
    """Raise ``InsufficientFunds`` if ``state`` breaks one of its account's flags.

    A transfer is checked after it is applied, so a constrained account can never get there:
    its debits (pending and posted) never exceed its posted credits, or the reverse.
    """
    if state.debits_must_not_exceed_credits and (
        state.debits_pending + state.debits_posted > state.credits_posted
    ):
        raise InsufficientFunds(
            f"account {state.account_id} has {available(state)} available after this transfer; "
            "its debits must not exceed its credits"
        )
    if state.credits_must_not_exceed_debits and (
        state.credits_pending + state.credits_posted > state.debits_posted
    ):
        raise InsufficientFunds(
            f"account {state.account_id} has {available(state)} available after this transfer; "
            "its credits must not exceed its debits"
        )


def _signed(state: BalanceState, debit_total: int, credit_total: int) -> int:
    if state.normal_balance is NormalBalance.CREDIT:
        return credit_total - debit_total
    return debit_total - credit_total


def posted(state: BalanceState) -> int:
    """Posted credits minus posted debits (the reverse for a debit-normal account)."""
    return _signed(state, state.debits_posted, state.credits_posted)


def pending(state: BalanceState) -> int:
    """Like :func:`posted`, counting pending transfers on both sides too."""
    return _signed(
        state,
        state.debits_posted + state.debits_pending,
        state.credits_posted + state.credits_pending,
    )


def available(state: BalanceState) -> int:
    """Posted, minus the pending transfers that will decrease it (Modern Treasury)."""
    if state.normal_balance is NormalBalance.CREDIT:
        return state.credits_posted - state.debits_posted - state.debits_pending
    return state.debits_posted - state.credits_posted - state.credits_pending
