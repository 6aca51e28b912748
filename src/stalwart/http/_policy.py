"""ClientPolicy: every knob of the resilient client, with named, documented defaults."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

from stalwart.resilience import BreakerConfig, TimeWindow

#: Methods that may be repeated without a second effect (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: Statuses retried by default: the server says "not now", never "no".
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
#: Methods that get an automatic Idempotency-Key (what Stripe and Stainless do for POST).
AUTO_KEY_METHODS = frozenset({"POST", "PATCH"})
#: One breaker per host: judged over the last 30 s (like .NET's sampling window), at least 20
#: calls, opens at 50% failures (.NET: 10% of 100; ours trips on smaller services too), and
#: probes again after 5 s (.NET's break duration).
DEFAULT_BREAKER = BreakerConfig(window=TimeWindow(30), min_calls=20, failure_rate=0.5, open_s=5.0)


def _check_seconds(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"ClientPolicy {name}={value!r}: expected a number of seconds")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"ClientPolicy {name}={value!r}: must be finite and > 0")


def _check_int(name: str, value: object, *, low: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"ClientPolicy {name}={value!r}: expected an int >= {low}")
    if value < low:
        raise ValueError(f"ClientPolicy {name}={value!r}: must be >= {low}")


def _upper(name: str, methods: Iterable[str]) -> frozenset[str]:
    # A bare string would be taken letter by letter: "POST" -> {"P", "O", "S", "T"}.
    if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
        raise TypeError(f"ClientPolicy {name}={methods!r}: expected a set of method names")
    return frozenset(m.upper() for m in methods)


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """How :func:`stalwart.http.client` calls other services; built once, shared by requests.

    - ``attempts``: attempts per request, the first included (3: Stripe's and Stainless'
      2 retries); ``backoff_base_s`` / ``backoff_cap_s``: full-jitter exponential backoff,
      uniform in ``[0, min(cap, base * 2**(n-1))]``.
    - ``total_s``: a deadline for the whole request, retries and waits included (.NET's total
      timeout, 30 s); ``None`` leaves only the caller's :func:`~stalwart.resilience.deadline`.
    - ``attempt_timeout_s``: the most any wait of one attempt (connect, each write, each read)
      may take (.NET's attempt timeout, 10 s); ``connect/read/write/pool_timeout_s``: httpx's
      four timeouts, used when the request sets none. The time left before the deadline caps
      all of them.
    - ``retry_statuses``: statuses retried; ``retry_methods``: methods retried without a key;
      ``idempotency_header``: the header that makes any request retryable;
      ``auto_key_methods``: methods that get one (a UUID4, once per request) when the caller
      set none; ``max_retry_after_s``: the cap on a server's ``Retry-After``.
    - ``breaker``: one per host (``None``: no breaker); ``retry_budget_tokens``: one AWS-style
      token bucket per host (a retry costs 5, a success refunds 1; ``None``: no budget);
      ``max_in_flight``: a per-host bulkhead (``None``: unbounded), ``max_queued`` callers may
      wait ``pool_timeout_s`` for a slot.

    >>> ClientPolicy(attempts=2).timeout()
    Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0)
    """

    attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0
    total_s: float | None = 30.0
    attempt_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    write_timeout_s: float = 10.0
    pool_timeout_s: float = 5.0
    retry_statuses: frozenset[int] = RETRY_STATUSES
    retry_methods: frozenset[str] = IDEMPOTENT_METHODS
    idempotency_header: str = "Idempotency-Key"
    auto_key_methods: frozenset[str] = AUTO_KEY_METHODS
    max_retry_after_s: float = 60.0
    breaker: BreakerConfig | None = field(default=DEFAULT_BREAKER)
    retry_budget_tokens: int | None = 500
    max_in_flight: int | None = None
    max_queued: int = 0

    def __post_init__(self) -> None:
        _check_int("attempts", self.attempts, low=1)
        _check_int("retry_budget_tokens", self.retry_budget_tokens, low=1, optional=True)
        _check_int("max_in_flight", self.max_in_flight, low=1, optional=True)
        _check_int("max_queued", self.max_queued, low=0)
        for name in (
            "backoff_base_s",
            "backoff_cap_s",
            "attempt_timeout_s",
            "connect_timeout_s",
            "read_timeout_s",
            "write_timeout_s",
            "pool_timeout_s",
            "max_retry_after_s",
        ):
            _check_seconds(name, getattr(self, name))
        _check_seconds("total_s", self.total_s, optional=True)
        if self.backoff_base_s > self.backoff_cap_s:
            raise ValueError("ClientPolicy backoff_base_s must not exceed backoff_cap_s")
        if not all(isinstance(s, int) and 100 <= s <= 599 for s in self.retry_statuses):
            raise ValueError(f"ClientPolicy retry_statuses={self.retry_statuses!r}")
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))
        object.__setattr__(self, "retry_methods", _upper("retry_methods", self.retry_methods))
        object.__setattr__(
            self, "auto_key_methods", _upper("auto_key_methods", self.auto_key_methods)
        )
        if not isinstance(self.idempotency_header, str) or not self.idempotency_header.strip():
            raise ValueError("ClientPolicy idempotency_header must be a non-empty header name")
        if self.breaker is not None and not isinstance(self.breaker, BreakerConfig):
            raise TypeError(f"ClientPolicy breaker={self.breaker!r}: expected a BreakerConfig")

    def timeout(self) -> httpx.Timeout:
        """httpx's four timeouts from this policy (what :func:`client` sets on the client)."""
        return httpx.Timeout(
            connect=self.connect_timeout_s,
            read=self.read_timeout_s,
            write=self.write_timeout_s,
            pool=self.pool_timeout_s,
        )
