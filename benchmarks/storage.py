# Copyright 2026 stalwart contributors
"""Storage engines side by side: versioned-update throughput, lost updates, round trips.

    uv run python benchmarks/storage.py [--seconds 2.0] [--engines sqlite,redis]

Starts its own servers (tests/servers.py: redis-server, moto, secantusdb). For each engine:

- ``updates_per_s_1_writer`` / ``updates_per_s_16_writers``: read-modify-replace of one counter
  (get, then replace at the read version, retry on VersionConflict) for a fixed time by 1 and
  by 16 threads; successful replaces per second.
- ``lost_updates``: successful replaces minus the counter's final increase (must be 0).
- ``round_trips_per_{replace,create,increment}``: engine calls per successful operation, counted
  by each client's own instrumentation: SQLite's trace callback (statements), Redis
  ``INFO commandstats`` call totals (minus the INFO calls themselves), botocore ``before-send``
  events, PyMongo's CommandListener (started commands).

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


@contextlib.contextmanager
def redis_store() -> Iterator[Instrumented]:
    import redis  # noqa: PLC0415

    from stalwart.storage.redis import RedisStore  # noqa: PLC0415

    with redis_server() as server:
        client = redis.Redis.from_url(
            server.url, socket_timeout=10, socket_connect_timeout=5, max_connections=64
        )
        stats_client = redis.Redis.from_url(server.url, socket_timeout=10)

        def calls() -> int:
            # Every command the server ran, minus the INFO calls this function makes.
            stats = stats_client.info("commandstats")
            return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")

        store = RedisStore(client, prefix=f"bench{uuid.uuid4().hex[:8]}")
        try:
            yield Instrumented(store, calls, store.close)
        finally:
            client.close()
            stats_client.close()


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
