"""The pure rules (no store): money, balances, the two-phase state machine, ids, errors.
Property-based where it helps: any sequence of transfers keeps debits equal to credits and a
constrained account within its limit."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger.domain import errors
from ledger.domain.accounts import new_account_id
from ledger.domain.balances import BalanceState, apply, available, check_constraints
from ledger.domain.models import NewTransfer, NormalBalance
from ledger.domain.money import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT,
    check_amount,
    format_amount,
    parse_amount,
)
from ledger.domain.transfers import (
    create_movements,
    post_movements,
    resolve_post_amount,
    transfer_id,
    void_movements,
)
from pydantic import ValidationError


@given(st.integers(min_value=1, max_value=MAX_AMOUNT), st.sampled_from(sorted(CURRENCY_EXPONENTS)))
def test_amounts_round_trip_through_decimal_text(minor, currency):
    assert parse_amount(format_amount(minor, currency), currency) == minor


def test_amount_text_is_checked():
    assert parse_amount("12.3", "USD") == 1230
    assert parse_amount("0.001", "KWD") == 1
    for text, currency in (("1.001", "USD"), ("1.5", "JPY"), ("1e3", "USD"), ("0", "USD")):
        with pytest.raises(errors.InvalidAmount):
            parse_amount(text, currency)
    with pytest.raises(errors.InvalidRequest):
        parse_amount("1", "XXX")
    for bad in (0, -1, MAX_AMOUNT + 1, True, 1.5):
        with pytest.raises(errors.InvalidAmount):
            check_amount(bad)


def test_new_transfer_validation():
    base = {"debit_account_id": "a", "credit_account_id": "b", "currency": "USD"}
    for bad in ({"amount": 0}, {"amount": 1.5}, {"amount": 1, "currency": "usd"},
                {"amount": 1, "timeout_s": 5}, {"amount": 1, "surprise": True}):  # fmt: skip
        with pytest.raises(ValidationError):
            NewTransfer.model_validate({**base, **bad})


@dataclass
class _Book:
    """Accounts as the domain rules see them, and the reservations still open."""

    states: list[BalanceState]
    open_holds: dict[int, tuple[int, int, int]]  # hold id -> (debit, credit, amount)


def _transfer(book: _Book, debit: int, credit: int, movements) -> bool:
    new_debit = apply(book.states[debit], movements[0])
    new_credit = apply(book.states[credit], movements[1])
    try:
        check_constraints(new_debit)
        check_constraints(new_credit)
    except errors.InsufficientFunds:
        return False
    book.states[debit], book.states[credit] = new_debit, new_credit
    return True


operation = st.tuples(
    st.sampled_from(["posted", "pending", "post", "void"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(1, 500),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=60))
def test_any_sequence_keeps_debits_equal_credits_and_limits(operations):
    book = _Book(
        [
            BalanceState("cash", "USD", NormalBalance.DEBIT),
            BalanceState("w1", "USD", NormalBalance.CREDIT, debits_must_not_exceed_credits=True),
            BalanceState("w2", "USD", NormalBalance.CREDIT, debits_must_not_exceed_credits=True),
            BalanceState("bank", "USD", NormalBalance.DEBIT, credits_must_not_exceed_debits=True),
        ],
        {},
    )
    for number, (kind, debit, credit, amount) in enumerate(operations):
        if kind in {"posted", "pending"} and debit != credit:
            movements = create_movements(amount, pending=kind == "pending")
            if _transfer(book, debit, credit, movements) and kind == "pending":
                book.open_holds[number] = (debit, credit, amount)
        elif book.open_holds:
            hold = sorted(book.open_holds)[amount % len(book.open_holds)]
            held_debit, held_credit, reserved = book.open_holds.pop(hold)
            if kind == "post":
                part = resolve_post_amount(reserved, amount % reserved + 1, expires_at=None, now=0)
                movements = post_movements(reserved, part)
            else:
                movements = void_movements(reserved)
            assert _transfer(book, held_debit, held_credit, movements)  # resolving never fails
    states = book.states
    assert sum(s.debits_posted for s in states) == sum(s.credits_posted for s in states)
    assert sum(s.debits_pending for s in states) == sum(s.credits_pending for s in states)
    assert sum(s.debits_pending for s in states) == sum(a for _, _, a in book.open_holds.values())
    for state in states[1:3]:
        assert available(state) >= 0
    assert states[3].credits_pending + states[3].credits_posted <= states[3].debits_posted


def test_posting_is_bounded_by_the_reservation_and_the_timeout():
    assert resolve_post_amount(100, None, expires_at=None, now=0) == 100
    assert resolve_post_amount(100, 40, expires_at=10.0, now=9.9) == 40
    with pytest.raises(errors.PostExceedsPending):
        resolve_post_amount(100, 101, expires_at=None, now=0)
    with pytest.raises(errors.InvalidAmount):
        resolve_post_amount(100, 0, expires_at=None, now=0)
    with pytest.raises(errors.TransferExpired):
        resolve_post_amount(100, None, expires_at=10.0, now=10.0)


def test_ids():
    assert transfer_id("t", "k") == transfer_id("t", "k")
    scopes = [("t", "k"), ("u", "k"), ("t", "k", "reversal"), ("t", "k", "batch", "0")]
    assert len({transfer_id(*scope) for scope in scopes}) == len(scopes)
    ids = [new_account_id(5.0) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    assert new_account_id(6.0) > ids[-1]


def test_every_error_has_a_stable_code_and_status():
    types = errors.error_types()
    assert len(types) == len({cls.code for cls in types}) == 21
    assert {cls.status for cls in types} <= {400, 404, 409, 412, 422}
    failed = errors.InsufficientFunds("short", index=1)
    assert failed.at(4).index == 4
    assert type(failed.at(4)) is errors.InsufficientFunds
