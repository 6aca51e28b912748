# Copyright 2026 stalwart contributors
"""Storage engines side by side: versioned-update throughput, lost updates, round trips.

    uv run python benchmarks/storage.py [--seconds 2.0] [--engines sqlite,redis]

Starts its own servers (tests/servers.py: redis-server, moto, secantusdb). For each engine:

- ``updates_per_s_1_writer`` / ``updates_per_s_16_writers``: read-modify-replace of one counter
  (get, then replace at the read version, retry on VersionConflict) for a fixed time by 1 and
  by 16 threads; successful replaces per second.
- ``lost_updates``: successful replaces minus the counter's final increase (must be 0).
- ``round_trips_per_{replace,create,increment}``: engine calls per successful operation, counted
  by each client's own instrumentation: SQLite's trace callback (statements), the commands
  Redis's ``MONITOR`` shows from clients (``INFO commandstats`` would also count the commands a
  Lua script runs inside one EVALSHA), botocore ``before-send`` events, PyMongo's
  CommandListener (started commands).

The last line is one JSON object: ``{"engines": {"sqlite": {...}, ...}}``; an engine that cannot
run reports ``{"error": "..."}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import mongodb_server, moto_server, redis_server
from stalwart.storage import Key, Store, VersionConflict

ENGINES = ("sqlite", "redis", "dynamodb", "mongodb")
ROUND_TRIP_SAMPLES = 40
WRITERS = 16


class Counter:
    """A thread-safe event counter the instrumentation hooks call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, *_: Any, **__: Any) -> None:
        with self._lock:
            self.count += 1


@dataclass
class Instrumented:
    """A store plus a way to read how many engine calls it has made so far."""

    store: Store
    calls: Callable[[], int]
    close: Callable[[], None]
    done_counting: Callable[[], None] = lambda: None


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_store() -> Iterator[Instrumented]:
    from stalwart.storage.sqlite import SQLiteStore  # noqa: PLC0415 - engines load on demand

    with tempfile.TemporaryDirectory(prefix="stalwart-bench-") as tmp:
        statements = Counter()
        store = SQLiteStore(Path(tmp) / "bench.db", table="bench", trace=statements)
        yield Instrumented(store, lambda: statements.count, store.close)


class RedisCommandCounter:
    """Counts the commands clients send to Redis, seen through ``MONITOR``.

    ``INFO commandstats`` cannot be used alone: it also counts every ``redis.call`` made inside
    a Lua script, so one EVALSHA doing four commands would read as five round trips. MONITOR
    tags those inner commands as ``lua``; everything else is a command a client sent. Each
    reading sends an ``ECHO`` marker and waits until the monitor has seen it, so all commands
    sent before are counted.
    """

    MARK = "__stalwart_bench_mark__"

    def __init__(self, url: str) -> None:
        import redis  # noqa: PLC0415

        self._client = redis.Redis.from_url(url, socket_timeout=30)
        self._marker_client = redis.Redis.from_url(url, socket_timeout=10)
        self._monitor = self._client.monitor()
        self._monitor.__enter__()
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False
        self._marks_seen = 0
        self._seen = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while True:
            command = self._monitor.next_command()
            text = str(command["command"])
            with self._seen:
                if text.startswith(f"ECHO {self.MARK}"):
                    self._marks_seen += 1
                    self._seen.notify_all()
                    if text.endswith("stop"):
                        return
                elif command["client_type"] != "lua":
                    self._count += 1

    def _mark(self, suffix: str) -> None:
        with self._seen:
            wanted = self._marks_seen + 1
        self._marker_client.echo(f"{self.MARK}{suffix}")
        with self._seen:
            if not self._seen.wait_for(lambda: self._marks_seen >= wanted, timeout=30):
                raise TimeoutError("MONITOR did not report the marker within 30 s")

    def __call__(self) -> int:
        self._mark("")
        with self._lock:
            return self._count

    def close(self) -> None:
        """Stop monitoring (MONITOR slows the server down) before measuring throughput."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._mark("stop")
            self._thread.join(timeout=30)
        self._monitor.__exit__(None, None, None)
        self._client.close()
        self._marker_client.close()


@contextlib.contextmanager
def redis_store() -> Iterator[Instrumented]:
    import redis  # noqa: PLC0415

    from stalwart.storage.redis import RedisStore  # noqa: PLC0415

    with redis_server() as server:
        client = redis.Redis.from_url(
            server.url, socket_timeout=10, socket_connect_timeout=5, max_connections=64
        )
        counter = RedisCommandCounter(server.url)
        store = RedisStore(client, prefix=f"bench{uuid.uuid4().hex[:8]}")
        try:
            yield Instrumented(store, counter, store.close, counter.close)
        finally:
            counter.close()
            client.close()


@contextlib.contextmanager
def dynamodb_store() -> Iterator[Instrumented]:
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    from stalwart.storage.dynamodb import DynamoDBStore, create_table  # noqa: PLC0415

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with moto_server() as server:
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            endpoint_url=server.url,
            config=Config(
                connect_timeout=5,
                read_timeout=10,
                max_pool_connections=64,
                retries={"mode": "standard", "max_attempts": 3},
            ),
        )
        sends = Counter()
        client.meta.events.register("before-send.dynamodb", sends)
        table = f"bench{uuid.uuid4().hex[:8]}"
        create_table(client, table)
        store = DynamoDBStore(client, table=table)
        try:
            yield Instrumented(store, lambda: sends.count, store.close)
        finally:
            client.close()


@contextlib.contextmanager
def mongodb_store() -> Iterator[Instrumented]:
    from pymongo import MongoClient, monitoring  # noqa: PLC0415

    from stalwart.storage.mongodb import MongoStore, ensure_indexes  # noqa: PLC0415

    started = Counter()

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            started(event)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    with mongodb_server() as server:
        client: MongoClient[dict[str, Any]] = MongoClient(
            server.url,
            event_listeners=[Listener()],
            serverSelectionTimeoutMS=5000,
            connectTimeoutMS=5000,
            socketTimeoutMS=10000,
            maxPoolSize=64,
        )
        collection = client["bench"][f"c{uuid.uuid4().hex[:8]}"]
        ensure_indexes(collection)
        store = MongoStore(collection)
        try:
            yield Instrumented(store, lambda: started.count, store.close)
        finally:
            client.close()


OPENERS = {
    "sqlite": sqlite_store,
    "redis": redis_store,
    "dynamodb": dynamodb_store,
    "mongodb": mongodb_store,
}


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


def round_trips(bench: Instrumented) -> dict[str, float]:
    store = bench.store
    partition = f"rt{uuid.uuid4().hex[:8]}"
    counter_key = Key(partition, "counter")
    store.create(counter_key, {"n": 0})
    store.increment(counter_key, "n")  # warm up (e.g. Redis script loading)
    store.create(Key(partition, "warm"), {})
    current = store.replace(counter_key, {"n": 1}, expected_version=2)

    def per_op(run: Callable[[int], None]) -> float:
        before = bench.calls()
        for i in range(ROUND_TRIP_SAMPLES):
            run(i)
        return round((bench.calls() - before) / ROUND_TRIP_SAMPLES, 3)

    version = [current.version]

    def replace(i: int) -> None:
        version[0] = store.replace(counter_key, {"n": i}, expected_version=version[0]).version

    return {
        "round_trips_per_replace": per_op(replace),
        "round_trips_per_create": per_op(lambda i: store.create(Key(partition, f"c{i}"), {})),
        "round_trips_per_increment": per_op(lambda _: store.increment(counter_key, "hits")),
    }


def contended_updates(store: Store, writers: int, seconds: float) -> tuple[float, int]:
    """Read-modify-replace by ``writers`` threads; returns (updates per second, lost)."""
    key = Key(f"tp{uuid.uuid4().hex[:8]}", "counter")
    store.create(key, {"n": 0})
    successes = [0] * writers
    errors: list[BaseException] = []
    start = threading.Barrier(writers + 1)
    deadline = [0.0]

    def writer(index: int) -> None:
        start.wait()
        try:
            while time.monotonic() < deadline[0]:
                current = store.get(key)
                assert current is not None
                while True:
                    try:
                        store.replace(
                            key, {"n": current.data["n"] + 1}, expected_version=current.version
                        )
                        successes[index] += 1
                        break
                    except VersionConflict as conflict:
                        current = conflict.current or store.get(key)
                        assert current is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    if errors:
        raise errors[0]
    final = store.get(key)
    assert final is not None
    total = sum(successes)
    return round(total / elapsed, 1), total - int(final.data["n"])


def bench_engine(engine: str, seconds: float) -> dict[str, Any]:
    with OPENERS[engine]() as bench:
        try:
            result: dict[str, Any] = round_trips(bench)
            bench.done_counting()
            one, lost_one = contended_updates(bench.store, 1, seconds)
            many, lost_many = contended_updates(bench.store, WRITERS, seconds)
        finally:
            bench.close()
    return {
        **result,
        "lost_updates": lost_one + lost_many,
        "updates_per_s_1_writer": one,
        "updates_per_s_16_writers": many,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="duration of each throughput phase (default 3)"
    )
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for engine in args.engines.split(","):
        began = time.monotonic()
        try:
            results[engine] = bench_engine(engine, args.seconds)
        except Exception as exc:
            results[engine] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"{engine:9s} {time.monotonic() - began:5.1f}s {results[engine]}", flush=True)
    print(json.dumps({"engines": results}))


if __name__ == "__main__":
    main()
