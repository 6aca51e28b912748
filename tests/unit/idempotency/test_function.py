# Copyright 2026 stalwart contributors
"""Unit tests of @idempotent on an in-memory store (the engines are in tests/conformance)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from stalwart.idempotency import (
    AsyncIdempotency,
    FingerprintMismatch,
    Idempotency,
    IdempotencyPolicy,
    InProgress,
    JsonCodec,
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


def test_unstorable_result_is_returned_and_released(caplog: pytest.LogCaptureFixture) -> None:
    layer = Idempotency(MemoryStore(max_item_bytes=200))
    runs: list[int] = []

    @idempotent(layer)
    def big(n: int) -> str:
        runs.append(n)
        return "x" * 500

    with caplog.at_level(logging.WARNING, logger="stalwart.idempotency"):
        assert big(1) == "x" * 500
    assert "not stored" in caplog.text
    assert big(1) == "x" * 500
    assert runs == [1, 1]


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
