from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from stalwart.config import (
    SecretError,
    SecretFetcher,
    SecretNotFound,
    SecretPolicy,
    SecretUnavailable,
    secretsmanager_client,
)
from stalwart.observability import capture_logs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sm(moto_srv):
    return boto3.client(
        "secretsmanager",
        endpoint_url=moto_srv.url,
        config=Config(connect_timeout=5, read_timeout=5),
    )


@pytest.fixture
def secret(sm):
    name = f"app/{uuid.uuid4().hex[:10]}"
    sm.create_secret(Name=name, SecretString=json.dumps({"password": "v1"}))
    return name


def fetcher_for(moto_url: str, **kwargs) -> SecretFetcher:
    return SecretFetcher(endpoint_url=moto_url, region_name="us-east-1", **kwargs)


def counting(fetcher: SecretFetcher) -> list[str]:
    calls: list[str] = []
    fetcher.client.meta.events.register(
        "before-call.secrets-manager.GetSecretValue", lambda **_: calls.append("call")
    )
    return calls


def test_rotation_is_picked_up_after_the_ttl(moto_srv, sm, secret):
    clock = Clock()
    fetcher = fetcher_for(moto_srv.url, policy=SecretPolicy(ttl_s=60, jitter=0.0), clock=clock)
    calls = counting(fetcher)
    assert fetcher.get_json(secret) == {"password": "v1"}
    sm.put_secret_value(SecretId=secret, SecretString=json.dumps({"password": "v2"}))
    clock.now += 59
    assert fetcher.get_json(secret) == {"password": "v1"}  # cached
    assert len(calls) == 1
    clock.now += 2
    with capture_logs("stalwart.config", level="INFO") as logged:
        assert fetcher.get_json(secret) == {"password": "v2"}
    assert len(calls) == 2
    assert logged[0]["message"] == "secret rotated"
    assert logged[0]["resource"] == secret
    assert "v2" not in json.dumps(logged)


def test_rotation_is_picked_up_on_demand(moto_srv, sm, secret):
    fetcher = fetcher_for(moto_srv.url, policy=SecretPolicy(ttl_s=3600))
    assert fetcher.get_json(secret)["password"] == "v1"
    sm.put_secret_value(SecretId=secret, SecretString=json.dumps({"password": "v2"}))
    assert fetcher.get_json(secret)["password"] == "v1"
    assert json.loads(fetcher.refresh(secret).get_secret_value())["password"] == "v2"
    assert fetcher.get_json(secret)["password"] == "v2"


def test_version_stage_and_invalidate(moto_srv, sm, secret):
    fetcher = fetcher_for(moto_srv.url)
    sm.put_secret_value(SecretId=secret, SecretString=json.dumps({"password": "v2"}))
    assert fetcher.get_json(secret, version_stage="AWSPREVIOUS") == {"password": "v1"}
    assert fetcher.get_json(secret) == {"password": "v2"}
    calls = counting(fetcher)
    fetcher.invalidate(secret)
    assert fetcher.get_json(secret) == {"password": "v2"}
    assert len(calls) == 1


def test_jitter_shortens_the_ttl_by_at_most_the_fraction(moto_srv, secret):
    clock = Clock()
    policy = SecretPolicy(ttl_s=100, jitter=0.2)
    fetcher = fetcher_for(moto_srv.url, policy=policy, clock=clock, rng=lambda: 1.0)
    calls = counting(fetcher)
    fetcher.get(secret)
    clock.now += 79.9
    fetcher.get(secret)
    assert len(calls) == 1
    clock.now += 0.2  # past 100 * (1 - 0.2)
    fetcher.get(secret)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="jitter"):
        SecretPolicy(jitter=1.0)


def test_secret_value_is_not_printable(moto_srv, secret):
    value = fetcher_for(moto_srv.url).get(secret)
    assert "v1" not in repr(value)
    assert "v1" not in str(value)


def test_missing_secret_fails_at_once(moto_srv):
    sleeps: list[float] = []
    fetcher = fetcher_for(moto_srv.url, sleep=sleeps.append)
    with pytest.raises(SecretNotFound, match="nope"):
        fetcher.get("nope")
    assert sleeps == []


def test_binary_and_non_object_secrets(moto_srv, sm):
    binary, text, array = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in "bta")
    sm.create_secret(Name=binary, SecretBinary=b"\x00\x01")
    sm.create_secret(Name=text, SecretString="plain")
    sm.create_secret(Name=array, SecretString="[1, 2]")
    fetcher = fetcher_for(moto_srv.url)
    with pytest.raises(SecretError, match="binary"):
        fetcher.get(binary)
    with pytest.raises(SecretError, match="is not JSON"):
        fetcher.get_json(text)
    assert fetcher.get(text).get_secret_value() == "plain"
    with pytest.raises(SecretError, match="not a JSON object"):
        fetcher.get_json(array)


@pytest.fixture
def private_moto():
    """A moto server this test may stop, to take Secrets Manager down mid-test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    state = {"running": True}

    def stop() -> None:
        if state["running"]:
            server.stop()
            state["running"] = False

    yield f"http://127.0.0.1:{port}", stop
    stop()


def test_stale_value_is_served_and_logged_when_secrets_manager_is_down(private_moto):
    url, stop = private_moto
    sm = boto3.client("secretsmanager", endpoint_url=url, region_name="us-east-1")
    name = f"db-{uuid.uuid4().hex[:8]}"  # moto's in-process backend outlives the server
    sm.create_secret(Name=name, SecretString="s3cret")
    clock = Clock()
    sleeps: list[float] = []
    policy = SecretPolicy(ttl_s=60, jitter=0.0, timeout_s=1.0, attempts=3, error_retry_s=5)
    fetcher = fetcher_for(url, policy=policy, clock=clock, sleep=sleeps.append)
    assert fetcher.get(name).get_secret_value() == "s3cret"
    stop()
    clock.now += 61
    calls = counting(fetcher)
    with capture_logs("stalwart.config") as logged:
        assert fetcher.get(name).get_secret_value() == "s3cret"
    assert len(calls) == 3  # every attempt was made
    assert len(sleeps) == 2  # with a backoff between attempts
    assert all(0 <= s <= policy.backoff_max_s for s in sleeps)
    (warning,) = logged
    assert warning["level"] == "WARNING"
    assert warning["message"].startswith("serving a stale secret")
    assert warning["resource"] == name
    assert "s3cret" not in json.dumps(warning)
    # While down, the next attempt waits error_retry_s instead of hammering on every call.
    clock.now += 4
    assert fetcher.get(name).get_secret_value() == "s3cret"
    assert len(calls) == 3
    # A refresh on demand also falls back to the stale value.
    assert fetcher.refresh(name).get_secret_value() == "s3cret"
    assert len(calls) == 6
    # Never fetched: nothing to serve, the error surfaces.
    with pytest.raises(SecretUnavailable, match="failed 3 time"):
        fetcher.get("other")


def test_stale_value_has_an_age_limit(private_moto):
    url, stop = private_moto
    name = f"db-{uuid.uuid4().hex[:8]}"
    boto3.client("secretsmanager", endpoint_url=url, region_name="us-east-1").create_secret(
        Name=name, SecretString="s3cret"
    )
    clock = Clock()
    policy = SecretPolicy(ttl_s=60, jitter=0.0, attempts=1, max_stale_s=30)
    fetcher = fetcher_for(url, policy=policy, clock=clock)
    fetcher.get(name)
    stop()
    clock.now += 85  # 25 s stale: served
    assert fetcher.get(name).get_secret_value() == "s3cret"
    clock.now += 10  # 35 s stale: too old
    with pytest.raises(SecretUnavailable):
        fetcher.get(name)


def test_each_call_has_a_timeout_and_retries_are_bounded():
    # A listener that never answers: connect succeeds (backlog), the read times out.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        sleeps: list[float] = []
        policy = SecretPolicy(timeout_s=0.3, attempts=2, backoff_s=0.01)
        fetcher = fetcher_for(url, policy=policy, sleep=sleeps.append)
        started = time.monotonic()
        with pytest.raises(SecretUnavailable, match="failed 2 time") as caught:
            fetcher.get("db")
        elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 3.0
    assert len(sleeps) == 1
    assert "timeout" in repr(caught.value.__cause__).lower()


def test_client_timeouts_and_no_botocore_retries():
    client = secretsmanager_client(region_name="us-east-1", timeout_s=1.5)
    assert client.meta.config.connect_timeout == 1.5
    assert client.meta.config.read_timeout == 1.5
    assert client.meta.config.retries["total_max_attempts"] == 1


def test_one_refresh_for_many_threads(moto_srv, secret):
    for _ in range(3):
        clock = Clock()
        fetcher = fetcher_for(moto_srv.url, policy=SecretPolicy(ttl_s=60), clock=clock)
        calls = counting(fetcher)
        fetcher.get(secret)
        clock.now += 120
        barrier = threading.Barrier(8)
        results: list[str] = []

        def read(fetcher=fetcher, barrier=barrier, results=results) -> None:
            barrier.wait()
            results.append(fetcher.get(secret).get_secret_value())

        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 8
        assert set(results) == {json.dumps({"password": "v1"})}
        assert len(calls) == 2  # the first fetch and exactly one refresh


def test_first_fetch_from_many_threads_waits_for_one_call(moto_srv, secret):
    fetcher = fetcher_for(moto_srv.url)
    calls = counting(fetcher)
    barrier = threading.Barrier(6)
    results: list[str] = []

    def read() -> None:
        barrier.wait()
        results.append(fetcher.get(secret).get_secret_value())

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert len(calls) == 1


async def test_async_reads_do_not_block_the_loop(moto_srv, sm, secret):
    fetcher = fetcher_for(moto_srv.url)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    value = await fetcher.aget(secret)
    stop.set()
    await task
    assert json.loads(value.get_secret_value()) == {"password": "v1"}
    assert ticks > 1  # the loop kept running while the fetch was in a thread
    sm.put_secret_value(SecretId=secret, SecretString=json.dumps({"password": "v2"}))
    assert json.loads((await fetcher.aget(secret)).get_secret_value())["password"] == "v1"
    assert json.loads((await fetcher.arefresh(secret)).get_secret_value())["password"] == "v2"


async def test_concurrent_async_first_reads_make_one_call(moto_srv, secret):
    fetcher = fetcher_for(moto_srv.url)
    calls = counting(fetcher)
    values = await asyncio.gather(*(fetcher.aget(secret) for _ in range(10)))
    assert {v.get_secret_value() for v in values} == {json.dumps({"password": "v1"})}
    assert len(calls) == 1
