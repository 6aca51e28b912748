# Copyright 2026 stalwart contributors
"""Helpers for the idempotency conformance tests: the layer on a facade's raw store.

In ``sync`` mode the sync layer runs on real threads; in ``async`` mode the async layer runs
on tasks, mirroring the storage facade.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from stalwart.idempotency import AsyncIdempotency, Idempotency, IdempotencyPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

    from stalwart.storage import AsyncStore, Store


class LayerRunner:
    """The idempotency layer matching the facade's mode, callable from async tests."""

    def __init__(self, store: Any, policy: IdempotencyPolicy, workers: int = 64) -> None:
        self.mode: str = store.mode
        raw: Store | AsyncStore = store.raw
        self.sync_layer: Idempotency | None = None
        self.async_layer: AsyncIdempotency | None = None
        if self.mode == "sync":
            self.sync_layer = Idempotency(raw, policy)  # type: ignore[arg-type]
        else:
            self.async_layer = AsyncIdempotency(raw, policy)  # type: ignore[arg-type]
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="idem")

    @property
    def layer(self) -> Idempotency | AsyncIdempotency:
        layer = self.sync_layer or self.async_layer
        assert layer is not None
        return layer

    async def call(self, method: str, *args: Any) -> Any:
        """Run a layer method (claim/complete/release/heartbeat)."""
        return await self.run(getattr(self.layer, method), *args)

    async def run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a sync callable on a thread, or await an async one."""
        if self.mode == "sync":
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, functools.partial(func, *args, **kwargs))
        return await func(*args, **kwargs)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
