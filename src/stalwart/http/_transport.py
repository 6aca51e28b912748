"""The sync and async resilient transports, and the two functions building clients on them.

Both shells run the same steps, with the I/O only: :class:`~stalwart.http._core.Call` decides,
the retry engine's loop form sleeps, the inner httpx transport sends. A transport is an httpx
transport like any other, so auth, event hooks, mounts and OpenTelemetry's httpx
instrumentation keep working on the client around it.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any, Self

import httpx

from stalwart.http._core import Call, Hosts, Outcome
from stalwart.http._policy import ClientPolicy
from stalwart.resilience import CircuitBreaker, deadline

#: Client options that configure the connection, not the client: they go to the inner
#: transport (given to ``httpx.Client`` beside a transport, ``proxy`` would mount a second,
#: unprotected transport, and the others would be ignored).
_TRANSPORT_OPTIONS = (
    "verify",
    "cert",
    "http1",
    "http2",
    "limits",
    "proxy",
    "uds",
    "local_address",
    "socket_options",
)


def _total(seconds: float | None) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext() if seconds is None else deadline(seconds)


def _total_async(seconds: float | None) -> contextlib.AbstractAsyncContextManager[object]:
    return contextlib.nullcontext() if seconds is None else deadline(seconds)


def _inner_options(transport: object, options: dict[str, Any], kind: str) -> dict[str, Any]:
    if transport is not None and options:
        raise TypeError(
            f"{kind}: give either an inner transport or its options "
            f"({', '.join(sorted(options))}), not both"
        )
    return options


class ResilientTransport(httpx.BaseTransport):
    """An httpx transport adding stalwart's retries, breaker, budget and deadlines.

    Wraps ``transport`` (default: an ``httpx.HTTPTransport`` built with ``options``). Mount it
    where :func:`client` does not fit, e.g. ``httpx.Client(mounts={"https://psp.example":
    ResilientTransport(policy)})``.

    >>> transport = ResilientTransport(ClientPolicy(attempts=2), http2=False)
    >>> transport.close()
    """

    def __init__(
        self,
        policy: ClientPolicy | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        options = _inner_options(transport, options, "ResilientTransport")
        self.policy = policy if policy is not None else ClientPolicy()
        self.hosts = Hosts(self.policy)
        self.transport = transport if transport is not None else httpx.HTTPTransport(**options)

    def breakers(self) -> dict[str, CircuitBreaker]:
        """The circuit breaker of every host called so far, by ``host:port`` (for readiness
        checks and operators: ``state``, ``metrics()``, ``reset()``)."""
        return self.hosts.breakers()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = Call(self.hosts, request)
        outcome: Outcome | None = None
        try:
            with _total(call.total_s):
                for attempt in call.retrying:
                    outcome = None
                    with attempt:
                        outcome = attempt.result = self._attempt(call)
                    if attempt.retrying and outcome is not None:
                        _discard(outcome.response)
        finally:
            call.report()
        assert outcome is not None  # the loop ends on a kept response, or raises
        return outcome.response

    def _attempt(self, call: Call) -> Outcome:
        ticket = call.admit()
        bulkhead = call.host.bulkhead
        started = time.perf_counter()
        try:
            with bulkhead.slot() if bulkhead is not None else contextlib.nullcontext():
                response = self.transport.handle_request(call.request)
        except BaseException as exc:
            call.failed(ticket, exc, started)
            raise
        return call.judge(ticket, response, started)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        self.transport.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.transport.__exit__(exc_type, exc_value, traceback)


class AsyncResilientTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`ResilientTransport` (same policy, same decisions).

    >>> transport = AsyncResilientTransport(ClientPolicy(attempts=2))
    """

    def __init__(
        self,
        policy: ClientPolicy | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        options = _inner_options(transport, options, "AsyncResilientTransport")
        self.policy = policy if policy is not None else ClientPolicy()
        self.hosts = Hosts(self.policy)
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport(**options)

    def breakers(self) -> dict[str, CircuitBreaker]:
        """The circuit breaker of every host called so far, by ``host:port`` (for readiness
        checks and operators: ``state``, ``metrics()``, ``reset()``)."""
        return self.hosts.breakers()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = Call(self.hosts, request)
        outcome: Outcome | None = None
        try:
            async with _total_async(call.total_s):
                async for attempt in call.retrying:
                    outcome = None
                    with attempt:
                        outcome = attempt.result = await self._attempt(call)
                    if attempt.retrying and outcome is not None:
                        await _discard_async(outcome.response)
        finally:
            call.report()
        assert outcome is not None  # the loop ends on a kept response, or raises
        return outcome.response

    async def _attempt(self, call: Call) -> Outcome:
        ticket = call.admit()
        bulkhead = call.host.bulkhead
        started = time.perf_counter()
        try:
            async with bulkhead.slot_async() if bulkhead is not None else contextlib.nullcontext():
                response = await self.transport.handle_async_request(call.request)
        except BaseException as exc:
            call.failed(ticket, exc, started)
            raise
        return call.judge(ticket, response, started)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        await self.transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.transport.__aexit__(exc_type, exc_value, traceback)


def _discard(response: httpx.Response) -> None:
    """Read (so the connection can be reused) and close the response of a retried attempt."""
    try:
        with contextlib.suppress(httpx.HTTPError):  # a discarded body's error changes nothing
            response.read()
    finally:
        response.close()


async def _discard_async(response: httpx.Response) -> None:
    try:
        with contextlib.suppress(httpx.HTTPError):  # as in _discard
            await response.aread()
    finally:
        await response.aclose()


def _split(
    policy: ClientPolicy | None, httpx_options: dict[str, Any]
) -> tuple[ClientPolicy, dict[str, Any], Any]:
    """The policy, the inner transport's options and the caller's own inner transport."""
    policy = policy if policy is not None else ClientPolicy()
    httpx_options.setdefault("timeout", policy.timeout())
    transport_options = {
        name: httpx_options.pop(name) for name in _TRANSPORT_OPTIONS if name in httpx_options
    }
    return policy, transport_options, httpx_options.pop("transport", None)


def client(policy: ClientPolicy | None = None, /, **httpx_options: Any) -> httpx.Client:
    """An ``httpx.Client`` whose requests go through a :class:`ResilientTransport`.

    ``httpx_options`` are ``httpx.Client``'s (``base_url``, ``auth``, ``headers``,
    ``event_hooks``, ``mounts``...); the connection options among them (``verify``, ``cert``,
    ``http2``, ``limits``, ``proxy``...) configure the inner transport, and ``transport=``
    replaces it. The timeout defaults to the policy's.

    >>> with client(ClientPolicy(attempts=2), base_url="http://127.0.0.1:1") as http:
    ...     http.timeout
    Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0)
    """
    policy, options, inner = _split(policy, httpx_options)
    transport = ResilientTransport(policy, transport=inner, **options)
    return httpx.Client(transport=transport, **httpx_options)


def async_client(policy: ClientPolicy | None = None, /, **httpx_options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose requests go through an :class:`AsyncResilientTransport`.

    Options as for :func:`client`.

    >>> http = async_client(ClientPolicy(attempts=2), base_url="http://127.0.0.1:1")
    >>> http.timeout.read
    10.0
    """
    policy, options, inner = _split(policy, httpx_options)
    transport = AsyncResilientTransport(policy, transport=inner, **options)
    return httpx.AsyncClient(transport=transport, **httpx_options)
