"""Store and API faults under steady load: the runners behind test_faults.py and
benchmarks/faults.py.

Every scenario serves the ledger API (a short request deadline, a store breaker that probes
after a second), sends transfers from several client threads -- each transfer with its own
idempotency key, retried with the same key on 503/504 and connection errors, jittered
backoff, attempts capped -- injects one fault for a while, clears it, keeps the load on, and
then reads the store directly:

- ``acked``: transfers answered 2xx; ``lost``: acknowledged but not in the store;
  ``duplicated``: transfer records beyond one per idempotency key (counted by the key each
  transfer carries in its metadata, not by its id);
- ``max_request_s``: the longest HTTP request any client waited (must stay under the deadline
  plus 1 s);
- ``recovered_s``: from the fault cleared to the first 2xx of a request sent after it
  (``-1``: never).

Faults: ``kill`` (SIGKILL and restart on the same port: Redis with ``appendonly yes`` and
``appendfsync always``, secantusdb on disk with ``--sync-on-commit``), ``down`` (DynamoDB: the
fault proxy stops listening and resets every connection; moto keeps its data in memory, so a
real restart would lose everything acknowledged, the proxy makes the same outage without
losing the data),
``slow`` (every chunk delayed past the deadline), ``blackhole`` (accepted, never answered),
``locked`` (SQLite: another connection holds the database's exclusive lock) and, for the API
itself, a worker SIGKILLed under load with ``--workers 2`` on Redis.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import sqlite3
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from api_support import Served, ledger_serve, make_key, served_app
from ledger.invariants import check_invariants
from ledger.store import transfers_partition

from faultproxy import FaultProxy
from servers import (
    MongoProcess,
    RedisProcess,
    moto_server,
    own_mongodb_server,
    own_redis_server,
)
from stalwart.storage import Store, open_store

DEADLINE_S: Final = 2.0
"""The API's request deadline in every scenario (``LEDGER_REQUEST_DEADLINE_S``)."""
STORE_TIMEOUT_S: Final = 1.0
"""The store clients' own timeouts (the URL's ``timeout=``), below the deadline."""
BREAKER_OPEN_S: Final = 1.0
CLIENTS: Final = 4
MAX_ATTEMPTS: Final = 40
"""Attempts per transfer: enough to outlast every fault here (~0.3 s apart on average)."""
FINISH_S: Final = 3.0
"""After the load stops, how long a client keeps retrying the transfer it was sending."""
READY_WITHIN_S: Final = 10.0
"""After the load stops, how long /readyz is still probed until it answers 200 again."""
TENANT: Final = "faults"
REDIS_DURABLE: Final = ("--appendonly", "yes", "--appendfsync", "always")

STORE_SCENARIOS: Final = {
    "redis": ("kill", "slow", "blackhole"),
    "dynamodb": ("down", "slow", "blackhole"),
    "mongodb": ("kill", "slow", "blackhole"),
    "sqlite": ("locked",),
}
RETRIED: Final = frozenset({503, 504})


# -- what the clients saw -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """One HTTP request of a client: when, and its status (``None``: a connection error)."""

    started: float
    ended: float
    status: int | None
    code: str | None = None


@dataclass
class Outcome:
    """Everything a scenario observed; :meth:`report` is its benchmark line."""

    acked: set[str] = field(default_factory=set)
    given_up: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    readyz: list[tuple[float, int | None]] = field(default_factory=list)
    per_key: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    fault_began: float = 0.0
    fault_ended: float = 0.0

    @property
    def lost(self) -> int:
        return sum(1 for key in self.acked if self.per_key[key] == 0)

    @property
    def duplicated(self) -> int:
        return sum(count - 1 for count in self.per_key.values() if count > 1)

    @property
    def max_request_s(self) -> float:
        return max((sent.ended - sent.started for sent in self.sent), default=0.0)

    @property
    def recovered_s(self) -> float:
        after = [s.ended for s in self.sent if s.started >= self.fault_ended and _ok(s.status)]
        return min(after) - self.fault_ended if after else -1.0

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter[int | None]:
        return Counter(s.status for s in self.sent if since <= s.started < until)

    def codes(self) -> Counter[str | None]:
        return Counter(s.code for s in self.sent if s.code is not None)

    def readyz_during_fault(self) -> set[int | None]:
        return {status for at, status in self.readyz if self.fault_began <= at < self.fault_ended}

    def readyz_after_fault(self) -> set[int | None]:
        return {status for at, status in self.readyz if at >= self.fault_ended}

    def report(self) -> dict[str, float | int]:
        return {
            "acked": len(self.acked),
            "lost": self.lost,
            "duplicated": self.duplicated,
            "max_request_s": round(self.max_request_s, 3),
            "recovered_s": round(self.recovered_s, 3),
        }


def _ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


class _Recorder:
    """The outcome, written by many threads."""

    def __init__(self) -> None:
        self.outcome = Outcome()
        self._lock = threading.Lock()

    def sent(self, sent: Sent) -> None:
        with self._lock:
            self.outcome.sent.append(sent)

    def done(self, key: str, *, acked: bool) -> None:
        with self._lock:
            (self.outcome.acked if acked else self.outcome.given_up).add(key)

    def ready(self, at: float, status: int | None) -> None:
        with self._lock:
            self.outcome.readyz.append((at, status))

    def ready_after_fault(self) -> set[int | None]:
        with self._lock:
            return self.outcome.readyz_after_fault()


# -- the load -------------------------------------------------------------------------------


def _send(api: httpx.Client, body: dict[str, Any], key: str, recorder: _Recorder) -> int | None:
    started = time.monotonic()
    status: int | None = None
    code = None
    try:
        response = api.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
        status = response.status_code
        if status >= 400 and response.headers.get("content-type") == "application/problem+json":
            code = response.json().get("code")
    except httpx.TransportError:
        code = "connection-error"
    recorder.sent(Sent(started, time.monotonic(), status, code))
    return status


class _Stop:
    """When the load stops, and until when clients may finish their last transfer."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.finish_by = float("inf")

    def set(self) -> None:
        self.finish_by = time.monotonic() + FINISH_S
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def out_of_time(self) -> bool:
        return time.monotonic() > self.finish_by


def _transfer_until_answered(
    api: httpx.Client, debit: str, credit: str, stop: _Stop, recorder: _Recorder
) -> None:
    """One transfer: retried with the same key on 503/504/connection errors, full jitter
    (50 ms doubling, capped at 0.5 s), at most MAX_ATTEMPTS attempts, and no longer than
    FINISH_S after the load stopped."""
    key = f"op-{uuid.uuid4()}"
    body = {
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": 1,
        "currency": "USD",
        "metadata": {"op": key},
    }
    for attempt in range(MAX_ATTEMPTS):
        status = _send(api, body, key, recorder)
        if _ok(status):
            recorder.done(key, acked=True)
            return
        if (status is not None and status not in RETRIED) or stop.out_of_time():
            break  # an answer that a retry cannot change, or the scenario is over
        time.sleep(random.uniform(0, min(0.5, 0.05 * 2**attempt)))
    recorder.done(key, acked=False)


def _client(
    base: str, key: str, accounts: tuple[str, str] | None, stop: _Stop, recorder: _Recorder
) -> None:
    """Transfers between ``accounts`` (``None``: a new pair) until the load stops."""
    with _api(base, key) as api:
        debit, credit = accounts or (_new_account(api), _new_account(api))
        while not stop.is_set():
            _transfer_until_answered(api, debit, credit, stop, recorder)


def _readyz_monitor(base: str, stop: threading.Event, recorder: _Recorder) -> None:
    with httpx.Client(base_url=base, timeout=DEADLINE_S + 5) as probe:
        while not stop.is_set():
            status = None
            with contextlib.suppress(httpx.TransportError):
                status = probe.get("/readyz").status_code
            recorder.ready(time.monotonic(), status)
            stop.wait(0.1)


def _api(base: str, key: str) -> httpx.Client:
    # A timeout well past the deadline: a hung request is measured, not cut short here.
    return httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=DEADLINE_S + 5
    )


def _new_account(api: httpx.Client) -> str:
    for _ in range(MAX_ATTEMPTS):  # the breaker may still be open
        response = api.post("/v1/accounts", json={"currency": "USD", "name": "fault load"})
        if response.status_code not in RETRIED:
            break
        time.sleep(random.uniform(0.05, 0.3))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to the store (or the API) when the fault begins, and when it ends."""

    begin: Callable[[], None]
    end: Callable[[], None]


def run_load(base: str, key: str, fault: Fault, seconds: float) -> Outcome:
    """CLIENTS threads of transfers against ``base`` for ``seconds``: healthy for the first
    fifth, faulty for the next two fifths, healthy again for the rest, when one more client
    arrives with new accounts (untouched by the fault: on MongoDB, accounts that a
    transaction cut by the fault had written stay locked until the server reaps it); then
    every client finishes the transfer it was retrying."""
    recorder = _Recorder()
    stop, stop_probe = _Stop(), threading.Event()
    with _api(base, key) as api:  # one pair per client: clients never contend for a balance
        pairs = [(_new_account(api), _new_account(api)) for _ in range(CLIENTS)]
    clients = [
        threading.Thread(target=_client, args=(base, key, pair, stop, recorder), name="client")
        for pair in pairs
    ]
    monitor = threading.Thread(target=_readyz_monitor, args=(base, stop_probe, recorder))
    for thread in (*clients, monitor):
        thread.start()
    try:
        time.sleep(seconds * 0.2)
        recorder.outcome.fault_began = time.monotonic()
        fault.begin()
        time.sleep(seconds * 0.4)
        fault.end()
        recorder.outcome.fault_ended = time.monotonic()
        late = threading.Thread(target=_client, args=(base, key, None, stop, recorder))
        clients.append(late)
        late.start()
        time.sleep(seconds * 0.4)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
        # Ready again is awaited past the load: on a loaded CI machine moto's reads missed
        # the check's 0.5-s timeout for the whole 1.6-s window after a DynamoDB fault (every
        # probe 503) although transfers had recovered.
        ready_by = time.monotonic() + READY_WITHIN_S
        while 200 not in recorder.ready_after_fault() and time.monotonic() < ready_by:
            time.sleep(0.1)
        stop_probe.set()
        monitor.join(timeout=10)
    return recorder.outcome


def check_store(outcome: Outcome, store_url: str) -> Outcome:
    """Count the tenant's transfers per idempotency key and check its invariants, reading
    the store directly (not through the fault)."""
    with open_store(store_url) as store:
        outcome.per_key = Counter(record.data["metadata"]["op"] for record in _all_transfers(store))
        outcome.violations = check_invariants(store, TENANT)
    return outcome


def _all_transfers(store: Store) -> Iterator[Any]:
    cursor = None
    while True:
        page = store.query(transfers_partition(TENANT), limit=1000, cursor=cursor)
        yield from page.records
        cursor = page.cursor
        if cursor is None:
            return


# -- store faults ---------------------------------------------------------------------------


def store_url(
    engine: str, address: tuple[str, int] | Path, name: str, timeout_s: float = STORE_TIMEOUT_S
) -> str:
    """A fresh table of ``engine`` at ``address`` (host and port, or SQLite's directory),
    its client's timeouts ``timeout_s``."""
    timeout = f"timeout={timeout_s:g}"
    if isinstance(address, Path):
        return f"sqlite:///{address / name}.db?table={name}&{timeout}"
    host, port = address
    if engine == "redis":
        return f"redis://{host}:{port}/0?prefix={name}&{timeout}"
    if engine == "dynamodb":
        endpoint = f"http://{host}:{port}"
        return f"dynamodb://{name}?region=us-east-1&endpoint_url={endpoint}&create=true&{timeout}"
    if engine == "mongodb":
        return f"mongodb://{host}:{port}/faults?collection={name}&directConnection=true&create=true&{timeout}"
    raise ValueError(f"unknown engine {engine}")


def address_of(url: str) -> tuple[str, int]:
    """The host and port of a server URL (``redis://``, ``http://``, ``mongodb://``)."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"no host and port in {url}")
    return parts.hostname, parts.port


def serve_under_fault(app_url: str, direct_url: str, fault: Fault, seconds: float) -> Outcome:
    """The API on ``app_url`` (maybe through a proxy) under load and ``fault``; checked on
    ``direct_url``."""
    key = make_key(direct_url, TENANT)
    with served_app(
        app_url,
        request_deadline_s=DEADLINE_S,
        store_breaker_open_s=BREAKER_OPEN_S,
        expire_interval_s=0,
        log_level="WARNING",
    ) as base:
        outcome = run_load(base, key, fault, seconds)
    return check_store(outcome, direct_url)


def proxy_fault(proxy: FaultProxy, scenario: str) -> Fault:
    """``down``, ``slow`` or ``blackhole`` through ``proxy``; each ends with pass-through."""
    if scenario == "down":

        def begin() -> None:
            proxy.down()
            proxy.reset()

    elif scenario == "slow":

        def begin() -> None:
            proxy.latency(DEADLINE_S + 1)

    elif scenario == "blackhole":
        begin = proxy.blackhole
    else:
        raise ValueError(f"unknown proxy scenario {scenario}")
    return Fault(begin, proxy.pass_through)


def run_proxied_scenario(
    engine: str, scenario: str, upstream: tuple[str, int], seconds: float
) -> Outcome:
    """``scenario`` through a fault proxy in front of the server at ``upstream``."""
    name = f"faults{uuid.uuid4().hex[:8]}"
    with FaultProxy(*upstream) as proxy:
        app_url = store_url(engine, ("127.0.0.1", proxy.port), name)
        return serve_under_fault(
            app_url, store_url(engine, upstream, name), proxy_fault(proxy, scenario), seconds
        )


def run_store_kill(engine: str, server: RedisProcess | MongoProcess, seconds: float) -> Outcome:
    """The store's server SIGKILLed under load and restarted on the same port from its
    files (Redis: its AOF, ``appendfsync always``; secantusdb: ``--sync-on-commit``)."""
    url = store_url(engine, ("127.0.0.1", server.port), f"faults{uuid.uuid4().hex[:8]}")
    return serve_under_fault(url, url, Fault(server.kill, server.start), seconds)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[Fault]:
    """A Fault holding SQLite's exclusive lock on ``path`` from another connection (its own
    thread: sqlite3 connections stay on the thread that made them)."""
    begin, end, taken = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        begin.wait()
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("BEGIN EXCLUSIVE")
            taken.set()
            end.wait()
            db.execute("COMMIT")

    holder = threading.Thread(target=hold, name="sqlite-lock", daemon=True)
    holder.start()

    def start() -> None:
        begin.set()
        assert taken.wait(10), "the exclusive lock was not taken"

    try:
        yield Fault(start, end.set)
    finally:
        begin.set()
        end.set()
        holder.join(timeout=10)


def run_sqlite_locked(directory: Path, seconds: float) -> Outcome:
    """Another connection holds the database file's exclusive lock for a while."""
    name = f"faults{uuid.uuid4().hex[:8]}"
    url = store_url("sqlite", directory, name)
    with _exclusive_lock(directory / f"{name}.db") as fault:
        return serve_under_fault(url, url, fault, seconds)


@contextlib.contextmanager
def _upstream(engine: str) -> Iterator[tuple[str, int] | RedisProcess | MongoProcess | Path]:
    if engine == "redis":
        with own_redis_server(*REDIS_DURABLE) as redis:
            yield redis
    elif engine == "dynamodb":
        with moto_server() as moto:
            yield address_of(moto.url)
    elif engine == "mongodb":
        with own_mongodb_server() as mongo:
            yield mongo
    elif engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ledger-faults-") as directory:
            yield Path(directory)
    else:
        raise ValueError(f"unknown engine {engine}")


def run_store_scenario(
    engine: str,
    scenario: str,
    upstream: tuple[str, int] | RedisProcess | MongoProcess | Path,
    seconds: float,
) -> Outcome:
    """One scenario of :data:`STORE_SCENARIOS` against a running ``upstream``."""
    if isinstance(upstream, RedisProcess | MongoProcess):
        if scenario == "kill":
            return run_store_kill(engine, upstream, seconds)
        upstream = ("127.0.0.1", upstream.port)
    if isinstance(upstream, Path):
        return run_sqlite_locked(upstream, seconds)
    return run_proxied_scenario(engine, scenario, upstream, seconds)


def run_store_fault_scenarios(
    engines: Sequence[str], seconds: float
) -> dict[str, dict[str, float | int]]:
    """Every store scenario of ``engines`` (each about ``seconds`` long), on servers started
    here; keys ``"<engine>_<scenario>"``."""
    results: dict[str, dict[str, float | int]] = {}
    for engine in engines:
        with _upstream(engine) as upstream:
            for scenario in STORE_SCENARIOS[engine]:
                outcome = run_store_scenario(engine, scenario, upstream, seconds)
                results[f"{engine}_{scenario}"] = outcome.report()
    return results


# -- an API worker killed -------------------------------------------------------------------


def _no_op() -> None:
    """A fault that ends by itself (a killed worker is replaced by uvicorn)."""


WORKER_STARTED: Final = r"Started server process \[(\d+)\]"


def _kill_a_worker(served: Served) -> None:
    """SIGKILL one of the uvicorn workers (the other keeps serving; uvicorn's supervisor
    starts a new one within about half a second)."""
    workers = sorted(set(re.findall(WORKER_STARTED, served.text())))
    os.kill(int(random.choice(workers)), signal.SIGKILL)


def run_api_kill(redis: RedisProcess, seconds: float, directory: Path) -> Outcome:
    """``ledger serve --workers 2`` on Redis under load; one worker SIGKILLed when the fault
    begins (the fault ends at once: recovery counts from the kill)."""
    url = store_url("redis", ("127.0.0.1", redis.port), f"faults{uuid.uuid4().hex[:8]}")
    key = make_key(url, TENANT)
    env = {
        "LEDGER_REQUEST_DEADLINE_S": str(DEADLINE_S),
        "LEDGER_STORE_BREAKER_OPEN_S": str(BREAKER_OPEN_S),
        "LEDGER_EXPIRE_INTERVAL_S": "0",
    }
    # Three processes import the whole app: generous start-up times for a busy machine.
    serve = ledger_serve("--store", url, "--workers", "2", cwd=directory, env=env, timeout_s=180)
    with serve as served:
        assert served.wait_for(WORKER_STARTED, count=2, timeout_s=120), served.text()
        outcome = run_load(served.base, key, Fault(lambda: _kill_a_worker(served), _no_op), seconds)
        replaced = served.wait_for(WORKER_STARTED, count=3, timeout_s=120)
        assert replaced, "the killed worker was not replaced"
    return check_store(outcome, url)


def run_api_kill_scenario(seconds: float) -> dict[str, float | int]:
    """:func:`run_api_kill` on a Redis server started here."""
    with (
        own_redis_server(*REDIS_DURABLE) as redis,
        tempfile.TemporaryDirectory(prefix="ledger-faults-") as directory,
    ):
        return run_api_kill(redis, seconds, Path(directory)).report()
