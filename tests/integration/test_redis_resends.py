# Copyright 2026 stalwart contributors
"""Client-side resends never apply a Redis write twice, whatever ran in between.

A dedicated redis-server (never the session-wide one) is frozen a few times (SIGSTOP, then
SIGCONT after longer than the clients' socket timeout) while 6 writers -- threads for the sync
store, tasks for the async one -- increment a shared counter and read-modify-replace a shared
document, with client retries on. A frozen server keeps every command it was sent: after
SIGCONT it runs a timed-out first attempt *and* its resend, with other writers' commands in
between. Every acknowledged write must be applied exactly once; a write that raised
``StoreUnavailable`` (outcome unknown) at most once. Both transports (the store's own, and
redis-py) in both modes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import ExponentialWithJitterBackoff

from servers import RunningServer, redis_server
from stalwart.storage import Key, StoreUnavailable, VersionConflict
from stalwart.storage._redis_scripts import SCRIPTS
from stalwart.storage.redis import (
    AsyncRedisStore,
    RedisStore,
    async_store_from_url,
    store_from_url,
)

WRITERS = 6
FREEZES = 3
FREEZE_S = 0.45
SOCKET_TIMEOUT_S = 0.15
RETRIES = 3
MAX_ITERATIONS = 200
MAX_CONFLICTS = 200
COUNTER = Key("shared", "counter")
DOC = Key("shared", "doc")


@pytest.fixture(scope="module")
def dedicated_redis() -> Iterator[tuple[RunningServer, int]]:
    """A redis-server of this module only (``STALWART_TEST_REDIS_URL`` is ignored: the test
    must be able to freeze the process) and its pid."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("STALWART_TEST_REDIS_URL", raising=False)
        with redis_server() as server:
            admin = redis.Redis.from_url(server.url, socket_timeout=5)
            pid = int(admin.info("server")["process_id"])
            admin.close()
            yield server, pid


@dataclass
class Tally:
    """What the writers were told; the server's final state must agree with it."""

    increments_acked: int = 0
    increments_unknown: int = 0
    updates_acked: list[str] = field(default_factory=list)
    updates_unknown: list[str] = field(default_factory=list)
    updates_abandoned: list[str] = field(default_factory=list)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, value: Any = 1) -> None:
        with self.lock:
            current = getattr(self, name)
            if isinstance(current, list):
                current.append(value)
            else:
                setattr(self, name, current + value)


def freeze_repeatedly(pid: int, done: threading.Event) -> None:
    """SIGSTOP the server FREEZES times, each longer than the socket timeout, then SIGCONT."""
    rng = random.Random()
    try:
        for _ in range(FREEZES):
            time.sleep(rng.uniform(0.15, 0.3))
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(FREEZE_S)
            finally:
                os.kill(pid, signal.SIGCONT)
        time.sleep(0.3)  # let the last resends land while writers still write
    finally:
        os.kill(pid, signal.SIGCONT)
        done.set()


def caller_made_sync_client(server: RunningServer) -> redis.Redis:
    # retry_on_error keeps this client's commands on redis-py (the store's own transport
    # leaves configurations it does not mirror to redis-py); the errors are the ones redis-py
    # retries anyway.
    return redis.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=1,
        retry=redis.retry.Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), RETRIES),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )


def caller_made_async_client(server: RunningServer) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=1,
        retry=redis.asyncio.retry.Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), RETRIES),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )


def store_url(server: RunningServer, prefix: str) -> str:
    return (
        f"{server.url}?prefix={prefix}&retries={RETRIES}&socket_timeout={SOCKET_TIMEOUT_S}"
        "&socket_connect_timeout=1"
    )


def evalsha_calls(admin: redis.Redis) -> int:
    stats = admin.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


def check_outcome(admin: redis.Redis, prefix: str, tally: Tally, executed: int) -> None:
    store = RedisStore(admin, prefix=prefix)
    counter, doc = store.get(COUNTER), store.get(DOC)
    assert counter is not None
    assert doc is not None
    resends = executed - tally.calls
    summary = (
        f"counter={counter.data['n']} acked={tally.increments_acked} "
        f"unknown={tally.increments_unknown}; updates acked={len(tally.updates_acked)} "
        f"unknown={len(tally.updates_unknown)} abandoned={len(tally.updates_abandoned)}; "
        f"scripts run by the server beyond the calls made: {resends}"
    )
    # With --log-cli-level=INFO: how many writes were unknown, how many resends ran.
    logging.getLogger(__name__).info(summary)
    # The freezes really made the clients resend (else this test proves nothing).
    assert resends > 0, summary
    problems = []
    # Counter: each acknowledged increment once, each unknown one at most once.
    excess = counter.data["n"] - tally.increments_acked - tally.increments_unknown
    if excess > 0:
        problems.append(f"{excess} increments applied twice")
    if counter.data["n"] < tally.increments_acked:
        problems.append("acknowledged increments missing")
    # Document: every update appends its id; none may be there twice.
    applied = collections.Counter(doc.data["ids"])
    twice = sorted(update for update, count in applied.items() if count > 1)
    if twice:
        problems.append(f"{len(twice)} updates applied twice")
    if doc.data["n"] != len(doc.data["ids"]):
        problems.append("the document's count and its ids disagree")
    missing = [update for update in tally.updates_acked if not applied[update]]
    if missing:
        problems.append(f"acknowledged updates not applied: {missing}")
    # A VersionConflict must mean "not applied": an abandoned update is absent.
    wrongly = [update for update in tally.updates_abandoned if applied[update]]
    if wrongly:
        problems.append(f"updates answered VersionConflict but applied: {wrongly}")
    assert not problems, f"{'; '.join(problems)} ({summary})"


def prepare(server: RunningServer, prefix: str) -> tuple[redis.Redis, int]:
    admin = redis.Redis.from_url(server.url, socket_timeout=5)
    for source in SCRIPTS.values():
        admin.script_load(source)  # no NOSCRIPT round in the count of executed scripts
    RedisStore(admin, prefix=prefix).create(DOC, {"n": 0, "ids": []})
    return admin, evalsha_calls(admin)


# ---------------------------------------------------------------------------------------------
# One writer, written once: a plan yielding (store method, args) and receiving its result or
# StorageError, or ("sleep", seconds); driven by a thread (sync) or a task (async)
# ---------------------------------------------------------------------------------------------

type Step = tuple[str, tuple[Any, ...]]


def writer_plan(tally: Tally, done: threading.Event) -> Generator[Step, Any]:
    """Increment the counter, then read-modify-replace the document, until the freezes end."""
    rng = random.Random()
    for _ in range(MAX_ITERATIONS):
        if done.is_set():
            return
        tally.add("calls")
        outcome = yield "increment", (COUNTER, "n")
        tally.add(
            "increments_unknown" if isinstance(outcome, StoreUnavailable) else "increments_acked"
        )
        yield from update_plan(tally, rng)
        yield "sleep", (rng.uniform(0, 0.004),)


def update_plan(tally: Tally, rng: random.Random) -> Generator[Step, Any]:
    """Append a fresh id to the document; on VersionConflict read again and retry (capped)."""
    update = uuid.uuid4().hex[:12]
    for _ in range(MAX_CONFLICTS):
        current = yield "get", (DOC,)
        if isinstance(current, StoreUnavailable):
            yield "sleep", (rng.uniform(0, 0.02),)
            continue
        data = {"n": current.data["n"] + 1, "ids": [*current.data["ids"], update]}
        tally.add("calls")
        outcome = yield "replace", (DOC, data, current.version)
        if isinstance(outcome, VersionConflict):
            yield "sleep", (rng.uniform(0, 0.005),)
            continue
        if isinstance(outcome, StoreUnavailable):
            tally.add("updates_unknown", update)
        else:
            tally.add("updates_acked", update)
        return
    tally.add("updates_abandoned", update)


def sync_writer(store: RedisStore, plan: Generator[Step, Any]) -> None:
    reply: Any = None
    while step := next_step(plan, reply):
        name, args = step
        reply = None
        if name == "sleep":
            time.sleep(*args)
            continue
        try:
            reply = call(store, name, args)
        except (StoreUnavailable, VersionConflict) as exc:
            reply = exc


async def async_writer(store: AsyncRedisStore, plan: Generator[Step, Any]) -> None:
    reply: Any = None
    while step := next_step(plan, reply):
        name, args = step
        reply = None
        if name == "sleep":
            await asyncio.sleep(*args)
            continue
        try:
            reply = await call(store, name, args)
        except (StoreUnavailable, VersionConflict) as exc:
            reply = exc


def next_step(plan: Generator[Step, Any], reply: Any) -> Step | None:
    try:
        return plan.send(reply)
    except StopIteration:
        return None


def call(store: RedisStore | AsyncRedisStore, name: str, args: tuple[Any, ...]) -> Any:
    if name == "replace":
        key, data, version = args
        return store.replace(key, data, expected_version=version)
    return getattr(store, name)(*args)


# ---------------------------------------------------------------------------------------------
# Sync: real threads
# ---------------------------------------------------------------------------------------------


def run_sync(store: RedisStore, pid: int) -> Tally:
    tally, done = Tally(), threading.Event()
    threads = [
        threading.Thread(target=sync_writer, args=(store, writer_plan(tally, done)))
        for _ in range(WRITERS)
    ]
    freezer = threading.Thread(target=freeze_repeatedly, args=(pid, done))
    for thread in [*threads, freezer]:
        thread.start()
    for thread in [*threads, freezer]:
        thread.join(timeout=30)
        assert not thread.is_alive()
    return tally


# ---------------------------------------------------------------------------------------------
# Async: tasks on one event loop
# ---------------------------------------------------------------------------------------------


async def run_async(store: AsyncRedisStore, pid: int) -> Tally:
    tally, done = Tally(), threading.Event()
    freezer = threading.Thread(target=freeze_repeatedly, args=(pid, done))
    freezer.start()
    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(async_writer(store, writer_plan(tally, done)) for _ in range(WRITERS))
            ),
            30,
        )
    finally:
        await asyncio.to_thread(freezer.join, 30)
    return tally


# ---------------------------------------------------------------------------------------------
# The test: both transports, sync and async
# ---------------------------------------------------------------------------------------------


def open_store(server: RunningServer, prefix: str, mode: str, transport: str) -> Any:
    """A store on ``transport`` ("own": built from a URL with retries; "redis-py": on a
    caller-made client, which retries like redis-py's default)."""
    if transport == "own":
        opened: Any = (store_from_url if mode == "sync" else async_store_from_url)(
            store_url(server, prefix)
        )
        assert opened.transport is not None
        return opened
    if mode == "sync":
        opened = RedisStore(caller_made_sync_client(server), prefix=prefix, close_client=True)
    else:
        opened = AsyncRedisStore(caller_made_async_client(server), prefix=prefix, close_client=True)
    assert opened.transport is None
    return opened


@pytest.mark.parametrize("transport", ["own", "redis-py"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_resends_under_freezes_apply_each_write_once(dedicated_redis, mode, transport):
    server, pid = dedicated_redis
    prefix = f"r{uuid.uuid4().hex[:10]}"
    admin, before = prepare(server, prefix)
    store = open_store(server, prefix, mode, transport)
    try:
        if isinstance(store, RedisStore):
            tally = await asyncio.to_thread(run_sync, store, pid)
        else:
            tally = await run_async(store, pid)
    finally:
        if isinstance(store, RedisStore):
            store.close()
        else:
            await store.close()
    check_outcome(admin, prefix, tally, evalsha_calls(admin) - before)
    admin.close()
