# Copyright 2026 stalwart contributors
"""Idempotency benchmark: stalwart vs AWS Lambda Powertools, on real servers, in one run.

    uv run python benchmarks/idempotency.py [--seconds 2]

Per engine (SQLite, Redis, DynamoDB on moto, MongoDB on secantusdb):
- store round trips of a first call and of a replay, counted on the engine's client (Redis:
  ``execute_command``; DynamoDB: botocore ``before-call`` events; MongoDB: pymongo command
  monitoring; SQLite: store calls, each one statement/transaction);
- executions per second of an idempotent sync function, a fresh key per call (claim +
  complete), and on Redis and DynamoDB the same for Powertools' ``idempotent_function`` with
  its Redis and DynamoDB persistence layers on the same servers;
- a storm: 200 concurrent identical POSTs (one key) to a FastAPI app on uvicorn (a separate
  process) backed by that engine; the app counts handler executions.
And on Redis: requests per second of a FastAPI POST on uvicorn with and without the layer (a
fresh key per request). Each app runs in its own uvicorn process; the load comes from ``wrk``
when it is on PATH (a separate, light C process), else from a Python asyncio HTTP/1.1 keep-alive
generator in this process (never in the server's); the output says which.

Floors, measured in the same interleaved slices so that machine load hits them alike (details
line): what redis-py itself allows with two round trips and no logic at all -- two plain
``SET``s per call (sync), and a FastAPI route doing two plain async ``SET``s per request --, the
same route doing its two ``SET``s on the Redis store's own transport (the ceiling of the HTTP
layer as built: everything between it and the idempotent route is the layer's work), two
round trips on a bare socket with prebuilt commands (the ceiling of any Python code making two
round trips on this machine), the Redis store's own create and replace scripts -- the fenced,
versioned claim and completion -- on a bare socket and, behind uvicorn, on the store's
transport, both with arguments encoded once (the ceilings of any layer keeping the store's
records: what the layer costs above them is its own Python), and the raw cost of one
``EVALSHA`` of the create script against one ``SET NX EX`` (client rate and the server's own
microseconds per call from ``INFO commandstats``). Also in the details: process CPU
microseconds per execution (stalwart and Powertools: the client-side cost, which decides when
the network is fast), the app server's CPU microseconds per HTTP request (the servers are
CPU-bound under this load, so the HTTP ratio is the ratio of those) and how many of them
CPython's cyclic garbage collector took (a route that waits on I/O keeps its request's objects
alive across collections; a route that never waits, like the bare one, pays none).

The last line is one JSON object (see the issue for its shape).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import _paths  # noqa: F401  # first: sys.path and AWS env (see benchmarks/_paths.py)

# isort: split

from _load import APP_PIDS, load, load_process, process_cpu_s, wrk_load
from servers import mongodb_server, moto_server, redis_server
from stalwart.idempotency import Idempotency, idempotent
from stalwart.storage import open_store

ENGINES = ("sqlite", "redis", "dynamodb", "mongodb")
# Powertools warns on every first call outside Lambda (no remaining-time context) and about
# its Redis layer's rename; neither matters to the measurement.
warnings.filterwarnings("ignore", module="aws_lambda_powertools")
warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*CachePersistenceLayer")
STORM = 200


def error(exc: BaseException) -> dict[str, str]:
    return {"error": f"{type(exc).__name__}: {exc}"[:300]}


# ---------------------------------------------------------------------------------------------
# Round-trip counting on the engines' clients
# ---------------------------------------------------------------------------------------------


class Calls:
    count = 0


def _mongo_listener() -> None:
    from pymongo import monitoring  # noqa: PLC0415

    ignored = {
        "hello",
        "ismaster",
        "isMaster",
        "ping",
        "endSessions",
        "saslStart",
        "saslContinue",
        "buildInfo",
    }

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name not in ignored:
                Calls.count += 1

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    monitoring.register(Listener())


def instrument(engine: str, store: Any) -> None:
    """Make ``Calls.count`` count requests that reach the engine."""
    if engine == "redis":
        # The store's own transport carries its commands (redis-py only for configurations the
        # transport cannot honour): count whichever one this store uses.
        target = store.transport if store.transport is not None else store.client
        name = "call" if store.transport is not None else "execute_command"
        original = getattr(target, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            Calls.count += 1
            return original(*args, **kwargs)

        setattr(target, name, counted)
    elif engine == "dynamodb":

        def on_call(**_: Any) -> None:
            Calls.count += 1

        store.client.meta.events.register("before-call.dynamodb", on_call)
    elif engine == "mongodb":
        pass  # the global command listener counts (registered before any client exists)
    else:  # sqlite: one statement (or one transaction) per store call
        for name in ("get", "create", "replace", "delete"):
            original_method = getattr(store, name)

            def counted_method(*args: Any, _m: Any = original_method, **kwargs: Any) -> Any:
                Calls.count += 1
                return _m(*args, **kwargs)

            setattr(store, name, counted_method)


def round_trips(engine: str, url: str) -> tuple[int, int]:
    store = open_store(url)
    try:
        instrument(engine, store)
        layer = Idempotency(store)

        @idempotent(layer, key_args=["order_id"])
        def charge(order_id: str, cents: int) -> dict[str, Any]:
            return {"order_id": order_id, "cents": cents}

        charge("warm-up", 1)  # connection set-up and script loading are not round trips here
        Calls.count = 0
        charge("rt-1", 100)
        first = Calls.count
        Calls.count = 0
        charge("rt-1", 100)
        return first, Calls.count
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# Executions per second
# ---------------------------------------------------------------------------------------------


SLICES = 6


CPU_US: dict[str, float] = {}
"""Process CPU microseconds per call of each contender measured by :func:`rates` (user +
system time of this process: the client's own cost, without the network's waiting)."""


def rates(calls: dict[str, Callable[[int], Any]], seconds: float) -> dict[str, float]:
    """Calls per second of each ``call(i)`` (fresh arguments every call).

    The contenders run in interleaved slices (order alternating) and the median slice counts,
    so load from other processes on the machine hits both alike. Their CPU cost per call is
    left in :data:`CPU_US`.
    """
    for call in calls.values():
        for i in range(20):
            call(-1 - i)  # warm-up: connections, scripts, tables
    slices: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    counter = 0
    order = list(calls)
    for _ in range(SLICES):
        for name in order:
            call = calls[name]
            n = 0
            cpu_start = time.process_time()
            start = time.perf_counter()
            deadline = start + seconds / SLICES
            while time.perf_counter() < deadline:
                call(counter)
                counter += 1
                n += 1
            slices[name].append(n / (time.perf_counter() - start))
            cpu[name].append((time.process_time() - cpu_start) / n * 1e6)
        order.reverse()
    for name, values in cpu.items():
        CPU_US[name] = round(statistics.median(values), 1)
    return {name: round(statistics.median(values), 1) for name, values in slices.items()}


@contextlib.contextmanager
def stalwart_job(url: str) -> Iterator[Callable[[int], Any]]:
    store = open_store(url)
    try:
        layer = Idempotency(store)
        run = uuid.uuid4().hex

        @idempotent(layer, key_args=["order_id"])
        def charge(order_id: str, cents: int) -> dict[str, Any]:
            return {"order_id": order_id, "cents": cents}

        yield lambda i: charge(f"{run}-{i}", 100)
    finally:
        store.close()


def powertools_job(persistence: Any) -> Callable[[int], Any]:
    from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415
        IdempotencyConfig,
        idempotent_function,
    )

    run = uuid.uuid4().hex

    @idempotent_function(
        data_keyword_argument="order", persistence_store=persistence, config=IdempotencyConfig()
    )
    def charge(order: dict[str, Any]) -> dict[str, Any]:
        return {"order_id": order["order_id"], "cents": order["cents"]}

    return lambda i: charge(order={"order_id": f"{run}-{i}", "cents": 100})


@contextlib.contextmanager
def powertools_redis(redis_url: str) -> Iterator[Callable[[int], Any]]:
    import redis  # noqa: PLC0415
    from aws_lambda_powertools.utilities.idempotency.persistence.redis import (  # noqa: PLC0415
        RedisCachePersistenceLayer,
    )

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    try:
        yield powertools_job(RedisCachePersistenceLayer(client=client))
    finally:
        client.close()


@contextlib.contextmanager
def powertools_dynamodb(endpoint: str) -> Iterator[Callable[[int], Any]]:
    import boto3  # noqa: PLC0415
    from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415
        DynamoDBPersistenceLayer,
    )
    from botocore.config import Config  # noqa: PLC0415

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(connect_timeout=2, read_timeout=5),
    )
    table = f"powertools-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    try:
        yield powertools_job(DynamoDBPersistenceLayer(table_name=table, boto3_client=client))
    finally:
        client.close()


@contextlib.contextmanager
def redis_floor(redis_url: str) -> Iterator[Callable[[int], Any]]:
    """Two plain round trips per call (SET NX EX, then SET), no logic: redis-py's own ceiling."""
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    run = uuid.uuid4().hex
    claim = json.dumps({"status": "IN_PROGRESS", "expiration": 0, "in_progress_expiration": 0})
    done = json.dumps({"status": "COMPLETED", "data": {"order_id": run, "cents": 100}})

    def call(i: int) -> None:
        key = f"floor:{run}-{i}"
        client.set(key, claim, nx=True, ex=86400)
        client.set(key, done, ex=86400)

    try:
        yield call
    finally:
        client.close()


@contextlib.contextmanager
def _raw_redis(redis_url: str) -> Iterator[Callable[..., bytes]]:
    """``round_trip(*args)`` on a bare socket: one command, its reply's raw bytes."""
    import socket  # noqa: PLC0415
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(redis_url)
    sock = socket.create_connection((parts.hostname, parts.port or 6379), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def round_trip(*args: bytes) -> bytes:
        sock.sendall(
            b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        )
        reply = sock.recv(65536)
        if not reply:
            raise ConnectionError("redis closed the connection")
        if reply[:1] == b"-":
            raise RuntimeError(f"redis error: {reply!r}")
        return reply

    try:
        yield round_trip
    finally:
        sock.close()


@contextlib.contextmanager
def raw_socket_floor(redis_url: str) -> Iterator[Callable[[int], Any]]:
    """Two round trips per call on a bare socket with prebuilt commands, no client library and
    no logic: the ceiling of anything that makes two round trips from Python on this machine."""
    run = uuid.uuid4().hex.encode()
    claim = json.dumps({"status": "IN_PROGRESS", "expiration": 0}).encode()
    done = json.dumps({"status": "COMPLETED", "data": {"cents": 100}}).encode()
    with _raw_redis(redis_url) as round_trip:

        def call(i: int) -> None:
            key = b"raw:%s-%d" % (run, i)
            round_trip(b"SET", key, claim, b"NX", b"EX", b"86400")
            round_trip(b"SET", key, done, b"EX", b"86400")

        yield call


@contextlib.contextmanager
def raw_scripts_floor(redis_url: str) -> Iterator[Callable[[int], Any]]:
    """The Redis store's own create and replace scripts (the claim and the completion of a
    fenced, versioned record) on a bare socket, arguments encoded once: the ceiling of any
    Python layer keeping the store's records, on this machine."""
    from stalwart.storage._redis_scripts import CREATE, REPLACE  # noqa: PLC0415

    run = uuid.uuid4().hex.encode()
    now = time.time()
    stamps = (repr(now).encode(), repr(now + 86400).encode(), b"86401000")
    claim = json.dumps({"status": "IN_PROGRESS", "owner": "o" * 24, "lease_expires_at": now})
    done = json.dumps({"status": "COMPLETED", "owner": "o" * 24, "result": {"cents": 100}})
    with _raw_redis(redis_url) as round_trip:
        create, replace = (
            round_trip(b"SCRIPT", b"LOAD", source.encode()).split(b"\r\n")[1]
            for source in (CREATE, REPLACE)
        )

        def call(i: int) -> None:
            tag = b"{raw:%s-%d}" % (run, i)
            keys = (b"2", tag + b"r:", tag + b"i")
            token = os.urandom(8).hex().encode()
            claim_args = (stamps[0], claim.encode(), stamps[1], stamps[2], b"", token)
            round_trip(b"EVALSHA", create, *keys, *claim_args)
            done_args = (stamps[0], done.encode(), stamps[1], stamps[2], b"", token, b"1", b"2")
            round_trip(b"EVALSHA", replace, *keys, *done_args)

        yield call


def evalsha_vs_set(url: str, seconds: float) -> dict[str, Any]:
    """One EVALSHA of the store's create script vs one SET NX EX, same client and payload:
    round trips per second (interleaved slices) and the server's microseconds per call."""
    import redis  # noqa: PLC0415

    from stalwart.storage._redis_scripts import CREATE  # noqa: PLC0415

    client = redis.Redis.from_url(url.split("?", maxsplit=1)[0], socket_timeout=5)
    create = client.register_script(CREATE)
    run = uuid.uuid4().hex
    payload = json.dumps(
        {"status": "IN_PROGRESS", "owner": run[:24], "lease_expires_at": 1.0, "fingerprint": run}
    )

    def evalsha(i: int) -> None:
        key = f"{{raw:{run}-{i}}}"
        now = time.time()
        create(
            keys=[key + "r:", key + "i"],
            args=[repr(now), payload, repr(now + 86400), "86401000", "", uuid.uuid4().hex],
        )

    def set_nx(i: int) -> None:
        client.set(f"raw:{run}-{i}", payload, nx=True, ex=86400)

    try:
        result: dict[str, Any] = rates(
            {"evalsha_create_per_s": evalsha, "set_nx_ex_per_s": set_nx}, seconds
        )
        client.config_resetstat()
        for i in range(2000):
            evalsha(-100 - i)
            set_nx(-100 - i)
        stats = client.info("commandstats")
        result["server_us_per_evalsha_create"] = stats["cmdstat_evalsha"]["usec_per_call"]
        result["server_us_per_set"] = stats["cmdstat_set"]["usec_per_call"]
        return result
    finally:
        client.close()


def execution_rates(engine: str, url: str, seconds: float) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        calls = {"executions_per_s": stack.enter_context(stalwart_job(url))}
        try:
            if engine == "redis":
                redis_url = url.split("?", maxsplit=1)[0]
                calls["powertools_executions_per_s"] = stack.enter_context(
                    powertools_redis(redis_url)
                )
                calls["floor_two_plain_sets_per_s"] = stack.enter_context(redis_floor(redis_url))
                calls["floor_two_raw_socket_round_trips_per_s"] = stack.enter_context(
                    raw_socket_floor(redis_url)
                )
                calls["floor_two_store_scripts_raw_socket_per_s"] = stack.enter_context(
                    raw_scripts_floor(redis_url)
                )
            elif engine == "dynamodb":
                endpoint = url.split("endpoint_url=")[1].split("&", maxsplit=1)[0]
                calls["powertools_executions_per_s"] = stack.enter_context(
                    powertools_dynamodb(endpoint)
                )
        except Exception as exc:
            entry["powertools_error"] = error(exc)["error"]
        entry.update(rates(calls, seconds))
    for name in ("executions_per_s", "powertools_executions_per_s"):
        if name in calls:
            entry[name.replace("_per_s", "_cpu_us")] = CPU_US[name]
    return entry


# ---------------------------------------------------------------------------------------------
# HTTP: a FastAPI app on uvicorn in a separate process
# ---------------------------------------------------------------------------------------------


type SetKey = Callable[[str, str, bool], Awaitable[Any]]
"""``set(key, value, only_if_absent)`` with a day's expiry, on some Redis client."""


def _two_sets_route(
    app: Any, router: Any, executions: Counter[str], set_key: SetKey, close: Callable[[], Any]
) -> None:
    """A route making the idempotency layer's two round trips with ``set_key`` and nothing
    else: the ceiling of any layer built on that client."""
    from fastapi import Header  # noqa: PLC0415

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        yield
        await close()

    app.router.lifespan_context = lifespan

    @router.post("/orders", status_code=201)
    async def create_order_floor(
        order: dict[str, Any],
        # Not Annotated: annotations are strings here and Header is a local import.
        idempotency_key: str = Header(default=""),
    ) -> dict[str, Any]:
        key = "floor:" + idempotency_key
        await set_key(key, '{"status":"IN_PROGRESS"}', True)  # noqa: FBT003
        executions["orders"] += 1
        reply = {"ok": True, "item": order.get("item")}
        await set_key(key, json.dumps(reply), False)  # noqa: FBT003
        return reply


def _redis_py_floor_routes(app: Any, router: Any, store_url: str, executions: Counter[str]) -> None:
    """Two plain async redis-py ``SET``s per request."""
    import redis.asyncio  # noqa: PLC0415

    client = redis.asyncio.Redis.from_url(
        store_url.split("?", maxsplit=1)[0], socket_timeout=5, socket_connect_timeout=2
    )

    async def set_key(key: str, value: str, only_if_absent: bool) -> Any:  # noqa: FBT001
        return await client.set(key, value, nx=only_if_absent, ex=86400)

    _two_sets_route(app, router, executions, set_key, client.aclose)


def _transport_floor_routes(
    app: Any, router: Any, store_url: str, executions: Counter[str]
) -> None:
    """The same two ``SET``s on the Redis store's own transport: the ceiling of the
    idempotency layer as built (everything between it and the layer is the layer's work)."""
    from stalwart.storage import open_async_store  # noqa: PLC0415
    from stalwart.storage._redis_wire import pack  # noqa: PLC0415
    from stalwart.storage.redis import AsyncRedisStore  # noqa: PLC0415

    store = open_async_store(store_url)
    assert isinstance(store, AsyncRedisStore)
    transport = store.transport
    assert transport is not None

    async def set_key(key: str, value: str, only_if_absent: bool) -> Any:  # noqa: FBT001
        nx = ["NX"] if only_if_absent else []
        return await transport.call(pack(["SET", key, value, *nx, "EX", "86400"]))

    _two_sets_route(app, router, executions, set_key, store.close)


def _scripts_floor_routes(app: Any, router: Any, store_url: str, executions: Counter[str]) -> None:
    """The Redis store's own two scripts -- create, then replace at version 1 -- on its
    transport, with their arguments encoded once at start-up (only the key and the write token
    change). The ceiling of any layer keeping the store's fenced, versioned records: what the
    idempotent route costs above it is encoding, decoding and the layer's own logic."""
    import hashlib  # noqa: PLC0415

    from stalwart.storage import Key, open_async_store  # noqa: PLC0415
    from stalwart.storage._redis_codec import (  # noqa: PLC0415
        Layout,
        ScriptName,
        create_call,
        replace_call,
    )
    from stalwart.storage._redis_scripts import SCRIPTS  # noqa: PLC0415
    from stalwart.storage._redis_wire import (  # noqa: PLC0415
        WireScript,
        check,
        is_noscript,
        load_and_resend,
    )
    from stalwart.storage.redis import AsyncRedisStore  # noqa: PLC0415

    store = open_async_store(store_url)
    assert isinstance(store, AsyncRedisStore)
    transport = store.transport
    assert transport is not None
    layout = Layout(store.prefix)

    def script(name: ScriptName) -> WireScript:
        source = SCRIPTS[name]
        return WireScript.of(hashlib.sha1(source.encode()).hexdigest(), source)

    create_script, replace_script = script(ScriptName.CREATE), script(ScriptName.REPLACE)
    now = time.time()
    claim = {"status": "IN_PROGRESS", "owner": "o" * 24, "lease_expires_at": now + 60}
    done = {**claim, "result": {"status": 201, "headers": [], "body": "{}", "encoding": "utf-8"}}
    sample = Key("scripts-floor")
    create_args = create_call(layout, sample, claim, ttl=86400, now=now).args
    replace_args = replace_call(layout, sample, done, expected_version=1, ttl=86400, now=now).args

    async def run(script: WireScript, keys: tuple[bytes, bytes], args: tuple[Any, ...]) -> None:
        # args[5] is the write token of both scripts: a fresh one per call, as the store does.
        command = script.command(keys, (*args[:5], os.urandom(8).hex(), *args[6:]))
        reply = await transport.call(command)
        if is_noscript(reply):  # the first call of each script
            reply = await load_and_resend(transport, script, command)
        check(reply)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        yield
        await store.close()

    app.router.lifespan_context = lifespan

    @router.post("/orders", status_code=201)
    async def create_order_scripts_floor(order: dict[str, Any]) -> dict[str, Any]:
        keys = layout.keys(Key("scripts-floor:" + os.urandom(8).hex()))
        await run(create_script, keys, create_args)
        executions["orders"] += 1
        await run(replace_script, keys, replace_args)
        return {"ok": True, "item": order.get("item")}


def build_app(mode: str, store_url: str, handler_s: float) -> Any:
    from fastapi import APIRouter, FastAPI  # noqa: PLC0415

    from stalwart.idempotency import AsyncIdempotency  # noqa: PLC0415
    from stalwart.idempotency.fastapi import idempotent_route_class  # noqa: PLC0415
    from stalwart.storage import open_async_store  # noqa: PLC0415

    executions = Counter[str]()
    app = FastAPI()
    if mode == "idempotent":
        store = open_async_store(store_url)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any) -> Any:
            yield
            await store.close()

        app.router.lifespan_context = lifespan
        router = APIRouter(route_class=idempotent_route_class(AsyncIdempotency(store)))
    else:
        router = APIRouter()

    if mode == "floor":
        _redis_py_floor_routes(app, router, store_url, executions)
    elif mode == "wire_floor":
        _transport_floor_routes(app, router, store_url, executions)
    elif mode == "scripts_floor":
        _scripts_floor_routes(app, router, store_url, executions)
    else:

        @router.post("/orders", status_code=201)
        async def create_order(order: dict[str, Any]) -> dict[str, Any]:
            executions["orders"] += 1
            if handler_s:
                await asyncio.sleep(handler_s)
            return {"ok": True, "item": order.get("item")}

    @router.get("/executions")
    async def count() -> dict[str, int]:
        return {"orders": executions["orders"]}

    @router.get("/gc")
    async def gc_spent() -> dict[str, float]:
        return dict(GC_SPENT)

    app.include_router(router)
    return app


GC_SPENT: dict[str, float] = {"seconds": 0.0, "collections": 0, "full_collections": 0}
"""CPython's cyclic garbage collector in an app process: time and runs (see _gc_clock)."""
_GC_STARTED = [0.0]


def _gc_clock(phase: str, info: dict[str, Any]) -> None:
    """A ``gc.callbacks`` hook timing every collection. Requests that wait on I/O keep
    their objects alive across collections; the full collections this brings on walk the
    whole heap, a cost the bare route (which never waits) does not pay."""
    if phase == "start":
        _GC_STARTED[0] = time.perf_counter()
        return
    GC_SPENT["seconds"] += time.perf_counter() - _GC_STARTED[0]
    GC_SPENT["collections"] += 1
    GC_SPENT["full_collections"] += info["generation"] == 2


def serve(mode: str, store_url: str, port: int, handler_s: float) -> None:
    import gc  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    gc.callbacks.append(_gc_clock)

    uvicorn.run(
        build_app(mode, store_url, handler_s),
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
        backlog=2048,
        # Pinned, so runs compare across machines whether or not uvloop/httptools are
        # installed (uvloop measured here: the same ratios within noise).
        loop="asyncio",
        http="h11",
    )


@contextlib.contextmanager
def app_process(mode: str, store_url: str, handler_s: float = 0.0) -> Iterator[int]:
    """This script's app ``mode`` in its own uvicorn process; yields its port."""
    with load_process(
        __file__, "--serve", mode, "--store-url", store_url, "--handler-s", str(handler_s)
    ) as port:
        yield port


def gc_seconds(port: int) -> float:
    """Seconds the app process has spent in CPython's cyclic garbage collector so far."""
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/gc", timeout=5) as reply:
        return float(json.loads(reply.read())["seconds"])


def http_rates(redis_url: str, seconds: float) -> dict[str, Any]:
    """Bare, idempotent and floor apps, each in its own uvicorn process, measured in
    interleaved rounds (order alternating) so machine load hits them alike."""
    import shutil  # noqa: PLC0415

    use_wrk = shutil.which("wrk") is not None

    server_cpu_us: dict[str, list[float]] = {
        "bare": [],
        "idempotent": [],
        "floor": [],
        "wire_floor": [],
        "scripts_floor": [],
    }
    server_gc_us: dict[str, list[float]] = {name: [] for name in server_cpu_us}

    def measure(port: int, *, keyed: bool) -> float:
        if use_wrk:
            return wrk_load(port, seconds, keyed=keyed)
        return asyncio.run(load(port, seconds, keyed=keyed))

    def measured(name: str, port: int) -> float:
        gc_before = gc_seconds(port)
        before, start = process_cpu_s(APP_PIDS[port]), time.perf_counter()
        rps = measure(port, keyed=name != "bare")
        requests = rps * (time.perf_counter() - start)
        server_cpu_us[name].append((process_cpu_s(APP_PIDS[port]) - before) / requests * 1e6)
        server_gc_us[name].append((gc_seconds(port) - gc_before) / requests * 1e6)
        return rps

    results: dict[str, list[float]] = {name: [] for name in server_cpu_us}
    with (
        app_process("bare", redis_url) as bare_port,
        app_process("idempotent", redis_url) as keyed_port,
        app_process("floor", redis_url) as floor_port,
        app_process("wire_floor", redis_url) as wire_floor_port,
        app_process("scripts_floor", redis_url) as scripts_floor_port,
    ):
        ports = {
            "bare": bare_port,
            "idempotent": keyed_port,
            "floor": floor_port,
            "wire_floor": wire_floor_port,
            "scripts_floor": scripts_floor_port,
        }
        for name, port in ports.items():  # warm-up: imports, connections, scripts
            asyncio.run(load(port, 0.2, keyed=name != "bare"))
        order = list(ports)
        for _ in range(3):
            for name in order:
                results[name].append(measured(name, ports[name]))
            order.reverse()
    return {
        "bare_rps": round(statistics.median(results["bare"]), 1),
        "idempotent_rps": round(statistics.median(results["idempotent"]), 1),
        "floor_rps": round(statistics.median(results["floor"]), 1),
        "wire_floor_rps": round(statistics.median(results["wire_floor"]), 1),
        "scripts_floor_rps": round(statistics.median(results["scripts_floor"]), 1),
        "server_cpu_us_per_request": {
            name: round(statistics.median(values), 1) for name, values in server_cpu_us.items()
        },
        "server_gc_us_per_request": {
            name: round(statistics.median(values), 1) for name, values in server_gc_us.items()
        },
        "load_generator": (
            "wrk -t1 -c16 (separate process)"
            if use_wrk
            else "python asyncio HTTP/1.1 keep-alive, 16 connections, in the benchmark process "
            "(wrk not on PATH)"
        )
        + "; apps on uvicorn with the asyncio loop and h11",
    }


async def storm(port: int) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    key = uuid.uuid4().hex
    limits = httpx.Limits(max_connections=STORM)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
    ) as client:
        start = asyncio.Event()

        async def one() -> int:
            await start.wait()
            response = await client.post(
                "/orders", json={"item": "tea"}, headers={"Idempotency-Key": key}
            )
            return response.status_code

        tasks = [asyncio.create_task(one()) for _ in range(STORM)]
        await asyncio.sleep(0)
        start.set()
        statuses = Counter(await asyncio.gather(*tasks))
        executions = (await client.get("/executions")).json()["orders"]
    return {
        "requests": STORM,
        "executions": executions,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def engine_urls(stack: contextlib.ExitStack, tmp: Path) -> dict[str, str | BaseException]:
    urls: dict[str, str | BaseException] = {}
    name = f"bench{uuid.uuid4().hex[:8]}"
    urls["sqlite"] = f"sqlite:///{tmp / 'bench.db'}?table={name}"
    try:
        redis_srv = stack.enter_context(redis_server())
        urls["redis"] = f"{redis_srv.url}?prefix={name}"
    except Exception as exc:
        urls["redis"] = exc
    try:
        moto = stack.enter_context(moto_server())
        urls["dynamodb"] = f"dynamodb://{name}?region=us-east-1&endpoint_url={moto.url}&create=true"
    except Exception as exc:
        urls["dynamodb"] = exc
    try:
        mongo = stack.enter_context(mongodb_server())
        base = mongo.url.split("/?")[0]
        urls["mongodb"] = (
            f"{base}/stalwart_bench?collection={name}&directConnection=true&create=true"
        )
    except Exception as exc:
        urls["mongodb"] = exc
    return urls


def move_details(
    engine: str, url: str, entry: dict[str, Any], floors: dict[str, Any], seconds: float
) -> None:
    """Move the measurements beyond the issue's shape from ``entry`` into ``floors``."""
    cpu_us = floors.setdefault("cpu_us_per_execution", {})
    for name, who in (
        ("executions_cpu_us", "stalwart"),
        ("powertools_executions_cpu_us", "powertools"),
    ):
        if name in entry:
            cpu_us.setdefault(engine, {})[who] = entry.pop(name)
    if "floor_two_plain_sets_per_s" in entry:
        floors["redis_two_plain_sets_per_s"] = entry.pop("floor_two_plain_sets_per_s")
        floors["redis_two_raw_socket_round_trips_per_s"] = entry.pop(
            "floor_two_raw_socket_round_trips_per_s"
        )
        floors["redis_two_store_scripts_raw_socket_per_s"] = entry.pop(
            "floor_two_store_scripts_raw_socket_per_s"
        )
        try:
            floors["redis_raw"] = evalsha_vs_set(url, seconds)
        except Exception as exc:
            floors["redis_raw"] = error(exc)


def bench(seconds: float) -> dict[str, Any]:
    import tempfile  # noqa: PLC0415

    _mongo_listener()
    result: dict[str, Any] = {"engines": {}, "http": {}, "storm": {}, "floors": {}}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        urls = engine_urls(stack, Path(tmp))
        for engine in ENGINES:
            url = urls[engine]
            if isinstance(url, BaseException):
                result["engines"][engine] = error(url)
                result["storm"][engine] = error(url)
                continue
            entry: dict[str, Any] = {}
            try:
                entry["first_call_round_trips"], entry["replay_round_trips"] = round_trips(
                    engine, url
                )
                entry.update(execution_rates(engine, url, seconds))
            except Exception as exc:
                entry.update(error(exc))
            print(engine, json.dumps(entry), flush=True)
            move_details(engine, url, entry, result["floors"], seconds)
            result["engines"][engine] = entry
            try:
                with app_process("idempotent", url, handler_s=0.2) as port:
                    result["storm"][engine] = asyncio.run(storm(port))
            except Exception as exc:
                result["storm"][engine] = error(exc)
            print(engine, "storm", json.dumps(result["storm"][engine]), flush=True)
        redis_url = urls["redis"]
        if isinstance(redis_url, BaseException):
            result["http"] = error(redis_url)
        else:
            try:
                result["http"] = http_rates(redis_url, seconds)
            except Exception as exc:
                result["http"] = error(exc)
    return result


def layer_overhead_us() -> float:
    """Pure Python cost of the layer per first call: a store that answers instantly."""
    from stalwart.storage import Record  # noqa: PLC0415

    class InstantStore:
        def create(self, key: Any, data: Any, **_: Any) -> Record:
            return Record(key, data, 1, None)

        def replace(self, key: Any, data: Any, *, expected_version: int, **_: Any) -> Any:
            return Record(key, data, expected_version + 1, None)

    layer = Idempotency(InstantStore())  # type: ignore[arg-type]

    @idempotent(layer, key_args=["order_id"])
    def charge(order_id: str, cents: int) -> dict[str, Any]:
        return {"order_id": order_id, "cents": cents}

    best = float("inf")
    for attempt in range(5):
        start = time.perf_counter()
        for i in range(2000):
            charge(f"{attempt}-{i}", 100)
        best = min(best, (time.perf_counter() - start) / 2000 * 1e6)
    return round(best, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--serve", choices=["bare", "idempotent", "floor", "wire_floor", "scripts_floor"]
    )
    parser.add_argument("--store-url", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--handler-s", type=float, default=0.0)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.store_url, args.port, args.handler_s)
        return
    result = bench(args.seconds)
    # Details first; the last line keeps exactly the shape.
    details = {
        "storm_statuses": {
            engine: entry.pop("statuses", None) for engine, entry in result["storm"].items()
        },
        "http_load_generator": result["http"].pop("load_generator", None),
        "http_floor_rps_two_plain_async_sets": result["http"].pop("floor_rps", None),
        "http_floor_rps_two_sets_on_the_store_transport": result["http"].pop(
            "wire_floor_rps", None
        ),
        "http_floor_rps_store_scripts_preencoded": result["http"].pop("scripts_floor_rps", None),
        "http_server_cpu_us_per_request": result["http"].pop("server_cpu_us_per_request", None),
        "http_server_gc_us_per_request": result["http"].pop("server_gc_us_per_request", None),
        "floors": result.pop("floors"),
        "layer_overhead_us_per_first_call": layer_overhead_us(),
    }
    print("details", json.dumps(details))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
