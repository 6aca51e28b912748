"""The ledger under store and API faults (runners in fault_scenarios.py; docs/reliability.md).

Each scenario: steady load from several clients retrying with their idempotency keys, one
fault, then the store read directly. Every transfer acknowledged with 2xx exists, none
exists twice, the invariants hold, no request waited past the deadline plus 1 s, the API
recovered without a restart.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import make_key, served_app
from backoffice_support import PASSWORD, csrf_token, make_operators
from fault_scenarios import (
    DEADLINE_S,
    REDIS_DURABLE,
    TENANT,
    Outcome,
    address_of,
    run_api_kill,
    run_proxied_scenario,
    run_sqlite_locked,
    run_store_kill,
    store_url,
)
from ledger.backoffice import BACKOFFICE_PATH
from ledger.backoffice.context import EXTENSION, Backoffice
from ledger.backoffice.factory import create_backoffice
from ledger.guard import GuardedAsyncStore, GuardedStore, RequestDeadline, store_breaker
from ledger.settings import LedgerSettings

from faultproxy import FaultProxy
from servers import RedisProcess, RunningServer, own_mongodb_server, own_redis_server
from stalwart.observability import capture_logs, capture_metrics
from stalwart.resilience import CircuitOpen, CircuitState, current_deadline
from stalwart.storage import AlreadyExists, Key, StoreUnavailable, open_async_store, open_store

SECONDS = 4.0
"""Each scenario's load: 0.8 s healthy, 1.6 s of fault, 1.6 s after it."""


def assert_guarantees(
    outcome: Outcome, *, readyz_down: bool = True, orphaned_transactions: bool = False
) -> None:
    """What every scenario must show. ``readyz_down``: the store could not answer reads
    during the fault, so /readyz said so. ``orphaned_transactions`` (MongoDB): a transaction
    cut by the fault keeps its accounts' locks until the server reaps it (60 s), so transfers
    on them may still answer 503 (at the deadline), or 409 contention, after the fault."""
    report = outcome.report()
    assert outcome.lost == 0, report
    assert outcome.duplicated == 0, report
    assert outcome.violations == []
    assert outcome.max_request_s <= DEADLINE_S + 1, report
    assert outcome.recovered_s >= 0, f"no 2xx after the fault ended: {outcome.statuses()}"
    assert len(outcome.acked) > 0, report
    allowed: set[int | None] = {201, 503, None, *([409] if orphaned_transactions else [])}
    assert set(outcome.statuses()) <= allowed, outcome.statuses()  # never a 500, 504, hang
    codes = set(outcome.codes())
    assert codes <= {"store-unavailable", "circuit-open", "connection-error", "contention"}
    if not orphaned_transactions:
        assert not outcome.given_up, f"{len(outcome.given_up)} transfers never answered"
    if readyz_down:
        assert 503 in outcome.readyz_during_fault(), outcome.readyz
    # Ready again after the fault, without a restart (probed up to READY_WITHIN_S after the
    # load; not "the last probe": under a loaded CI run one probe after recovery can miss the
    # check's own 0.5 s timeout on moto).
    assert 200 in outcome.readyz_after_fault(), outcome.readyz[-5:]


@pytest.fixture(autouse=True)
def _collect_abandoned_sockets() -> Iterator[None]:
    """Collect, inside the scenario that made them, the sockets the store clients abandon
    when the deadline cancels a connection attempt to a dead or blackholed store (never
    bound: ``laddr=('0.0.0.0', 0)``): collected later they failed an unrelated test of the
    same worker with a ResourceWarning (warnings are errors)."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def durable_redis() -> Iterator[RedisProcess]:
    with own_redis_server(*REDIS_DURABLE) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["redis", "mongodb"])
def test_store_killed_and_restarted_under_load(engine: str) -> None:
    """SIGKILL, then a restart on the same port from the server's own files (a restart
    also ends MongoDB transactions the kill cut: none is left holding locks)."""
    servers = {"redis": lambda: own_redis_server(*REDIS_DURABLE), "mongodb": own_mongodb_server}
    with servers[engine]() as server:
        outcome = run_store_kill(engine, server, SECONDS)
    assert_guarantees(outcome)
    if engine == "redis":
        # Connections refused fail fast: the breaker opened and answered at once. (PyMongo
        # waits out its server selection timeout instead, so four clients make too few calls
        # in a short outage for the breaker's minimum of 10: whether it opens is timing.)
        assert outcome.codes()["circuit-open"] > 0, outcome.codes()


def _upstream(engine: str, request: pytest.FixtureRequest) -> tuple[str, int]:
    server: RunningServer = request.getfixturevalue(
        {"redis": "redis_srv", "dynamodb": "moto_srv", "mongodb": "mongodb_srv"}[engine]
    )
    return address_of(server.url)


@pytest.mark.slow
def test_dynamodb_down_under_load(request: pytest.FixtureRequest) -> None:
    """moto keeps its data in memory (a restart would lose it all): the proxy stops
    listening and resets every connection instead, the same outage."""
    assert_guarantees(
        run_proxied_scenario("dynamodb", "down", _upstream("dynamodb", request), SECONDS)
    )


@pytest.mark.parametrize("engine", ["redis", "dynamodb", "mongodb"])
@pytest.mark.parametrize("scenario", ["slow", "blackhole"])
def test_store_slow_or_blackholed_under_load(
    engine: str, scenario: str, request: pytest.FixtureRequest
) -> None:
    outcome = run_proxied_scenario(engine, scenario, _upstream(engine, request), SECONDS)
    assert_guarantees(outcome, orphaned_transactions=engine == "mongodb")


def test_sqlite_locked_under_load(tmp_path: Path) -> None:
    """Writes wait for the lock (the URL's timeout=, then 503); reads go on (WAL), so the
    store stays ready."""
    outcome = run_sqlite_locked(tmp_path, SECONDS)
    assert_guarantees(outcome, readyz_down=False)
    assert outcome.statuses()[503] > 0, outcome.statuses()


@pytest.mark.slow
def test_api_worker_killed_under_load(durable_redis, tmp_path: Path) -> None:
    outcome = run_api_kill(durable_redis, SECONDS, tmp_path)
    assert_guarantees(outcome, readyz_down=False)
    # The kill cut requests in flight (or the keep-alive connections to the killed worker):
    # those clients retried with the same key.
    assert outcome.codes()["connection-error"] > 0, outcome.codes()
    assert outcome.statuses()[503] == 0


# -- the deadline and the breaker on their own -----------------------------------------------


@pytest.mark.parametrize("engine", ["redis", "dynamodb", "mongodb"])
def test_a_hung_store_call_ends_at_the_request_deadline(
    engine: str, request: pytest.FixtureRequest
) -> None:
    """The store client would wait 30 s (its URL's timeout): the request ends at the
    deadline with 503 store-unavailable and Retry-After."""
    upstream = _upstream(engine, request)
    name = f"deadline{time.monotonic_ns()}"
    direct = store_url(engine, upstream, name)
    key = make_key(direct, TENANT)
    with FaultProxy(*upstream) as proxy:
        url = store_url(engine, ("127.0.0.1", proxy.port), name, timeout_s=30)
        with (
            served_app(url, request_deadline_s=1.0, log_level="WARNING") as base,
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as api,
        ):
            for _ in range(20):  # the first calls open the client (slow on a busy machine)
                if api.get("/v1/accounts", timeout=30).status_code == 200:
                    break
            else:
                pytest.fail("the API never answered 200")
            proxy.blackhole()
            started = time.monotonic()
            response = api.get("/v1/accounts", timeout=30)
            took = time.monotonic() - started
            proxy.pass_through()
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "store-unavailable"
    assert response.headers["Retry-After"] == "1"
    assert 1.0 <= took < 1.5


async def test_the_breaker_counts_store_failures_only_and_closes_when_the_store_is_back(
    request: pytest.FixtureRequest,
) -> None:
    with FaultProxy(*_upstream("redis", request)) as proxy:
        url = store_url("redis", ("127.0.0.1", proxy.port), f"breaker{time.monotonic_ns()}")
        store = GuardedAsyncStore(open_async_store(url), store_breaker(open_s=0.5), 2.0)
        try:
            await store.create(Key("p", "s"), {"n": 1})
            for _ in range(30):  # conflicts are answers of a healthy store
                with pytest.raises(AlreadyExists):
                    await store.create(Key("p", "s"), {"n": 1})
            assert store.breaker.state is CircuitState.CLOSED
            proxy.down()
            proxy.reset()
            with capture_logs() as lines, capture_metrics() as docs:
                for _ in range(10):
                    with pytest.raises(StoreUnavailable):
                        await store.get(Key("p", "s"))
            assert store.breaker.state is CircuitState.OPEN
            [opened] = [line for line in lines if line["message"] == "circuit breaker transition"]
            assert (opened["level"], opened["to_state"]) == ("WARNING", "open"), opened
            assert [d["to_state"] for d in docs if "BreakerTransition" in d] == ["open"]
            started = time.monotonic()
            with pytest.raises(CircuitOpen) as rejected:
                await store.get(Key("p", "s"))
            assert time.monotonic() - started < 0.05  # at once, without touching the store
            assert 0 < rejected.value.retry_after_s <= 0.5
            proxy.pass_through()
            await asyncio.sleep(0.5)
            assert (await store.get(Key("p", "s"))) is not None  # probes, then closed
            assert (await store.get(Key("p", "s"))) is not None
            assert store.breaker.state is CircuitState.CLOSED
        finally:
            await store.close()


def _backoffice_store(request: pytest.FixtureRequest) -> tuple[str, tuple[str, int]]:
    """A fresh table on the session's Redis with the back-office's operators: its name and
    the server's address."""
    name = f"backoffice{time.monotonic_ns()}"
    upstream = _upstream("redis", request)
    with open_store(store_url("redis", upstream, name)) as direct:
        make_operators(direct)
    return name, upstream


def _sign_in(browser: Any) -> None:
    """Sign ``olivia`` in through the login form (an httpx client or Flask's test client)."""
    token = csrf_token(browser.get("/login").text)
    form = {"username": "olivia", "password": PASSWORD, "csrf_token": token}
    assert browser.post("/login", data=form).status_code == 302


@pytest.mark.usefixtures("cheap_password_hashes")
def test_the_back_office_answers_503_while_the_store_is_down_through_the_apis_breaker(
    request: pytest.FixtureRequest,
) -> None:
    """``ledger serve``'s back-office on a store that goes down: a friendly 503 page with
    Retry-After (not a 500 and a traceback), then at once through the breaker it shares with
    the API (which the back-office's failures opened); pages again once the store is back."""
    name, upstream = _backoffice_store(request)
    api_key = f"Bearer {make_key(store_url('redis', upstream, name), TENANT)}"
    open_s = 3.0  # far longer than the failing pages take, even on a loaded machine
    with FaultProxy(*upstream) as proxy:
        url = store_url("redis", ("127.0.0.1", proxy.port), name)
        with (
            served_app(url, store_breaker_open_s=open_s, log_level="WARNING") as base,
            httpx.Client(base_url=f"{base}{BACKOFFICE_PATH}", timeout=10) as browser,
        ):
            _sign_in(browser)
            assert browser.get("/accounts").status_code == 200
            proxy.down()
            proxy.reset()
            with capture_logs() as lines:
                down = [browser.get("/accounts") for _ in range(10)]
            assert {page.status_code for page in down} == {503}, [p.text for p in down]
            assert all("The ledger is unavailable" in page.text for page in down)
            assert {page.headers["Retry-After"] for page in down} <= {"1", "2", "3"}
            failed = [line for line in lines if line["logger"] == "ledger.backoffice"]
            assert len(failed) == len(down), lines
            assert {line["level"] for line in failed} == {"WARNING"}, failed
            assert not any("exception" in line for line in failed), failed  # no traceback
            # The page's stylesheet needs no store (nor an operator read from it).
            assert browser.get("/static/style.css").status_code == 200
            # The back-office's failures opened the breaker: the API answers from it too.
            rejected = httpx.get(f"{base}/v1/accounts", headers={"Authorization": api_key})
            assert rejected.status_code == 503, rejected.text
            assert rejected.json()["code"] == "circuit-open"
            proxy.pass_through()
            time.sleep(open_s)
            assert browser.get("/accounts").status_code == 200  # the probes, then closed
            assert browser.get("/accounts").status_code == 200


@pytest.mark.usefixtures("cheap_password_hashes")
def test_a_back_office_on_its_own_store_has_a_breaker_of_its_own(
    request: pytest.FixtureRequest,
) -> None:
    """``create_backoffice(settings)`` opens its store and guards it with its own breaker."""
    name, upstream = _backoffice_store(request)
    with FaultProxy(*upstream) as proxy:
        settings = LedgerSettings(
            _env_file=None,
            store_url=store_url("redis", ("127.0.0.1", proxy.port), name),
            store_breaker_open_s=60.0,
        )
        app = create_backoffice(settings)
        state: Backoffice = app.extensions[EXTENSION]
        try:
            browser = app.test_client()
            _sign_in(browser)
            proxy.down()
            proxy.reset()
            with capture_logs():
                statuses = {browser.get("/accounts").status_code for _ in range(10)}
            assert statuses == {503}
            assert isinstance(state.store, GuardedStore)
            assert state.store.breaker.state is CircuitState.OPEN
        finally:
            state.store.close()


async def test_the_request_deadline_spares_the_assistant() -> None:
    """The assistant's model calls read the caller's deadline: a store-sized request
    deadline would cut a model's answer. Its turns have their own deadline."""
    seen: dict[str, float | None] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen[scope["path"]] = current_deadline()

    middleware = RequestDeadline(app, seconds=2.0, exempt=("/v1/assistant",))
    for path in ("/v1/transfers", "/v1/assistant/conversations"):
        await middleware({"type": "http", "path": path}, None, None)  # type: ignore[arg-type]
    assert seen["/v1/assistant/conversations"] is None
    left = seen["/v1/transfers"]
    assert left is not None
    assert 0 < left - time.monotonic() <= 2.0
