"""Outgoing HTTP calls that are safe to retry: an httpx transport with stalwart's policies.

Timeouts always set, bounded by the caller's deadline; retries only where they cannot
duplicate an effect (idempotent methods, or a request carrying an ``Idempotency-Key``, added
once per request to POST and PATCH); ``Retry-After`` honoured; one circuit breaker and one
retry budget per host. See ``docs/http.md``.

>>> from stalwart.http import ClientPolicy, client
>>> http = client(ClientPolicy(attempts=3), base_url="https://psp.example")
>>> http.close()

Errors: httpx's own (the last attempt's, unwrapped), plus
:class:`~stalwart.resilience.CircuitOpen` (the host's breaker is open; nothing was sent;
``retry_after_s`` says when it probes again) and
:class:`~stalwart.resilience.DeadlineExceeded` (no time was left for another attempt).
"""

from stalwart.http._core import parse_retry_after
from stalwart.http._policy import (
    AUTO_KEY_METHODS,
    DEFAULT_BREAKER,
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    ClientPolicy,
)
from stalwart.http._transport import (
    AsyncResilientTransport,
    ResilientTransport,
    async_client,
    client,
)
from stalwart.resilience import CircuitOpen, DeadlineExceeded

__all__ = [
    "AUTO_KEY_METHODS",
    "DEFAULT_BREAKER",
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "AsyncResilientTransport",
    "CircuitOpen",
    "ClientPolicy",
    "DeadlineExceeded",
    "ResilientTransport",
    "async_client",
    "client",
    "parse_retry_after",
]
