# Copyright 2026 stalwart contributors
"""Unit tests of @idempotent on an in-memory store (the engines are in tests/conformance)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from stalwart.idempotency import (
    AsyncIdempotency,
    FingerprintMismatch,
    Idempotency,
    IdempotencyPolicy,
    InProgress,
    InvalidIdempotencyKey,
    JsonCodec,
    ResultNotStored,
    idempotent,
)
from stalwart.storage import StoreUnavailable
from unit.idempotency.idem_memory_store import AsyncMemoryStore, MemoryStore


class Receipt(BaseModel):
    order_id: str
    cents: int
    at: datetime


@dataclass
class Point:
    x: int
    y: int


def test_sync_runs_once_and_replays_typed() -> None:
    store = MemoryStore()
    layer = Idempotency(store)
    calls: list[str] = []

    @idempotent(layer, key_args=["order_id"])
    def charge(order_id: str, cents: int) -> Receipt:
        calls.append(order_id)
        return Receipt(order_id=order_id, cents=cents, at=datetime(2026, 1, 1, tzinfo=UTC))

    first = charge("o-1", 500)
    again = charge("o-1", 500)
    assert calls == ["o-1"]
    assert isinstance(again, Receipt)
    assert again == first
    with pytest.raises(FingerprintMismatch):
        charge("o-1", 999)
    charge(order_id="o-2", cents=1)
    assert calls == ["o-1", "o-2"]


async def test_async_runs_once_and_replays_typed() -> None:
    layer = AsyncIdempotency(AsyncMemoryStore())
    calls: list[int] = []

    @idempotent(layer, key=lambda p, note="": f"{p.x}/{p.y}", fingerprint_args=["p"])
    async def move(p: Point, note: str = "") -> list[Point]:
        calls.append(p.x)
        await asyncio.sleep(0.01)
        return [p, Point(p.y, p.x)]

    results = await asyncio.gather(move(Point(1, 2)), move(Point(1, 2)), return_exceptions=True)
    assert calls == [1]
    assert sum(isinstance(r, InProgress) for r in results) == 1
    replay = await move(Point(1, 2), note="ignored: not in the fingerprint")
    assert replay == [Point(1, 2), Point(2, 1)]
    assert isinstance(replay[0], Point)


def test_exceptions_are_not_stored() -> None:
    layer = Idempotency(MemoryStore())
    attempts: list[int] = []

    @idempotent(layer)
    def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise RuntimeError("boom")
        return n * 2

    with pytest.raises(RuntimeError):
        flaky(3)
    assert flaky(3) == 6
    assert flaky(3) == 6
    assert attempts == [3, 3]


def test_result_the_store_refuses_is_returned_and_never_runs_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = Idempotency(MemoryStore(max_item_bytes=300))
    runs: list[int] = []

    @idempotent(layer)
    def big(n: int) -> str:
        runs.append(n)
        return "x" * 500

    with caplog.at_level(logging.WARNING, logger="stalwart.idempotency"):
        assert big(1) == "x" * 500
    assert "not stored (the store refused it" in caplog.text
    with pytest.raises(ResultNotStored, match="the store refused it"):
        big(1)
    assert runs == [1]


class Opaque:
    """A value pydantic cannot serialise."""


def test_result_the_codec_cannot_encode_is_returned_and_never_runs_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = Idempotency(MemoryStore())
    runs: list[int] = []
    opaque = Opaque()

    @idempotent(layer)
    def charge(n: int) -> Any:
        runs.append(n)  # the side effect
        return {"receipt": opaque}

    with caplog.at_level(logging.WARNING, logger="stalwart.idempotency"):
        assert charge(1) == {"receipt": opaque}
    assert "not stored (the codec could not encode it" in caplog.text
    assert "PydanticSerializationError" in caplog.text
    for _ in range(2):  # a retry must not run the side effect again
        with pytest.raises(ResultNotStored):
            charge(1)
    assert runs == [1]


async def test_async_result_the_codec_cannot_encode_never_runs_twice() -> None:
    layer = AsyncIdempotency(AsyncMemoryStore())
    runs: list[int] = []

    @idempotent(layer)
    async def charge(n: int) -> Any:
        runs.append(n)
        return Opaque()

    assert isinstance(await charge(1), Opaque)
    with pytest.raises(ResultNotStored):
        await charge(1)
    assert runs == [1]


def test_return_annotation_is_required() -> None:
    """Without one a replay would come back as JSON (a datetime as a str)."""
    layer = Idempotency(MemoryStore())
    with pytest.raises(TypeError, match=r"needs a return annotation on .*codec="):

        @idempotent(layer)
        def stamp(n):  # type: ignore[no-untyped-def]
            return datetime(2026, 1, 1, tzinfo=UTC)

    @idempotent(layer)
    def typed(n: int) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    first, again = typed(1), typed(1)
    assert type(again) is datetime
    assert again == first


def test_unresolvable_return_annotation_is_a_type_error() -> None:
    def later() -> Undefined:  # type: ignore[name-defined]  # noqa: F821
        raise AssertionError

    with pytest.raises(TypeError, match=r"cannot resolve the return annotation.*codec="):
        idempotent(Idempotency(MemoryStore()))(later)


def test_return_type_without_a_json_form_says_how_to_pass_a_codec() -> None:
    with pytest.raises(TypeError) as raised:

        @idempotent(Idempotency(MemoryStore()))
        def make_opaque() -> Opaque:
            return Opaque()

    message = str(raised.value)
    assert "codec=" in message
    assert "Opaque" in message
    assert "arbitrary_types_allowed" not in message
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_default_namespace_is_the_same_in_a_spawned_process(tmp_path: Path) -> None:
    """A script's function is ``__main__.f`` in the script and ``__mp_main__.f`` in the
    processes multiprocessing spawns from it: both must find the same record."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing
            from pathlib import Path

            from stalwart.idempotency import Idempotency, idempotent
            from stalwart.storage import open_store

            HERE = Path(__file__).parent
            layer = Idempotency(open_store(f"sqlite:///{HERE / 'idem.db'}?table=idem"))


            @idempotent(layer, key_args=["order_id"])
            def charge(order_id: str) -> str:
                with open(HERE / "runs.txt", "a") as runs:
                    runs.write(order_id + "\\n")
                return order_id


            def child() -> None:
                assert charge("o-1") == "o-1"


            if __name__ == "__main__":
                charge("o-1")
                process = multiprocessing.get_context("spawn").Process(target=child)
                process.start()
                process.join(30)
                assert process.exitcode == 0, process.exitcode
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs.txt").read_text() == "o-1\n"


@pytest.mark.parametrize(
    ("options", "args"),
    [
        ({"key": lambda order_id: order_id}, ("",)),
        ({"key": lambda order_id: order_id}, ("k" * 100_000,)),
        ({"key": lambda order_id: order_id}, ("k" * 256,)),
        ({"key": lambda order_id: 42}, ("o-1",)),
        ({"key_args": ["order_id"]}, ("",)),
        ({"key_args": ["order_id"]}, ("k" * 100_000,)),
    ],
)
def test_function_keys_outside_the_limits_are_refused(
    options: dict[str, Any], args: tuple[Any, ...]
) -> None:
    runs: list[str] = []

    @idempotent(Idempotency(MemoryStore()), **options)
    def charge(order_id: str) -> str:
        runs.append(order_id)
        return order_id

    with pytest.raises(InvalidIdempotencyKey):
        charge(*args)
    assert runs == []


def test_function_keys_at_the_limits_are_accepted() -> None:
    @idempotent(Idempotency(MemoryStore()), key=lambda order_id: order_id)
    def charge(order_id: str) -> str:
        return order_id

    assert charge("k" * 255) == "k" * 255
    assert charge("k") == "k"


def test_wrong_layer_kind_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="AsyncIdempotency"):

        @idempotent(Idempotency(MemoryStore()))
        async def job() -> None: ...

    with pytest.raises(TypeError, match="no parameters"):

        @idempotent(Idempotency(MemoryStore()), key_args=["nope"])
        def job2(a: int) -> None: ...


def test_custom_codec() -> None:
    class Upper:
        def encode(self, value: str) -> str:
            return value.upper()

        def decode(self, stored: str) -> str:
            return f"replayed:{stored}"

    layer = Idempotency(MemoryStore())

    @idempotent(layer, codec=Upper())
    def greet(name: str) -> str:
        return f"hi {name}"

    assert greet("a") == "hi a"
    assert greet("a") == "replayed:HI A"
    assert JsonCodec(int).decode("5") == 5


def test_sync_heartbeat_keeps_the_lease() -> None:
    store = MemoryStore()
    layer = Idempotency(store, IdempotencyPolicy(lease=0.3))
    started = threading.Event()
    outcome: list[object] = []

    @idempotent(layer, heartbeat_every=0.05)
    def slow(n: int) -> int:
        started.set()
        time.sleep(0.8)
        return n

    runner = threading.Thread(target=lambda: outcome.append(slow(7)))
    runner.start()
    started.wait()
    time.sleep(0.5)  # past the original lease: without heartbeats this would take over
    with pytest.raises(InProgress):
        slow(7)
    runner.join()
    assert outcome == [7]
    assert store.calls.count("replace") >= 3  # heartbeats + completion
    assert slow(7) == 7


async def test_async_heartbeat_keeps_the_lease() -> None:
    layer = AsyncIdempotency(AsyncMemoryStore(), IdempotencyPolicy(lease=0.3))
    runs: list[int] = []

    @idempotent(layer, heartbeat_every=0.05)
    async def slow(n: int) -> int:
        runs.append(n)
        await asyncio.sleep(0.8)
        return n

    task = asyncio.create_task(slow(1))
    await asyncio.sleep(0.5)
    with pytest.raises(InProgress):
        await slow(1)
    assert await task == 1
    assert await slow(1) == 1
    assert runs == [1]


def test_store_outage_after_the_work_returns_the_result(caplog: pytest.LogCaptureFixture) -> None:
    class FailingCompletion(MemoryStore):
        def replace(self, key, data, *, expected_version, ttl=None):
            raise StoreUnavailable("connection lost")

    layer = Idempotency(FailingCompletion())
    runs: list[int] = []

    @idempotent(layer)
    def work(n: int) -> int:
        runs.append(n)
        return n + 1

    with caplog.at_level(logging.ERROR, logger="stalwart.idempotency"):
        assert work(1) == 2
    assert "not recorded" in caplog.text
    with pytest.raises(InProgress):  # the claim stays until its lease expires
        work(1)
    assert runs == [1]


def test_store_outage_at_claim_propagates_and_nothing_runs() -> None:
    class Down(MemoryStore):
        def create(self, key, data, *, ttl=None):
            raise StoreUnavailable("connection refused")

    runs: list[int] = []

    @idempotent(Idempotency(Down()))
    def work(n: int) -> int:
        runs.append(n)
        return n

    with pytest.raises(StoreUnavailable):
        work(1)
    assert runs == []


def test_arguments_bind_like_the_signature() -> None:
    """Positional, keyword and defaulted spellings of one call share a key and fingerprint;
    calls the signature rejects raise its TypeError before anything is claimed."""
    store = MemoryStore()
    calls: list[tuple[str, int]] = []

    @idempotent(Idempotency(store), key_args=["order_id"])
    def charge(order_id: str, cents: int = 100) -> int:
        calls.append((order_id, cents))
        return cents

    assert charge("o-1") == 100
    assert charge("o-1", 100) == 100
    assert charge(order_id="o-1", cents=100) == 100
    assert charge("o-1", cents=100) == 100
    assert calls == [("o-1", 100)]
    with pytest.raises(FingerprintMismatch):
        charge("o-1", cents=5)
    for bad_args, bad_kwargs in (
        (("o-2", 1, 2), {}),
        (("o-2",), {"order_id": "o-2"}),
        ((), {"cents": 1}),
        (("o-2",), {"tip": 1}),
    ):
        with pytest.raises(TypeError):
            charge(*bad_args, **bad_kwargs)
    assert calls == [("o-1", 100)]
