# Copyright 2026 stalwart contributors
"""The Redis engine's own transport (``_redis_wire``) against a real redis-server.

What it must keep from redis-py: the same settings (db, credentials, client name, timeouts,
retries), the same errors, NOSCRIPT recovery, and a reply never handed to the wrong caller,
including under cancellation and dropped connections. What it must not do: serve a client whose
configuration it cannot honour (those stores keep redis-py, and must behave the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.asyncio
import redis.sentinel

from servers import RedisProcess, own_redis_server
from stalwart.storage import (
    AlreadyExists,
    Create,
    Key,
    StorageError,
    StoreConfigurationError,
    StoreUnavailable,
    VersionConflict,
)
from stalwart.storage._redis_wire import Unsupported, WireOptions, pack, wire_options
from stalwart.storage.redis import (
    AsyncRedisStore,
    RedisStore,
    async_store_from_url,
    store_from_url,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from servers import RunningServer


def unique_name() -> str:
    return f"w{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin(redis_srv: RunningServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_srv.url, socket_timeout=5)
    yield client
    client.close()


def clients_named(admin: redis.Redis, name: str) -> int:
    return sum(1 for client in admin.client_list() if client.get("name") == name)


def kill_named(admin: redis.Redis, name: str) -> int:
    """Drop every connection named ``name`` (server side); returns how many."""
    ids = [client["id"] for client in admin.client_list() if client.get("name") == name]
    for client_id in ids:
        admin.client_kill_filter(_id=client_id)
    return len(ids)


# ---------------------------------------------------------------------------------------------
# Which clients the wire serves
# ---------------------------------------------------------------------------------------------


def test_plain_settings_are_carried_over(redis_srv: RunningServer):
    url = f"{redis_srv.url.rsplit('/', 1)[0]}/3?prefix=x&timeout=2.5&client_name=c1"
    store = store_from_url(url)
    assert isinstance(store, RedisStore)
    assert store.transport is not None
    options = store.transport.options
    assert (options.host, options.port, options.db) == ("127.0.0.1", redis_srv.port, 3)
    assert (options.timeout, options.connect_timeout, options.client_name) == (2.5, 2.0, "c1")
    assert options.health_check_interval == 30
    store.close()
    pool = redis.Redis(unix_socket_path="/tmp/r.sock", password="p").connection_pool
    assert wire_options(pool) == WireOptions(
        path="/tmp/r.sock",
        password="p",
        timeout=5.0,
        keepalive=False,
        max_connections=pool.max_connections,
        pool_timeout=0,  # redis-py's plain pool fails at once when full: so does the wire
    )


@pytest.mark.parametrize(
    ("client", "setting"),
    [
        pytest.param(lambda: redis.Redis(protocol=3), "protocol=3", id="resp3"),
        pytest.param(
            lambda: redis.Redis(credential_provider=redis.UsernamePasswordCredentialProvider("u")),
            "credential_provider",
            id="credential-provider",
        ),
        pytest.param(
            lambda: redis.Redis(retry_on_error=[redis.exceptions.BusyLoadingError]),
            "retry_on_error",
            id="retry-on-error",
        ),
        pytest.param(
            lambda: redis.Redis(ssl=True, ssl_validate_ocsp=True), "ssl_validate_ocsp", id="ocsp"
        ),
        pytest.param(
            lambda: redis.asyncio.Redis(protocol=3, ssl=True), "protocol=3", id="async-resp3"
        ),
        pytest.param(
            lambda: redis.Redis(
                connection_pool=redis.sentinel.SentinelConnectionPool(
                    "m", redis.sentinel.Sentinel([])
                )
            ),
            "SentinelConnectionPool",
            id="sentinel",
        ),
    ],
)
def test_configurations_it_cannot_honour_stay_on_redis_py_or_are_refused(client, setting):
    """``transport="auto"`` hands them to redis-py; ``"stalwart"`` refuses them, naming the
    setting and listing what the transport supports."""
    made = client()
    unsupported = wire_options(made.connection_pool)
    assert isinstance(unsupported, Unsupported)
    assert setting in str(unsupported)
    store_class = AsyncRedisStore if isinstance(made, redis.asyncio.Redis) else RedisStore
    assert store_class(made, prefix="x").transport is None  # type: ignore[arg-type]
    with pytest.raises(StoreConfigurationError, match=rf"(?s){setting}.*supports.*ssl_ca_certs"):
        store_class(made, prefix="x", transport="stalwart")  # type: ignore[arg-type]


async def test_a_redis_py_served_store_behaves_the_same(redis_srv: RunningServer):
    """RESP3 keeps redis-py for every command: the store's semantics must not change."""
    sync_client = redis.Redis.from_url(redis_srv.url, protocol=3)
    async_client = redis.asyncio.Redis.from_url(redis_srv.url, protocol=3)
    sync_store = RedisStore(sync_client, prefix=unique_name())
    async_store = AsyncRedisStore(async_client, prefix=unique_name())
    assert sync_store.transport is None
    assert async_store.transport is None
    try:
        key = Key("p", "a")
        assert sync_store.create(key, {"n": 1}).version == 1
        with pytest.raises(AlreadyExists):
            sync_store.create(key, {"n": 2})
        assert sync_store.increment(key, "n").data == {"n": 2}
        with pytest.raises(VersionConflict):
            sync_store.replace(key, {}, expected_version=1)
        assert [r.key for r in sync_store.query("p").records] == [key]
        assert sync_store.delete(key, expected_version=2) is True

        assert (await async_store.create(key, {"n": 1})).version == 1
        assert (await async_store.get(key)) is not None
        assert len(await async_store.transact([Create(Key("p", "b"), {})])) == 1
        assert await async_store.delete(key) is True
    finally:
        sync_store.close()
        await async_store.close()
        sync_client.close()
        await async_client.aclose()


# ---------------------------------------------------------------------------------------------
# Settings that change what goes over the wire
# ---------------------------------------------------------------------------------------------


async def test_database_credentials_and_name_are_used(redis_srv: RunningServer, admin):
    user, password = unique_name(), "s3cret"
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
    )
    base = redis_srv.url.rsplit("/", 1)[0].replace("redis://", f"redis://{user}:{password}@")
    prefix, name = unique_name(), unique_name()
    try:
        sync_store = store_from_url(f"{base}/5?prefix={prefix}&client_name={name}")
        async_store = async_store_from_url(f"{base}/5?prefix={prefix}&client_name={name}")
        sync_store.create(Key("p", "s"), {})
        await async_store.create(Key("p", "a"), {})
        assert clients_named(admin, name) == 2
        listed = [c for c in admin.client_list() if c.get("name") == name]
        assert {c["user"] for c in listed} == {user}
        assert {c["db"] for c in listed} == {"5"}
        db5 = redis.Redis.from_url(f"{redis_srv.url.rsplit('/', 1)[0]}/5")
        assert len(db5.keys(f"{{{prefix}:*")) == 3  # two records and the partition index
        assert admin.keys(f"{{{prefix}:*") == []
        db5.close()
        sync_store.close()
        await async_store.close()

        bad = base.replace(f":{password}@", ":wrong@")
        refused_sync = store_from_url(f"{bad}/0?prefix=x")
        with pytest.raises(StorageError, match="credentials"):
            refused_sync.get(Key("p"))
        refused_sync.close()
        refused_async = async_store_from_url(f"{bad}/0?prefix=x")
        with pytest.raises(StorageError, match="credentials"):
            await refused_async.get(Key("p"))
        await refused_async.close()
    finally:
        admin.acl_deluser(user)


# ---------------------------------------------------------------------------------------------
# Failures: timeouts, dropped connections, closed stores
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for sock in accepted:
            sock.close()
        listener.close()


async def get_fails(
    mode: str, url: str, match: str, error: type[Exception] = StoreUnavailable
) -> None:
    """A ``get`` on a store of ``url`` (sync on a worker thread, or async) raises ``error``."""
    if mode == "sync":
        store = store_from_url(url)
        with pytest.raises(error, match=match):
            await asyncio.to_thread(store.get, Key("p"))
        store.close()
    else:
        async_store = async_store_from_url(url)
        with pytest.raises(error, match=match):
            await async_store.get(Key("p"))
        await async_store.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_server_that_never_answers_times_out(mode: str):
    with silent_server() as port:
        started = time.monotonic()
        await get_fails(mode, f"redis://127.0.0.1:{port}/0?prefix=x&timeout=0.3", "Timeout")
        assert 0.25 < time.monotonic() - started < 3


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_nothing_listening_is_unavailable(mode: str):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    await get_fails(mode, f"redis://127.0.0.1:{port}/0?prefix=x", "connecting")


async def test_async_store_reconnects_after_the_server_drops_it(redis_srv: RunningServer, admin):
    name = unique_name()
    store = async_store_from_url(f"{redis_srv.url}?prefix={unique_name()}&client_name={name}")
    try:
        await store.create(Key("p", "1"), {})
        for attempt in range(3):
            assert kill_named(admin, name) == 1
            await asyncio.sleep(0.05)  # the event loop sees the EOF
            # The dead connection is noticed before sending: the call succeeds on a new one.
            assert (await store.get(Key("p", "1"))) is not None, attempt
        assert clients_named(admin, name) == 1
    finally:
        await store.close()


def test_sync_store_discards_a_dropped_connection_and_checks_idle_ones(
    redis_srv: RunningServer, admin
):
    name = unique_name()
    store = store_from_url(
        f"{redis_srv.url}?prefix={unique_name()}&client_name={name}&health_check_interval=1"
    )
    try:
        store.create(Key("p", "1"), {})
        for attempt in range(3):
            assert kill_named(admin, name) == 1
            time.sleep(0.05)  # the server's close reaches the client
            # The pooled socket is seen closed before it is used: the call takes a new one.
            assert store.get(Key("p", "1")) is not None, attempt
        assert kill_named(admin, name) == 1
        time.sleep(1.2)
        # Idle past the interval: checked (and PINGed) first, replaced before the command.
        assert store.get(Key("p", "1")) is not None
        assert clients_named(admin, name) == 1
    finally:
        store.close()


async def test_retries_configured_in_the_url_resend_after_a_drop(redis_srv: RunningServer, admin):
    name = unique_name()
    store = store_from_url(f"{redis_srv.url}?prefix={unique_name()}&retries=2&client_name={name}")
    try:
        store.create(Key("p", "1"), {"n": 0})
        assert kill_named(admin, name) == 1
        assert store.increment(Key("p", "1"), "n").data == {"n": 1}
    finally:
        store.close()


async def test_closed_stores_refuse_calls(redis_srv: RunningServer):
    sync_store = store_from_url(f"{redis_srv.url}?prefix=x")
    async_store = async_store_from_url(f"{redis_srv.url}?prefix=x")
    sync_store.get(Key("p"))
    await async_store.get(Key("p"))
    sync_store.close()
    await async_store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        sync_store.get(Key("p"))
    with pytest.raises(StoreUnavailable, match="closed"):
        await async_store.get(Key("p"))


async def test_stores_dropped_without_close_release_their_sockets(redis_srv: RunningServer, admin):
    name = unique_name()
    client = redis.Redis.from_url(redis_srv.url)

    def use_and_drop() -> None:
        dropped = RedisStore(client, prefix="x")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: dropped.get(Key("p")), range(40)))

    use_and_drop()
    gc.collect()  # a ResourceWarning here would fail the test (warnings are errors)
    client.close()
    async_store = async_store_from_url(f"{redis_srv.url}?prefix=x&client_name={name}")
    await async_store.get(Key("p"))
    del async_store
    gc.collect()
    await asyncio.sleep(0.05)
    assert clients_named(admin, name) == 0


# ---------------------------------------------------------------------------------------------
# Concurrency: replies go to their own callers
# ---------------------------------------------------------------------------------------------


async def concurrent_calls_get_their_own_replies(store: AsyncRedisStore, count: int) -> None:
    """``count`` concurrent creates, gets and increments: each caller sees its own reply."""
    keys = [Key("p", f"k{i}") for i in range(count)]
    await asyncio.gather(*(store.create(key, {"i": i}) for i, key in enumerate(keys)))
    records = await asyncio.gather(*(store.get(key) for key in keys))
    assert [r.data["i"] if r else None for r in records] == list(range(count))
    counter = Key("p", "n")
    await asyncio.gather(*(store.increment(counter, "n") for _ in range(count)))
    final = await store.get(counter)
    assert final is not None
    assert final.data == {"n": count}


@pytest.mark.parametrize("round_", range(3))
async def test_async_calls_share_one_pipelined_connection(redis_srv: RunningServer, admin, round_):
    name = unique_name()
    store = async_store_from_url(f"{redis_srv.url}?prefix={unique_name()}&client_name={name}")
    try:
        assert isinstance(store, AsyncRedisStore)
        await concurrent_calls_get_their_own_replies(store, 300)
        assert clients_named(admin, name) == 1, round_
    finally:
        await store.close()


@pytest.mark.parametrize("round_", range(3))
async def test_cancelled_callers_never_shift_replies(redis_srv: RunningServer, round_):
    store = async_store_from_url(f"{redis_srv.url}?prefix={unique_name()}")
    try:
        keys = [Key("p", f"k{i}") for i in range(200)]
        await asyncio.gather(*(store.create(key, {"i": i}) for i, key in enumerate(keys)))
        tasks = [asyncio.create_task(store.get(key)) for key in keys]
        await asyncio.sleep(0)  # every request written
        cancelled = set(random.Random(round_).sample(range(200), 80))
        for index in cancelled:
            tasks[index].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for index, result in enumerate(results):
            if index in cancelled and isinstance(result, asyncio.CancelledError):
                continue
            assert not isinstance(result, BaseException), result
            assert result is not None
            assert result.data == {"i": index}
        again = await asyncio.gather(*(store.get(key) for key in keys))
        assert [r.data["i"] if r else None for r in again] == list(range(200))
    finally:
        await store.close()


@pytest.mark.parametrize("round_", range(3))
def test_sync_threads_each_get_their_own_socket(redis_srv: RunningServer, admin, round_):
    name = unique_name()
    store = store_from_url(f"{redis_srv.url}?prefix={unique_name()}&client_name={name}")
    counter = Key("p", "n")
    try:

        def work(worker: int) -> list[tuple[int, Any]]:
            seen = []
            for i in range(50):
                key = Key("p", f"{worker}-{i}")
                store.create(key, {"w": worker, "i": i})
                record = store.get(key)
                seen.append((i, record.data if record else None))
                store.increment(counter, "n")
            return seen

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
        for worker, seen in enumerate(results):
            assert seen == [(i, {"w": worker, "i": i}) for i in range(50)]
        final = store.get(counter)
        assert final is not None
        assert final.data == {"n": 400}
        assert 1 <= clients_named(admin, name) <= 8, round_
    finally:
        store.close()


def test_pack_encodes_binary_and_text_arguments():
    assert pack([b"SET", "k\u00e9", b"\x00\xff"]) == (
        b"*3\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n\x00\xff\r\n"
    )


async def test_noscript_is_recovered_on_both_transports(redis_srv: RunningServer, admin):
    sync_store = store_from_url(f"{redis_srv.url}?prefix={unique_name()}")
    async_store = async_store_from_url(f"{redis_srv.url}?prefix={unique_name()}")
    try:
        for _ in range(2):
            admin.script_flush()
            assert sync_store.increment(Key("p"), "n").data["n"] >= 1
            admin.script_flush()
            assert (await async_store.increment(Key("p"), "n")).data["n"] >= 1
        assert sync_store.get(Key("p")) is not None
        assert (await async_store.get(Key("p"))) is not None
        record = sync_store.get(Key("p"))
        assert record is not None
        assert record.data == {"n": 2}
    finally:
        sync_store.close()
        await async_store.close()


async def test_with_opentelemetry_redis_instrumentation_commands_are_traced(
    redis_srv: RunningServer,
):
    """Tracing redis-py's commands must not lose the store's: they go through redis-py then."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sync_store = store_from_url(f"{redis_srv.url}?prefix={unique_name()}")
    async_store = async_store_from_url(f"{redis_srv.url}?prefix={unique_name()}")
    sync_store.create(Key("p", "warm-up"), {})  # scripts loaded: no NOSCRIPT spans below
    instrumentor = RedisInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        sync_store.create(Key("p", "s"), {})
        await async_store.create(Key("p", "a"), {})
        assert sync_store.get(Key("p", "s")) is not None
        names = [span.name for span in exporter.get_finished_spans()]
        assert names.count("EVALSHA") == 2
        assert names.count("HMGET") == 1
        instrumentor.uninstrument()
        exporter.clear()
        sync_store.create(Key("p", "s2"), {})
        await async_store.create(Key("p", "a2"), {})
        assert exporter.get_finished_spans() == ()  # not instrumented: the lean transport again
    finally:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        sync_store.close()
        await async_store.close()
        provider.shutdown()


def test_the_async_transport_runs_on_uvloop(redis_srv: RunningServer):
    """uvicorn picks uvloop when it is installed (``uvicorn[standard]``): the pipelined
    connection must work on its transports too (they are not asyncio.Transport instances)."""
    import uvloop  # noqa: PLC0415

    async def scenario() -> None:
        store = async_store_from_url(f"{redis_srv.url}?prefix={unique_name()}")
        try:
            assert isinstance(store, AsyncRedisStore)
            await concurrent_calls_get_their_own_replies(store, 100)
        finally:
            await store.close()
        with silent_server() as port:
            silent = async_store_from_url(f"redis://127.0.0.1:{port}/0?prefix=x&timeout=0.3")
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await silent.get(Key("p"))
            await silent.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_a_cancelled_connect_does_not_cancel_the_callers_waiting_for_it():
    """Callers share one connect; if the caller doing it is cancelled, the others connect
    again and get the store's own answer (here: a timeout), never a CancelledError."""
    with silent_server() as port:
        # db=1 makes the connect wait for the server's answer to SELECT, which never comes.
        store = async_store_from_url(f"redis://127.0.0.1:{port}/1?prefix=x&timeout=0.5")
        opener = asyncio.create_task(store.get(Key("p")))
        await asyncio.sleep(0.05)  # the opener is connecting
        waiters = [asyncio.create_task(store.get(Key("p"))) for _ in range(3)]
        await asyncio.sleep(0.05)
        opener.cancel()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
        with pytest.raises(asyncio.CancelledError):
            await opener
        await store.close()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_opens_its_own_socket(redis_srv: RunningServer):
    """A socket shared by two processes mixes their replies: after a fork the child must leave
    the parent's idle sockets alone. Both then count on the store at the same time."""
    store = store_from_url(f"{redis_srv.url}?prefix={unique_name()}&timeout=1")
    try:
        store.create(Key("p", "parent"), {"n": 0})  # the parent now has an idle socket
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its exit code tells the parent what happened
            code = 3
            try:
                os.read(go_read, 1)
                ok = all(
                    store.increment(Key("p", "child"), "n").data == {"n": n} for n in range(1, 301)
                )
                code = 0 if ok else 1
            finally:
                os._exit(code)
        os.write(go_write, b"x")
        counted = [store.increment(Key("p", "parent"), "n").data["n"] for _ in range(300)]
        _, status = os.waitpid(pid, 0)
        os.close(go_read)
        os.close(go_write)
        assert counted == list(range(1, 301))
        assert os.waitstatus_to_exitcode(status) == 0
        child_record = store.get(Key("p", "child"))
        assert child_record is not None
        assert child_record.data == {"n": 300}
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# Pooled sockets after a restart, pool bounds, event loops, credentials
# ---------------------------------------------------------------------------------------------


def test_sync_pooled_sockets_are_checked_after_a_server_restart():
    """A restart closes every pooled socket: each is found closed before it is used, so no
    call fails once the server is back (no retries configured)."""
    with own_redis_server() as server:
        store = store_from_url(f"{server.url}?prefix={unique_name()}")
        try:
            barrier = threading.Barrier(6)

            def fill_pool(_: int) -> None:
                barrier.wait()
                store.get(Key("p"))

            with ThreadPoolExecutor(6) as pool:
                list(pool.map(fill_pool, range(6)))
            server.restart()
            outcomes = []
            for i in range(6):
                try:
                    outcomes.append(store.create(Key("p", str(i)), {}).version)
                except StoreUnavailable as exc:
                    outcomes.append(exc)
            assert outcomes == [1] * 6
        finally:
            store.close()


def busy_server(admin: redis.Redis, seconds: float) -> threading.Thread:
    """Block the (single-threaded) server in a script for ``seconds``; returns once it is."""
    script = (
        "local t = redis.call('TIME') repeat local n = redis.call('TIME') "
        f"until (n[1] - t[1]) * 1e6 + n[2] - t[2] >= {int(seconds * 1e6)}"
    )
    blocker = threading.Thread(target=admin.eval, args=(script, 0))
    blocker.start()
    kwargs = admin.connection_pool.connection_kwargs
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.create_connection((kwargs["host"], kwargs["port"]), timeout=1) as probe:
            probe.sendall(b"PING\r\n")
            probe.settimeout(0.02)
            try:
                probe.recv(64)
            except TimeoutError:
                return blocker  # no answer: the script runs
        time.sleep(0.005)
    msg = "the busy script did not start"
    raise AssertionError(msg)


def test_sync_pool_honours_max_connections(redis_srv: RunningServer, admin):
    """16 threads, ``max_connections=4``: at most 4 sockets; the others wait for a free one."""
    name = unique_name()
    store = store_from_url(
        f"{redis_srv.url}?prefix={unique_name()}&client_name={name}&max_connections=4"
    )
    try:
        store.get(Key("p"))
        barrier = threading.Barrier(17)

        def call(_: int) -> Any:
            barrier.wait()
            return store.get(Key("p"))

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(call, i) for i in range(16)]
            blocker = busy_server(admin, 0.5)
            barrier.wait()  # every thread calls while the server is busy
            results = [future.result() for future in futures]
            blocker.join()
        assert results == [None] * 16
        assert clients_named(admin, name) <= 4
    finally:
        store.close()


def test_a_new_event_loop_does_not_use_the_previous_loops_connection(redis_srv: RunningServer):
    store = async_store_from_url(f"{redis_srv.url}?prefix={unique_name()}")

    async def burst() -> list[Any]:
        return await asyncio.gather(
            *(store.get(Key("p", str(i))) for i in range(10)), return_exceptions=True
        )

    try:
        assert asyncio.run(burst()) == [None] * 10
        assert asyncio.run(burst()) == [None] * 10  # a second asyncio.run: a new loop
        assert asyncio.run(burst()) == [None] * 10
    finally:
        asyncio.run(store.close())


def test_event_loops_in_two_threads_share_an_async_store(redis_srv: RunningServer):
    store = async_store_from_url(f"{redis_srv.url}?prefix={unique_name()}")
    start = threading.Barrier(2)

    def worker(index: int) -> list[Any]:
        async def rounds() -> list[Any]:
            start.wait()
            outcomes: list[Any] = []
            for _ in range(20):
                outcomes += await asyncio.gather(
                    *(store.increment(Key("p", f"w{index}"), "n") for _ in range(10)),
                    return_exceptions=True,
                )
                await asyncio.sleep(0)
            return outcomes

        return asyncio.run(rounds())

    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(worker, range(2)))
        for outcomes in results:
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            assert errors == []
        for index in range(2):
            record = asyncio.run(store.get(Key("p", f"w{index}")))
            assert record is not None
            assert record.data == {"n": 200}
    finally:
        asyncio.run(store.close())


async def get_on(store: Any) -> Any:
    """``get`` on a sync store (on a worker thread) or an async one."""
    if isinstance(store, RedisStore):
        return await asyncio.to_thread(store.get, Key("p"))
    return await store.get(Key("p"))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_missing_or_wrong_password_is_a_configuration_error(mode: str):
    """Not an outage: StoreConfigurationError (never retried), naming the problem, and the
    unauthenticated socket is closed rather than kept for the next call."""
    with own_redis_server("--requirepass", "s3cret") as server:
        admin = redis.Redis.from_url(server.url, password="s3cret")
        try:
            for url, problem in (
                (server.url, "requires a password"),
                (server.url.replace("redis://", "redis://:wrong@"), "rejected the username/pass"),
            ):
                # No client name: without a password the first command itself is refused.
                store = (store_from_url if mode == "sync" else async_store_from_url)(
                    f"{url}?prefix=x"
                )
                with pytest.raises(StoreConfigurationError, match=problem):
                    await get_on(store)
                await asyncio.sleep(0.1)  # the server sees the close
                mine = str(admin.client_id())
                assert [c for c in admin.client_list() if c["id"] != mine] == [], problem
                if isinstance(store, RedisStore):
                    store.close()
                else:
                    await store.close()  # type: ignore[misc]
        finally:
            admin.close()


def test_a_full_blocking_pool_fails_after_its_timeout(redis_srv: RunningServer, admin):
    """A caller's BlockingConnectionPool(max_connections=1, timeout=0.2): while the only
    socket waits on a busy server, a second thread waits 0.2 s for it, then gives up."""
    pool = redis.BlockingConnectionPool.from_url(redis_srv.url, max_connections=1, timeout=0.2)
    client = redis.Redis(connection_pool=pool)
    store = RedisStore(client, prefix=unique_name())
    try:
        store.get(Key("p"))
        with ThreadPoolExecutor(2) as threads:
            blocker = busy_server(admin, 0.8)
            holder = threads.submit(store.get, Key("p"))
            wire = store.transport
            assert wire is not None
            deadline = time.monotonic() + 2
            while wire._idle and time.monotonic() < deadline:
                time.sleep(0.005)  # until the holder has the only socket
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="max_connections"):
                store.get(Key("p"))
            assert 0.15 < time.monotonic() - started < 0.6
            assert holder.result() is None
            blocker.join()
    finally:
        store.close()
        client.close()


# ---------------------------------------------------------------------------------------------
# Transports, connection options, Unix sockets, TLS
# ---------------------------------------------------------------------------------------------


async def test_the_redis_py_opt_out(redis_srv: RunningServer):
    """``?transport=redis-py`` (or ``transport="redis-py"`` with a client) keeps redis-py for
    every command; ``transport=stalwart`` insists on the own transport."""
    sync_store = store_from_url(f"{redis_srv.url}?prefix={unique_name()}&transport=redis-py")
    async_store = async_store_from_url(f"{redis_srv.url}?prefix={unique_name()}&transport=redis-py")
    assert isinstance(sync_store, RedisStore)
    assert isinstance(async_store, AsyncRedisStore)
    assert (sync_store.transport, async_store.transport) == (None, None)
    assert sync_store.increment(Key("p"), "n").data == {"n": 1}
    assert (await async_store.increment(Key("p"), "n")).data == {"n": 1}
    sync_store.close()
    await async_store.close()

    client = redis.Redis.from_url(redis_srv.url)
    assert RedisStore(client, prefix="x", transport="redis-py").transport is None
    assert RedisStore(client, prefix="x", transport="stalwart").transport is not None
    with pytest.raises(StoreConfigurationError, match="transport must be one of"):
        RedisStore(client, prefix="x", transport="fast")  # type: ignore[arg-type]
    client.close()
    with pytest.raises(StoreConfigurationError, match=r"protocol='?3.*supports"):
        store_from_url(f"{redis_srv.url}?prefix=x&protocol=3&transport=stalwart")
    resp3 = store_from_url(f"{redis_srv.url}?prefix=x&protocol=3")  # auto: redis-py carries it
    assert isinstance(resp3, RedisStore)
    assert resp3.transport is None
    resp3.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:port/0?prefix=x",
        "redis://127.0.0.1/db?prefix=x",
        "redis://127.0.0.1/0?prefix=x&max_connections=many",
        "rediss://127.0.0.1/0?prefix=x&ssl_certfile=/nonexistent/client.crt",
        "rediss://127.0.0.1/0?prefix=x&ssl_ca_certs=/nonexistent/ca.crt&transport=redis-py",
        "memcached://127.0.0.1/0",
    ],
)
@pytest.mark.parametrize("opener", [store_from_url, async_store_from_url])
def test_malformed_urls_are_configuration_errors(url, opener):
    with pytest.raises(StoreConfigurationError):
        opener(url)


def test_keepalive_options_are_honoured_or_refused(redis_srv: RunningServer):
    """socket_keepalive_options used to be dropped silently: the own sockets now carry them,
    and an option the OS refuses is a configuration error when the store is built."""
    options = {socket.TCP_KEEPIDLE: 7, socket.TCP_KEEPINTVL: 2, socket.TCP_KEEPCNT: 4}
    client = redis.Redis.from_url(
        redis_srv.url, socket_keepalive=True, socket_keepalive_options=options
    )
    store = RedisStore(client, prefix=unique_name(), transport="stalwart")
    try:
        store.get(Key("p"))
        sock = store.transport._idle[0].sock  # type: ignore[union-attr]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert {
            option: sock.getsockopt(socket.IPPROTO_TCP, option) for option in options
        } == options
    finally:
        store.close()
        client.close()
    refused = redis.Redis(socket_keepalive_options={socket.TCP_KEEPIDLE: -1})
    with pytest.raises(StoreConfigurationError, match="socket_keepalive_options"):
        RedisStore(refused, prefix="x")
    refused.close()


async def test_unix_socket_urls_on_both_transports():
    with own_redis_server() as server:
        url = f"unix://{server.unix_socket}?db=2&prefix={unique_name()}"
        for transport in ("stalwart", "redis-py"):
            sync_store = store_from_url(f"{url}&transport={transport}")
            async_store = async_store_from_url(f"{url}&transport={transport}")
            assert isinstance(sync_store, RedisStore)
            assert isinstance(async_store, AsyncRedisStore)
            if transport == "stalwart":
                assert sync_store.transport is not None
                assert sync_store.transport.options.path == str(server.unix_socket)
                assert async_store.transport is not None
            assert sync_store.increment(Key("p", transport), "n").data == {"n": 1}
            assert (await async_store.increment(Key("p", transport), "n")).data == {"n": 2}
            sync_store.close()
            await async_store.close()
        db2 = redis.Redis(unix_socket_path=str(server.unix_socket), db=2)
        assert len(db2.keys("*")) == 3  # two records and their partition index, in db 2
        db2.close()


def tls_url(server: RedisProcess, *, host: str = "localhost", **params: str) -> str:
    assert server.tls is not None
    query = {
        "prefix": unique_name(),
        "ssl_ca_certs": str(server.tls.ca),
        "ssl_certfile": str(server.tls.client_cert),
        "ssl_keyfile": str(server.tls.client_key),
        **params,
    }
    return f"rediss://{host}:{server.port}/0?" + "&".join(f"{k}={v}" for k, v in query.items())


@pytest.mark.parametrize("transport", ["stalwart", "redis-py"])
async def test_tls_on_both_transports(redis_tls_srv: RedisProcess, transport: str):
    """The server speaks TLS only and requires a client certificate: every call that works
    proves the CA, the client certificate and the key were used."""
    url = tls_url(redis_tls_srv, transport=transport)
    sync_store = store_from_url(url)
    async_store = async_store_from_url(url)
    assert isinstance(sync_store, RedisStore)
    assert isinstance(async_store, AsyncRedisStore)
    try:
        if transport == "stalwart":
            assert sync_store.transport is not None
            assert sync_store.transport.options.tls is not None
            assert async_store.transport is not None
        assert sync_store.create(Key("p", "s"), {"n": 1}).version == 1
        await concurrent_calls_get_their_own_replies(async_store, 20)
        assert sync_store.increment(Key("p", "s"), "n").data == {"n": 2}
        assert len(sync_store.query("p").records) == 22
    finally:
        sync_store.close()
        await async_store.close()


@pytest.mark.parametrize("transport", ["stalwart", "redis-py"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_tls_trust_and_hostname_are_checked(redis_tls_srv: RedisProcess, transport, mode):
    """An untrusted certificate or a name it does not carry is a configuration error (never
    an outage); ssl_check_hostname=false and ssl_cert_reqs=none relax exactly that."""

    async def get(url: str) -> Any:
        if mode == "sync":
            store = store_from_url(url)
            try:
                return await asyncio.to_thread(store.get, Key("p"))
            finally:
                store.close()
        async_store = async_store_from_url(url)
        try:
            return await async_store.get(Key("p"))
        finally:
            await async_store.close()

    server = redis_tls_srv
    # The certificate names "localhost" only.
    with pytest.raises(StoreConfigurationError, match="certificate"):
        await get(tls_url(server, host="127.0.0.1", transport=transport))
    assert await get(tls_url(server, host="127.0.0.1", ssl_check_hostname="false")) is None
    # Without the test CA the system's trust store cannot verify the server.
    untrusted = tls_url(server, transport=transport).replace(f"ssl_ca_certs={server.tls.ca}&", "")  # type: ignore[union-attr]
    with pytest.raises(StoreConfigurationError, match="certificate"):
        await get(untrusted)
    assert await get(f"{untrusted}&ssl_cert_reqs=none") is None
