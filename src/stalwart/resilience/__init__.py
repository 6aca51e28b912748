"""Retry, circuit breaker, deadlines, bulkhead and fallback — correct under concurrency and
nearly free on the success path. See ``docs/resilience.md``.

Errors raised by this package derive from :class:`ResilienceError`; the errors of the protected
calls are never wrapped.
"""

from stalwart.resilience._breaker import (
    BreakerConfig,
    BreakerListener,
    BreakerRegistry,
    BreakerTransition,
    CircuitBreaker,
    CircuitState,
    add_breaker_listener,
)
from stalwart.resilience._budget import RetryBudget
from stalwart.resilience._bulkhead import Bulkhead
from stalwart.resilience._deadline import (
    check_deadline,
    current_deadline,
    deadline,
    remaining,
    timeout_for,
    with_deadline,
)
from stalwart.resilience._errors import (
    BulkheadFull,
    CircuitOpen,
    DeadlineExceeded,
    ResilienceError,
)
from stalwart.resilience._fallback import fallback
from stalwart.resilience._pipeline import resilient
from stalwart.resilience._retry import (
    Attempt,
    Jitter,
    RetryAfter,
    RetryEvent,
    RetryHook,
    RetryPolicy,
    add_retry_hook,
    decorrelated_jitter,
    full_jitter,
    is_testing,
    retry,
    retry_testing,
    set_testing,
)
from stalwart.resilience._shared import RedisCircuitBreaker
from stalwart.resilience._window import CountWindow, TimeWindow

__all__ = [
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
]
