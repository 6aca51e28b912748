"""stalwart.http against a real local server (uvicorn), sync and async.

Every count below is what the server received, not what the client believes it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from http_app import Reply, ScriptedApp
from stalwart.http import (
    AsyncResilientTransport,
    ClientPolicy,
    DeadlineExceeded,
    ResilientTransport,
    async_client,
    client,
    parse_retry_after,
)
from stalwart.observability import capture_logs
from stalwart.resilience import (
    BreakerConfig,
    BulkheadFull,
    CircuitOpen,
    CountWindow,
    deadline,
    set_testing,
)

MODES = ("sync", "async")
FAST = ClientPolicy(backoff_base_s=0.001, backoff_cap_s=0.01)


def tight(**changes: Any) -> ClientPolicy:
    """The test policy: tiny backoffs, everything else as given."""
    return ClientPolicy(**{"backoff_base_s": 0.001, "backoff_cap_s": 0.01, **changes})


def send(
    mode: str,
    policy: ClientPolicy,
    method: str,
    url: str,
    *,
    client_options: dict[str, Any] | None = None,
    **request: Any,
) -> httpx.Response:
    """One request through a fresh stalwart client (its own breakers and budgets)."""
    options = client_options or {}
    if mode == "sync":
        with client(policy, **options) as http:
            return http.request(method, url, **request)

    async def go() -> httpx.Response:
        async with async_client(policy, **options) as http:
            return await http.request(method, url, **request)

    return asyncio.run(go())


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- what is retried, and with which key -------------------------------------------------------


def test_a_post_without_a_key_is_never_retried(server: ScriptedApp, mode: str) -> None:
    path = server.path(Reply(503), Reply(200))
    policy = tight(auto_key_methods=frozenset())
    response = send(mode, policy, "POST", server.base_url + path, json={"amount": 5})
    assert response.status_code == 503
    assert server.count(path) == 1
    assert server.keys(path) == [None]


def test_a_post_with_a_key_is_retried_with_that_same_key(server: ScriptedApp, mode: str) -> None:
    path = server.path(Reply(503), Reply(502), Reply(201))
    headers = {"Idempotency-Key": "order-42"}
    response = send(mode, FAST, "POST", server.base_url + path, headers=headers, json={})
    assert response.status_code == 201
    assert server.keys(path) == ["order-42"] * 3  # never overwritten, reused on every retry


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_post_and_patch_get_one_automatic_key_reused_on_retries(
    server: ScriptedApp, mode: str, method: str
) -> None:
    path = server.path(Reply(503), Reply(429), Reply(200))
    response = send(mode, FAST, method, server.base_url + path, json={})
    assert response.status_code == 200
    keys = server.keys(path)
    assert len(keys) == 3
    assert keys[0] is not None
    assert keys == [keys[0]] * 3
    assert uuid.UUID(keys[0]).version == 4


def test_the_key_header_name_is_configurable(server: ScriptedApp, mode: str) -> None:
    path = server.path(Reply(503), Reply(200))
    policy = tight(idempotency_header="X-Request-Key")
    send(mode, policy, "POST", server.base_url + path)
    keys = server.keys(path, "x-request-key")
    assert keys[0] is not None
    assert keys == [keys[0]] * 2
    assert server.keys(path) == [None, None]


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
def test_idempotent_methods_retry_the_default_statuses(
    server: ScriptedApp, mode: str, status: int
) -> None:
    path = server.path(Reply(status), Reply(200))
    assert send(mode, FAST, "GET", server.base_url + path).status_code == 200
    assert server.count(path) == 2


@pytest.mark.parametrize("status", [400, 404, 409, 500, 501])
def test_other_statuses_are_returned_at_once(server: ScriptedApp, mode: str, status: int) -> None:
    path = server.path(Reply(status), Reply(200))
    assert send(mode, FAST, "PUT", server.base_url + path).status_code == status
    assert server.count(path) == 1


def test_attempts_run_out_on_the_last_response(server: ScriptedApp, mode: str) -> None:
    path = server.path(Reply(503, body=b"still down"))
    response = send(mode, tight(attempts=4), "GET", server.base_url + path)
    assert (response.status_code, response.content) == (503, b"still down")
    assert server.count(path) == 4


def test_x_should_retry_overrides_the_status(server: ScriptedApp, mode: str) -> None:
    never = server.path(Reply(503, {"x-should-retry": "false"}), Reply(200))
    assert send(mode, FAST, "GET", server.base_url + never).status_code == 503
    assert server.count(never) == 1
    forced = server.path(Reply(400, {"x-should-retry": "true"}), Reply(200))
    assert send(mode, FAST, "GET", server.base_url + forced).status_code == 200
    assert server.count(forced) == 2


def test_x_should_retry_cannot_make_an_unkeyed_post_retry(server: ScriptedApp, mode: str) -> None:
    path = server.path(Reply(503, {"x-should-retry": "true"}), Reply(200))
    send(mode, tight(auto_key_methods=frozenset()), "POST", server.base_url + path)
    assert server.count(path) == 1


def test_a_connection_refused_is_retried_even_for_an_unkeyed_post(mode: str) -> None:
    """Nothing was sent, so repeating cannot duplicate anything."""
    policy = tight(auto_key_methods=frozenset(), connect_timeout_s=1.0)
    with capture_logs("stalwart.http") as lines, pytest.raises(httpx.ConnectError):
        send(mode, policy, "POST", "http://127.0.0.1:9/")
    retries = [line for line in lines if line["message"] == "http retry scheduled"]
    assert [line["attempt"] for line in retries] == [1, 2]
    assert retries[0]["cause_type"] == "ConnectError"
    assert retries[0]["host"] == "127.0.0.1:9"


def test_a_timeout_is_retried_for_a_get(server: ScriptedApp, mode: str) -> None:
    path = server.path(Reply(stall_s=2.0), Reply(200))
    started = time.monotonic()
    response = send(mode, tight(read_timeout_s=0.3), "GET", server.base_url + path)
    assert response.status_code == 200
    assert server.count(path) == 2
    assert time.monotonic() - started < 1.5


def test_a_timeout_of_an_unkeyed_post_is_not_retried(server: ScriptedApp, mode: str) -> None:
    """The server may have acted on it: the caller must decide, not the client."""
    path = server.path(Reply(stall_s=2.0), Reply(200))
    policy = tight(read_timeout_s=0.3, auto_key_methods=frozenset())
    with pytest.raises(httpx.ReadTimeout):
        send(mode, policy, "POST", server.base_url + path)
    assert server.count(path) == 1


def test_timeouts_are_always_set(server: ScriptedApp, mode: str) -> None:
    """Even a client built with ``timeout=None`` gets the policy's timeouts per attempt."""
    path = server.path(Reply(stall_s=3.0))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        send(
            mode,
            tight(attempts=1, read_timeout_s=0.3),
            "GET",
            server.base_url + path,
            client_options={"timeout": None},
        )
    assert time.monotonic() - started < 1.5


# -- Retry-After ---------------------------------------------------------------------------------


def test_retry_after_ms_and_seconds_are_waited(server: ScriptedApp, mode: str) -> None:
    set_testing(False)  # real waits (the fixture restores test mode)
    path = server.path(
        Reply(503, {"retry-after-ms": "300"}), Reply(429, {"retry-after": "1"}), Reply(200)
    )
    send(mode, FAST, "GET", server.base_url + path)
    first, second, third = (r.at for r in server.received[path])
    assert 0.28 <= second - first < 0.9
    assert 0.95 <= third - second < 1.6


def test_retry_after_as_an_http_date_is_waited(server: ScriptedApp, mode: str) -> None:
    set_testing(False)
    at = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    path = server.path(Reply(503, {"retry-after": at}), Reply(200))
    send(mode, FAST, "GET", server.base_url + path)
    first, second = (r.at for r in server.received[path])
    assert 0.9 <= second - first < 2.6  # the date has a one-second resolution


def test_retry_after_is_capped(server: ScriptedApp, mode: str) -> None:
    set_testing(False)
    path = server.path(Reply(503, {"retry-after": "3600"}), Reply(200))
    send(mode, tight(max_retry_after_s=0.2), "GET", server.base_url + path)
    first, second = (r.at for r in server.received[path])
    assert 0.18 <= second - first < 0.8


def test_retry_after_as_an_http_date() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    wait = parse_retry_after(httpx.Headers({"retry-after": format_datetime(soon, usegmt=True)}), 60)
    assert wait is not None
    assert 28.0 <= wait <= 30.0
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"}), 60) is None
    assert parse_retry_after(httpx.Headers({"retry-after": "-3"}), 60) is None
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "nan"}), 60) is None
    assert parse_retry_after(httpx.Headers({}), 60) is None


# -- deadlines -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["caller deadline", "total_s"])
@pytest.mark.parametrize("read_timeout_s", [0.3, 3.0])
def test_a_deadline_is_never_overrun(
    server: ScriptedApp, mode: str, how: str, read_timeout_s: float
) -> None:
    """Short attempts: retries stop at the deadline; a long one: its timeouts are capped."""
    path = server.path(Reply(stall_s=5.0))
    budget = 0.8
    policy = tight(
        attempts=10, read_timeout_s=read_timeout_s, total_s=budget if how == "total_s" else 30.0
    )
    started = time.monotonic()
    caller = deadline(budget) if how == "caller deadline" else contextlib.nullcontext()
    with caller, pytest.raises((httpx.TimeoutException, DeadlineExceeded)):
        send(mode, policy, "GET", server.base_url + path)
    elapsed = time.monotonic() - started
    assert elapsed <= budget + 0.3
    arrivals = [r.at for r in server.received[path]]
    assert 1 <= len(arrivals) <= 3
    # No attempt started past it. An arrival is when the server got to the request: on a busy
    # machine it trails the client's send by up to the scheduling slack allowed above.
    assert all(at < started + budget + 0.3 for at in arrivals)


def test_no_wait_is_started_past_the_deadline(server: ScriptedApp, mode: str) -> None:
    """A server asking for 5 s inside a 1 s deadline: the 503 comes back at once."""
    set_testing(False)
    path = server.path(Reply(503, {"retry-after": "5"}), Reply(200))
    started = time.monotonic()
    with deadline(1.0):
        response = send(mode, FAST, "GET", server.base_url + path)
    assert response.status_code == 503
    assert time.monotonic() - started < 0.8
    assert server.count(path) == 1


# -- breaker, budget, bulkhead -------------------------------------------------------------------

TRIPPY = BreakerConfig(window=CountWindow(2), min_calls=2, failure_rate=0.5, open_s=30.0)


async def requests_on_one_client(
    mode: str, policy: ClientPolicy, urls: list[str]
) -> list[httpx.Response | BaseException]:
    """Send GETs in order on one client (one breaker, one budget); errors are returned."""
    results: list[httpx.Response | BaseException] = []
    if mode == "sync":
        with client(policy) as http:
            for url in urls:
                try:
                    results.append(http.get(url))
                except Exception as exc:
                    results.append(exc)
        return results
    async with async_client(policy) as http:
        for url in urls:
            try:
                results.append(await http.get(url))
            except Exception as exc:
                results.append(exc)
    return results


def on_one_client(mode: str, policy: ClientPolicy, urls: list[str]) -> list[Any]:
    return asyncio.run(requests_on_one_client(mode, policy, urls))


def test_an_open_breaker_sends_nothing_and_says_when_to_retry(
    server: ScriptedApp, mode: str
) -> None:
    failing = server.path(Reply(500))
    healthy = server.path(Reply(200))
    url, ok = server.base_url + failing, server.base_url + healthy
    results = on_one_client(mode, tight(attempts=1, breaker=TRIPPY), [url, url, url, ok])
    assert [r.status_code for r in results[:2]] == [500, 500]
    for rejected in results[2:]:
        assert isinstance(rejected, CircuitOpen)
        assert 29.0 < rejected.retry_after_s <= 30.0
    assert server.count(failing) == 2  # the third was never sent
    assert server.count(healthy) == 0  # nor anything else to that host


def test_retries_stop_when_the_breaker_opens(server: ScriptedApp, mode: str) -> None:
    path = server.path(Reply(503))
    results = on_one_client(mode, tight(attempts=5, breaker=TRIPPY), [server.base_url + path])
    assert isinstance(results[0], CircuitOpen)
    assert server.count(path) == 2


def test_client_errors_do_not_open_the_breaker(server: ScriptedApp, mode: str) -> None:
    missing = server.path(Reply(404))
    url = server.base_url + missing
    results = on_one_client(mode, tight(breaker=TRIPPY), [url] * 6)
    assert [r.status_code for r in results] == [404] * 6
    assert server.count(missing) == 6


def test_timeouts_open_the_breaker(server: ScriptedApp, mode: str) -> None:
    path = server.path(Reply(stall_s=2.0))
    url = server.base_url + path
    policy = tight(attempts=1, read_timeout_s=0.2, breaker=TRIPPY)
    results = on_one_client(mode, policy, [url, url, url])
    assert [type(r) for r in results] == [httpx.ReadTimeout, httpx.ReadTimeout, CircuitOpen]
    assert server.count(path) == 2


def test_the_retry_budget_stops_retries_to_a_failing_host(server: ScriptedApp, mode: str) -> None:
    """10 tokens at 5 per retry: the first request retries twice, then no request retries."""
    path = server.path(Reply(503))
    url = server.base_url + path
    policy = tight(attempts=5, retry_budget_tokens=10, breaker=None)
    results = on_one_client(mode, policy, [url, url, url])
    assert [r.status_code for r in results] == [503, 503, 503]
    assert server.count(path) == 3 + 1 + 1


async def test_the_bulkhead_bounds_requests_in_flight(server: ScriptedApp) -> None:
    path = server.path(Reply(stall_s=0.5))
    policy = tight(attempts=1, max_in_flight=1, max_queued=0)
    async with async_client(policy) as http:
        results = await asyncio.gather(
            http.get(server.base_url + path),
            http.get(server.base_url + path),
            return_exceptions=True,
        )
    assert sorted(type(r).__name__ for r in results) == ["BulkheadFull", "Response"]
    assert server.count(path) == 1
    assert any(isinstance(r, BulkheadFull) for r in results)


# -- bodies and streams ----------------------------------------------------------------------------


def test_failed_attempts_bodies_are_closed(server: ScriptedApp, mode: str) -> None:
    """One connection in the pool: a leaked retry would leave the next request a PoolTimeout."""
    path = server.path(Reply(503, body=b"x" * 10_000), Reply(503), Reply(200))
    url = server.base_url + path
    policy = tight(pool_timeout_s=0.5, attempts=3)
    options = {"limits": httpx.Limits(max_connections=1)}

    async def many() -> list[int]:
        if mode == "sync":
            with client(policy, **options) as http:
                return [http.get(url).status_code for _ in range(3)]
        async with async_client(policy, **options) as http:
            return [(await http.get(url)).status_code for _ in range(3)]

    assert asyncio.run(many()) == [200, 200, 200]
    assert server.count(path) == 5


def test_a_status_retry_happens_before_a_stream_is_handed_over(
    server: ScriptedApp, mode: str
) -> None:
    path = server.path(Reply(503), Reply(200, body=b"streamed"))
    url = server.base_url + path

    async def stream() -> bytes:
        if mode == "sync":
            with client(FAST) as http, http.stream("GET", url) as response:
                return b"".join(response.iter_bytes())
        async with async_client(FAST) as http, http.stream("GET", url) as response:
            return b"".join([chunk async for chunk in response.aiter_bytes()])

    assert asyncio.run(stream()) == b"streamed"
    assert server.count(path) == 2


@pytest.mark.parametrize("streaming", [True, False])
def test_a_body_error_after_handover_is_never_retried(
    server: ScriptedApp, mode: str, streaming: bool
) -> None:
    path = server.path(Reply(200, body=b"half" * 100, reset=True), Reply(200))
    url = server.base_url + path

    async def read() -> None:
        if mode == "sync":
            with client(FAST) as http:
                if streaming:
                    with http.stream("GET", url) as response:
                        response.read()
                else:
                    http.get(url)
            return
        async with async_client(FAST) as http:
            if streaming:
                async with http.stream("GET", url) as response:
                    await response.aread()
            else:
                await http.get(url)

    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(read())
    assert server.count(path) == 1


def test_breakers_are_listed_per_host(server: ScriptedApp) -> None:
    path = server.path(Reply(500))
    policy = tight(attempts=1, breaker=TRIPPY)
    transport = ResilientTransport(policy)
    with httpx.Client(transport=transport) as http:
        assert transport.breakers() == {}
        http.get(server.base_url + path)
        http.get(server.base_url + path)
    host = server.base_url.removeprefix("http://")
    assert {name: b.state for name, b in transport.breakers().items()} == {host: "open"}
    assert AsyncResilientTransport(policy).breakers() == {}
    assert ResilientTransport(tight(breaker=None)).breakers() == {}
