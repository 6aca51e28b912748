# Copyright 2026 stalwart contributors
"""Pins the public types of stalwart.idempotency: type-checked (strict), never run."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from stalwart.idempotency import (
    AsyncIdempotency,
    Idempotency,
    IdempotencyPolicy,
    Lease,
    Replay,
    idempotent,
)
from stalwart.storage import AsyncStore, Key, Store


def sync_api(store: Store) -> None:
    layer = Idempotency(store, IdempotencyPolicy(lease=30))

    @idempotent(layer, key_args=["order_id"])
    def charge(order_id: str, cents: int) -> dict[str, int]:
        return {"cents": cents}

    assert_type(charge("o-1", 5), dict[str, int])
    key = layer.key("ns", "k")
    assert_type(key, Key)
    assert_type(layer.claim(key, "fp"), Lease | Replay)


async def async_api(store: AsyncStore) -> None:
    layer = AsyncIdempotency(store)

    @idempotent(layer, key=lambda order_id, cents: order_id)
    async def charge(order_id: str, cents: int) -> int:
        return cents

    pending: Coroutine[Any, Any, int] = charge("o-1", 5)  # keeps the coroutine type
    pending.close()
    assert_type(await charge("o-1", 5), int)
    lease = await layer.claim(layer.key("k"))
    if isinstance(lease, Lease):
        assert_type(await layer.heartbeat(lease), Lease)
