# Copyright 2026 stalwart contributors
"""The error registry: MRO lookup, conditional rules, OpenAPI responses from rules."""

from __future__ import annotations

import pytest

from stalwart.storage import Key, StorageError, StoreConfigurationError, VersionConflict
from stalwart.web import ErrorRegistry, ErrorRule, default_errors, retry_after


class PaymentError(Exception):
    pass


class CardDeclined(PaymentError):
    pass


class ExpiredCard(CardDeclined):
    pass


def test_most_specific_registered_class_wins() -> None:
    errors = ErrorRegistry()
    errors.register(PaymentError, status=402, code="payment-failed")
    errors.register(CardDeclined, status=402, code="card-declined", detail=str)
    assert errors.problem_for(PaymentError(), conditional=False).code == "payment-failed"
    declined = errors.problem_for(ExpiredCard("expired in 2020"), conditional=False)
    assert (declined.code, declined.detail) == ("card-declined", "expired in 2020")
    assert errors.problem_for(ValueError(), conditional=False) is None


def test_defaults_cover_the_subclasses_of_a_mapped_error_only() -> None:
    errors = default_errors()
    # StoreConfigurationError is a StorageError with a rule of its own; the root has none.
    assert errors.problem_for(StoreConfigurationError("x"), conditional=False).status == 500
    assert errors.problem_for(StorageError("x"), conditional=False) is None


def test_conditional_rule_only_with_if_match() -> None:
    conflict = VersionConflict(Key("a"), 2, None)
    errors = default_errors()
    assert errors.problem_for(conflict, conditional=False).status == 409
    assert errors.problem_for(conflict, conditional=True).code == "precondition-failed"


def test_copies_are_independent() -> None:
    errors = default_errors()
    mine = errors.copy()
    mine.register(PaymentError, status=402, code="payment-failed")
    assert errors.rule_for(PaymentError) is None
    assert mine.rule_for(PaymentError) is not None


def test_responses_from_rules() -> None:
    errors = default_errors()
    errors.add(PaymentError, ErrorRule(402, "payment-failed", detail="the payment failed"))
    responses = errors.responses(PaymentError, VersionConflict)
    assert sorted(responses) == [402, 409, 412]
    example = responses[402]["content"]["application/problem+json"]["examples"]
    assert example["payment-failed"]["value"]["detail"] == "the payment failed"
    with pytest.raises(LookupError, match="ValueError"):
        errors.responses(ValueError)


def test_a_rule_with_an_unknown_status_is_refused_when_added() -> None:
    with pytest.raises(ValueError, match="799"):
        ErrorRegistry().register(PaymentError, status=799, code="odd")


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after(0.0) == {"Retry-After": "1"}
    assert retry_after(1.0) == {"Retry-After": "1"}
    assert retry_after(1.01) == {"Retry-After": "2"}
