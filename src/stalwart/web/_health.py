# Copyright 2026 stalwart contributors
"""Liveness and readiness: a registry of dependency checks, framework-neutral.

``/livez`` answers as long as the process serves; it runs no check (a dependency outage must
not get the process restarted). ``/readyz`` runs every registered check, all at once, each
bounded by its own timeout, and answers 503 when a required check is down, 200 ``degraded``
when only optional ones are, 200 ``ok`` otherwise. The result is reused for ``cache_s``
seconds, so load balancers probing often cannot hammer a store.

A check that hangs is reported down after its timeout and keeps running: the next evaluation
waits on that same run instead of starting another, so a hung dependency holds at most one
thread (sync checks) or one task (async checks) per check, never a pile of them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from stalwart.resilience import CircuitState
from stalwart.storage import AsyncStore, Key, Store

logger = logging.getLogger("stalwart.web.health")

type Probe = Callable[[], Any]
"""A check: sync, or async (returns an awaitable). It is down when it raises or returns
``False``; any other result is up."""

HEALTH_JSON: Final = "application/json"
LIVE_BODY: Final = b'{"status":"ok"}'
"""The body of every ``/livez`` answer."""
PROBE_KEY: Final = Key("stalwart-health", "readyz")
"""The key :func:`store_check` reads (it never needs to exist)."""


class CheckState(StrEnum):
    UP = "up"
    DOWN = "down"


class ReadyStatus(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    """Only optional checks are down: the instance still takes traffic."""
    DOWN = "down"
    """A required check is down: 503, the load balancer stops sending traffic."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome as ``/readyz`` lists it."""

    name: str
    state: CheckState
    required: bool
    duration_ms: float
    error: str | None = None
    """The exception's type name (``TimeoutError`` past the timeout); never its message."""

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "state": self.state.value,
            "required": self.required,
            "duration_ms": self.duration_ms,
        }
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass(frozen=True, slots=True)
class Readiness:
    """The outcome of every check: the ``/readyz`` status code and body."""

    status: ReadyStatus
    checks: tuple[CheckResult, ...]

    @property
    def http_status(self) -> int:
        return 503 if self.status is ReadyStatus.DOWN else 200

    def document(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "checks": {check.name: check.document() for check in self.checks},
        }

    def body(self) -> bytes:
        """Compact UTF-8 JSON, the same bytes for every framework."""
        return json.dumps(self.document(), separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class _Outcome:
    error: BaseException | None
    healthy: bool
    ended: float


def _outcome(result: Any = None, error: Exception | None = None) -> _Outcome:
    return _Outcome(error, healthy=error is None and result is not False, ended=time.monotonic())


def _outcome_of(probe: Probe) -> _Outcome:
    """Run a probe on this thread (an async one in its own event loop)."""
    try:
        result = probe()
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency means "down"
        return _outcome(error=exc)
    return _outcome(result)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _outcome_of_async(probe: Probe) -> _Outcome:
    try:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency means "down"
        return _outcome(error=exc)
    return _outcome(result)


class _Check:
    """A registered check, its run in flight (at most one per kind, never a pile) and its
    last state (failures are logged when the state changes, not on every probe)."""

    __slots__ = (
        "is_async",
        "last_state",
        "lock",
        "name",
        "probe",
        "required",
        "task",
        "thread_run",
        "timeout_s",
    )

    def __init__(self, name: str, probe: Probe, *, required: bool, timeout_s: float) -> None:
        self.name = name
        self.probe = probe
        self.required = required
        self.timeout_s = timeout_s
        self.is_async = inspect.iscoroutinefunction(probe)
        self.lock = threading.Lock()
        self.thread_run: concurrent.futures.Future[_Outcome] | None = None
        self.task: asyncio.Task[_Outcome] | None = None
        self.last_state = CheckState.UP

    def run_in_thread(self) -> concurrent.futures.Future[_Outcome]:
        """The run in flight, or a new one on its own daemon thread.

        Not a thread pool: a hung probe would hold a pool worker, and shutting a pool (or an
        event loop's default executor) down waits for it.
        """
        with self.lock:
            running = self.thread_run
            if running is not None and not running.done():
                return running
            future: concurrent.futures.Future[_Outcome] = concurrent.futures.Future()
            self.thread_run = future

        def run() -> None:
            future.set_result(_outcome_of(self.probe))

        threading.Thread(target=run, name=f"stalwart-health-{self.name}", daemon=True).start()
        return future

    def run_as_task(self) -> asyncio.Future[_Outcome]:
        """The async probe's task in flight on this loop, or a new one; a sync probe's thread."""
        if not self.is_async:
            return asyncio.wrap_future(self.run_in_thread())
        task = self.task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self.task = asyncio.ensure_future(_outcome_of_async(self.probe))
        return task

    def result(self, outcome: _Outcome | None, started: float) -> CheckResult:
        """The check's line in ``/readyz``; ``outcome`` None: the run outlived the timeout."""
        if outcome is None:
            outcome = _outcome(error=TimeoutError(f"no answer within {self.timeout_s}s"))
        state = CheckState.UP if outcome.healthy else CheckState.DOWN
        if state is not self.last_state:
            self.last_state = state
            if state is CheckState.DOWN:
                logger.warning("health check %r is down", self.name, exc_info=outcome.error)
            else:
                logger.info("health check %r is up again", self.name)
        return CheckResult(
            self.name,
            state,
            self.required,
            round(max(outcome.ended - started, 0.0) * 1000, 1),
            None if outcome.error is None else type(outcome.error).__name__,
        )


def _readiness(results: list[CheckResult]) -> Readiness:
    down = [result for result in results if result.state is CheckState.DOWN]
    if any(result.required for result in down):
        status = ReadyStatus.DOWN
    elif down:
        status = ReadyStatus.DEGRADED
    else:
        status = ReadyStatus.OK
    return Readiness(status, tuple(results))


class Health:
    """The checks ``/readyz`` runs, and its short-lived cache of their outcome.

    >>> health = Health(cache_s=0)
    >>> health.add("always", lambda: True)
    >>> health.add("cache", lambda: False, required=False)
    >>> readiness = health.check()
    >>> readiness.http_status, readiness.status
    (200, <ReadyStatus.DEGRADED: 'degraded'>)
    """

    def __init__(
        self,
        *,
        cache_s: float = 1.0,
        timeout_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``cache_s``: how long one outcome is reused (0: never); ``timeout_s``: the default
        per-check timeout (keep the largest below the probe's own timeout: Kubernetes'
        ``timeoutSeconds`` defaults to 1 s)."""
        if cache_s < 0 or timeout_s <= 0:
            raise ValueError("cache_s must be >= 0 and timeout_s > 0")
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._checks: dict[str, _Check] = {}
        self._cached: tuple[float, Readiness] | None = None

    def __repr__(self) -> str:
        return f"<Health checks={list(self._checks)}>"

    def add(
        self, name: str, probe: Probe, *, required: bool = True, timeout_s: float | None = None
    ) -> None:
        """Register ``probe`` as ``name``; an optional one (``required=False``) only degrades."""
        if not name or name in self._checks:
            raise ValueError(f"a check needs a unique, non-empty name: {name!r}")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ValueError("timeout_s must be > 0")
        self._checks[name] = _Check(name, probe, required=required, timeout_s=timeout)
        self._cached = None

    def _fresh(self) -> Readiness | None:
        cached = self._cached
        if cached is not None and self._clock() - cached[0] < self.cache_s:
            return cached[1]
        return None

    def _store(self, readiness: Readiness) -> Readiness:
        self._cached = (self._clock(), readiness)
        return readiness

    def check(self) -> Readiness:
        """Run every check (each on a thread; async ones in their own event loop), or reuse
        the outcome of less than ``cache_s`` ago. For Flask and other sync servers."""
        if (fresh := self._fresh()) is not None:
            return fresh
        started = time.monotonic()
        runs = [(check, check.run_in_thread()) for check in self._checks.values()]
        results = []
        for check, run in runs:
            left = max(started + check.timeout_s - time.monotonic(), 0.0)
            try:
                outcome: _Outcome | None = run.result(timeout=left)
            except TimeoutError:
                outcome = None
            results.append(check.result(outcome, started))
        return self._store(_readiness(results))

    async def check_async(self) -> Readiness:
        """Run every check (async ones as tasks on this loop, sync ones on threads), or reuse
        the outcome of less than ``cache_s`` ago. For FastAPI and other async servers."""
        if (fresh := self._fresh()) is not None:
            return fresh
        started = time.monotonic()

        async def bounded(check: _Check) -> CheckResult:
            run = check.run_as_task()
            done, _ = await asyncio.wait({run}, timeout=check.timeout_s)
            if not done and isinstance(run, asyncio.Task):
                run.cancel()  # a probe that ignores it stays the check's run in flight
            # Cancelled: a run an earlier evaluation gave up on, ending while this one waited.
            finished = done and not run.cancelled()
            return check.result(run.result() if finished else None, started)

        results = await asyncio.gather(*(bounded(check) for check in self._checks.values()))
        return self._store(_readiness(list(results)))


def store_check(store: Store | AsyncStore, key: Key = PROBE_KEY) -> Probe:
    """A check that reads ``key`` from ``store`` (one round trip; the record need not exist).

    An :class:`~stalwart.storage.AsyncStore` gives an async check: register it where the
    store lives (FastAPI), since its connections belong to that event loop.

    >>> from stalwart.storage import open_store
    >>> health = Health(cache_s=0)
    >>> health.add("store", store_check(open_store("sqlite:///:memory:?table=t")))
    >>> health.check().body()
    b'{"status":"ok","checks":{"store":{"state":"up","required":true,"duration_ms":...}}}'
    """
    get = store.get
    if inspect.iscoroutinefunction(get):

        async def read_async() -> None:
            await get(key)

        return read_async

    def read() -> None:
        get(key)

    return read


class _HasState(Protocol):
    @property
    def state(self) -> CircuitState: ...


def breaker_check(breaker: _HasState) -> Probe:
    """A check that is down while ``breaker`` (a ``CircuitBreaker`` or a
    ``RedisCircuitBreaker``, as this process sees it) is open; half-open counts as up.

    >>> from stalwart.resilience import CircuitBreaker
    >>> breaker = CircuitBreaker("payments")
    >>> probe = breaker_check(breaker)
    >>> probe(), breaker.trip(), probe()
    (True, None, False)
    """

    def closed_enough() -> bool:
        return breaker.state is not CircuitState.OPEN

    return closed_enough
