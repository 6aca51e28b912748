"""The decisions of the resilient transports, shared by sync and async; no I/O here.

Per host (``host:port``) one :class:`~stalwart.resilience.CircuitBreaker`, one
:class:`~stalwart.resilience.RetryBudget`, an optional :class:`~stalwart.resilience.Bulkhead`
and two :class:`~stalwart.resilience.RetryPolicy` objects built once: one for requests that
may be repeated, one for those that may not (they still retry an error that proves nothing
was sent). Per request a :class:`Call` adds the idempotency key, sizes each attempt's
timeouts, admits it through the breaker, judges its response and reports the metrics. The
transports only send, sleep (through the retry engine's loop forms) and close discarded
bodies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from stalwart.http._policy import ClientPolicy
from stalwart.observability import MetricUnit, get_logger, log_breaker_listener, put_metrics_by
from stalwart.resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitOpen,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    retry,
    timeout_for,
)

#: Errors raised before a byte of the request left: any method may retry them.
NEVER_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
#: Errors retried for a repeatable request: the server may or may not have acted.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
#: Errors that count against a host's breaker. Not PoolTimeout: our own pool is full, the host
#: may be fine.
_HOST_FAILURES: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

_log = get_logger("stalwart.http")


def parse_retry_after(headers: httpx.Headers, cap_s: float) -> float | None:
    """The wait a response asks for, capped at ``cap_s``; ``None`` when it asks for none.

    ``retry-after-ms`` (Stainless, milliseconds) wins over ``Retry-After`` (delta-seconds or
    an HTTP-date, RFC 9110 section 10.2.3). A value that is not a finite, non-negative number
    or a date is ignored: the backoff applies.

    >>> parse_retry_after(httpx.Headers({"retry-after": "2"}), 60.0)
    2.0
    >>> parse_retry_after(httpx.Headers({"retry-after-ms": "250", "retry-after": "9"}), 60.0)
    0.25
    >>> parse_retry_after(httpx.Headers({"retry-after": "3600"}), 60.0)
    60.0
    >>> parse_retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}), 60.0)
    0.0
    """
    wait: float | None = None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        wait = _seconds(milliseconds, scale=1000.0)
    value = headers.get("retry-after")
    if wait is None and value is not None:
        wait = _seconds(value, scale=1.0)
        if wait is None:
            with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
                at = email.utils.parsedate_to_datetime(value)
                wait = max(0.0, (at - datetime.now(UTC)).total_seconds())
    return None if wait is None else min(wait, cap_s)


def _seconds(text: str, *, scale: float) -> float | None:
    try:
        value = float(text) / scale
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0.0 else None


@dataclass(slots=True)
class Outcome:
    """One attempt's response, as judged: retry it, after at least ``retry_after_s``?

    It follows the retry engine's ``RetryAfter`` protocol, so the server's wait is honoured.
    """

    response: httpx.Response
    retry: bool
    retry_after_s: float | None


def _wants_retry(outcome: Outcome) -> bool:
    return outcome.retry


def _log_retry(event: RetryEvent) -> None:
    """One log line per retry: which host, which attempt failed, how, and the wait."""
    fields: dict[str, object] = {}
    if isinstance(event.result, Outcome):
        fields["status"] = event.result.response.status_code
    elif event.cause is not None:
        fields["cause_type"] = type(event.cause).__qualname__
        fields["cause"] = str(event.cause)
    _log.warning(
        "http retry scheduled",
        host=event.name,
        attempt=event.attempt,
        wait_s=round(event.wait_s, 6),
        **fields,
    )


@dataclass(frozen=True, slots=True)
class Host:
    """Everything shared by the requests to one ``host:port``."""

    name: str
    repeatable: RetryPolicy
    unrepeatable: RetryPolicy
    breaker: CircuitBreaker | None
    bulkhead: Bulkhead | None


class Hosts:
    """The per-host state of one transport, created on first use."""

    def __init__(self, policy: ClientPolicy) -> None:
        self.policy = policy
        self._hosts: dict[str, Host] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Host:
        host = self._hosts.get(name)
        if host is not None:
            return host
        with self._lock:
            host = self._hosts.get(name)
            if host is None:
                host = self._hosts[name] = self._new(name)
            return host

    def breakers(self) -> dict[str, CircuitBreaker]:
        """The breaker of every host called so far, by ``host:port``."""
        return {name: host.breaker for name, host in tuple(self._hosts.items()) if host.breaker}

    def _new(self, name: str) -> Host:
        policy = self.policy
        repeatable = retry(
            on=RETRYABLE_ERRORS,
            on_result=_wants_retry,
            attempts=policy.attempts,
            base_s=policy.backoff_base_s,
            cap_s=policy.backoff_cap_s,
            budget=(
                None
                if policy.retry_budget_tokens is None
                else RetryBudget(policy.retry_budget_tokens)
            ),
            hooks=(_log_retry,),
            name=name,
        )
        breaker = None
        if policy.breaker is not None:
            breaker = CircuitBreaker(
                f"http {name}", policy.breaker, listeners=(log_breaker_listener,)
            )
        bulkhead = None
        if policy.max_in_flight is not None:
            bulkhead = Bulkhead(
                policy.max_in_flight,
                max_waiting=policy.max_queued,
                wait_timeout_s=policy.pool_timeout_s,
                name=f"http {name}",
            )
        return Host(
            name,
            repeatable,
            dataclasses.replace(repeatable, on=NEVER_SENT),
            breaker,
            bulkhead,
        )


class Call:
    """One logical request: its attempts, their verdicts, and what it reports at the end."""

    __slots__ = (
        "_policy",
        "_started",
        "_timeouts",
        "attempts",
        "host",
        "rejected",
        "repeatable",
        "request",
    )

    def __init__(self, hosts: Hosts, request: httpx.Request) -> None:
        policy = hosts.policy
        self._policy = policy
        self.request = request
        self.host = hosts.get(request.url.netloc.decode("ascii"))
        headers = request.headers
        key_header = policy.idempotency_header
        keyed = key_header in headers
        if not keyed and request.method in policy.auto_key_methods:
            # Once per logical request: every retry below sends this same key.
            headers[key_header] = str(uuid.uuid4())
            keyed = True
        self.repeatable = keyed or request.method in policy.retry_methods
        self._timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        self.attempts = 0
        self.rejected = False
        self._started = time.perf_counter()

    @property
    def retrying(self) -> RetryPolicy:
        """The retry policy of this request (the loop form runs its attempts)."""
        host = self.host
        return host.repeatable if self.repeatable else host.unrepeatable

    @property
    def total_s(self) -> float | None:
        return self._policy.total_s

    def admit(self) -> int:
        """Before an attempt: size its timeouts, pass the breaker. Returns the breaker ticket.

        Raises :class:`~stalwart.resilience.DeadlineExceeded` when no time is left and
        :class:`~stalwart.resilience.CircuitOpen` when the host's breaker is open: either way
        nothing is sent.
        """
        policy = self._policy
        cap = timeout_for(policy.attempt_timeout_s)
        defaults = (
            ("connect", policy.connect_timeout_s),
            ("read", policy.read_timeout_s),
            ("write", policy.write_timeout_s),
            ("pool", policy.pool_timeout_s),
        )
        timeouts: dict[str, float] = {}
        for name, default in defaults:
            given = self._timeouts.get(name)
            timeouts[name] = min(cap, default if given is None else given)
        self.request.extensions["timeout"] = timeouts
        ticket = 0
        breaker = self.host.breaker
        if breaker is not None:
            try:
                ticket = breaker.admit()
            except CircuitOpen:
                self.rejected = True
                raise
        self.attempts += 1
        return ticket

    def failed(self, ticket: int, exc: BaseException, started: float) -> None:
        """An attempt raised: the host's breaker counts it if the host is to blame."""
        breaker = self.host.breaker
        if breaker is None:
            return
        if isinstance(exc, _HOST_FAILURES):
            breaker.record_failure(ticket, time.perf_counter() - started)
        else:
            breaker.release(ticket)

    def judge(self, ticket: int, response: httpx.Response, started: float) -> Outcome:
        """An attempt answered: count it on the breaker (5xx fail, 4xx do not) and decide."""
        status = response.status_code
        breaker = self.host.breaker
        if breaker is not None:
            elapsed = time.perf_counter() - started
            if status >= 500:
                breaker.record_failure(ticket, elapsed)
            else:
                breaker.record_success(ticket, elapsed)
        policy = self._policy
        should = response.headers.get("x-should-retry")
        if not self.repeatable:
            again = False
        elif should == "true":
            again = True
        elif should == "false":
            again = False
        else:
            again = status in policy.retry_statuses
        wait = parse_retry_after(response.headers, policy.max_retry_after_s) if again else None
        return Outcome(response, again, wait)

    def report(self) -> None:
        """Per-host EMF metrics, inside the app's metrics scope only."""
        metrics: dict[str, tuple[float, MetricUnit | str]] = {
            "HttpAttempts": (self.attempts, MetricUnit.COUNT),
            "HttpRetries": (max(0, self.attempts - 1), MetricUnit.COUNT),
            "HttpLatency": (
                (time.perf_counter() - self._started) * 1000.0,
                MetricUnit.MILLISECONDS,
            ),
        }
        if self.rejected:
            metrics["HttpBreakerRejections"] = (1, MetricUnit.COUNT)
        put_metrics_by({"host": self.host.name}, metrics)
