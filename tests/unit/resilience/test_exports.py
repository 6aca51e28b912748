"""The public surface of stalwart.resilience is curated."""

from __future__ import annotations

from stalwart import resilience

EXPECTED = {
    "Attempt",
    "BreakerConfig",
    "BreakerListener",
    "BreakerRegistry",
    "BreakerTransition",
    "Bulkhead",
    "BulkheadFull",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitState",
    "CountWindow",
    "DeadlineExceeded",
    "Jitter",
    "RedisCircuitBreaker",
    "ResilienceError",
    "RetryAfter",
    "RetryBudget",
    "RetryEvent",
    "RetryHook",
    "RetryPolicy",
    "TimeWindow",
    "add_breaker_listener",
    "add_retry_hook",
    "check_deadline",
    "current_deadline",
    "deadline",
    "decorrelated_jitter",
    "fallback",
    "full_jitter",
    "is_testing",
    "remaining",
    "resilient",
    "retry",
    "retry_testing",
    "set_testing",
    "timeout_for",
    "with_deadline",
}


def test_all_is_exactly_the_curated_list() -> None:
    assert set(resilience.__all__) == EXPECTED
    assert resilience.__all__ == sorted(resilience.__all__)


def test_every_export_exists_and_is_public() -> None:
    for name in resilience.__all__:
        obj = getattr(resilience, name)
        assert not name.startswith("_")
        assert getattr(obj, "__module__", "stalwart.resilience").startswith("stalwart.resilience")


def test_error_tree() -> None:
    for name in ("CircuitOpen", "BulkheadFull", "DeadlineExceeded"):
        assert issubclass(getattr(resilience, name), resilience.ResilienceError)
