# Copyright 2026 stalwart contributors
"""HTTP Idempotency-Key guarantees on every engine: FastAPI on the async store (tasks), Flask
on the sync store (threads). In-process transports here; the storm through real servers
(uvicorn, werkzeug) is in tests/integration/test_idempotency_servers.py.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from conformance.idem_support import LayerRunner
from stalwart.idempotency import HttpPolicy, IdempotencyPolicy
from unit.idempotency.idem_apps import make_fastapi, make_flask

if TYPE_CHECKING:
    from collections import Counter

POLICY = HttpPolicy(max_response_bytes=2000)


class Client:
    """FastAPI (async mode) or Flask (sync mode, on threads) behind one async interface."""

    def __init__(self, runner: LayerRunner) -> None:
        self.runner = runner
        self.executions: Counter[str]
        if runner.mode == "async":
            app, self.executions, _ = make_fastapi(runner.async_layer, POLICY)  # type: ignore[arg-type]
            self.async_client: httpx.AsyncClient | None = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            )
            self.sync_client: httpx.Client | None = None
        else:
            flask_app, self.executions, _ = make_flask(runner.sync_layer, POLICY)  # type: ignore[arg-type]
            flask_app.config["PROPAGATE_EXCEPTIONS"] = False
            self.sync_client = httpx.Client(
                transport=httpx.WSGITransport(app=flask_app), base_url="http://test"
            )
            self.async_client = None

    async def post(
        self, path: str, body: Any = None, key: str | None = None, **headers: str
    ) -> httpx.Response:
        if key is not None:
            headers["Idempotency-Key"] = key
        kwargs = {"json": body if body is not None else {}, "headers": headers}
        if self.async_client is not None:
            return await self.async_client.post(path, **kwargs)
        assert self.sync_client is not None
        return await asyncio.to_thread(self.sync_client.post, path, **kwargs)

    async def close(self) -> None:
        if self.async_client is not None:
            await self.async_client.aclose()
        if self.sync_client is not None:
            self.sync_client.close()


@pytest.fixture
async def web(store, clock):
    runner = LayerRunner(store, IdempotencyPolicy(lease=10, clock=clock))
    client = Client(runner)
    yield client
    await client.close()
    runner.close()


async def test_replay_and_mismatch(web):
    first = await web.post("/orders", {"item": "tea"}, key='"k1"')
    assert first.status_code == 201
    again = await web.post("/orders", {"item": "tea"}, key="k1")
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    mismatch = await web.post("/orders", {"item": "coffee"}, key="k1")
    assert mismatch.status_code == 422
    assert mismatch.headers["content-type"] == "application/problem+json"
    assert web.executions["orders"] == 1


async def test_cross_tenant_same_key_runs_independently(web):
    a = await web.post("/orders", {"item": "tea"}, key="shared", **{"X-Tenant": "a"})
    b = await web.post("/orders", {"item": "tea"}, key="shared", **{"X-Tenant": "b"})
    a2 = await web.post("/orders", {"item": "tea"}, key="shared", **{"X-Tenant": "a"})
    assert (a.json()["tenant"], b.json()["tenant"], a2.json()["tenant"]) == ("a", "b", "a")
    assert "idempotent-replayed" not in b.headers
    assert a2.headers["idempotent-replayed"] == "true"
    assert web.executions["orders"] == 2


async def test_5xx_and_exceptions_release(web):
    for expected in (1, 2, 3):
        response = await web.post("/server-error", key="s")
        assert response.status_code == 503
        assert response.json() == {"n": expected}
    if web.runner.mode == "sync":
        assert (await web.post("/fail", key="f")).status_code == 500
    else:
        with pytest.raises(RuntimeError):
            await web.post("/fail", key="f")
    assert (await web.post("/fail", key="f")).json() == {"ok": "second time"}


async def test_expired_record_runs_again(web, clock):
    await web.post("/orders", {"item": "tea"}, key="e")
    replay = await web.post("/orders", {"item": "tea"}, key="e")
    assert replay.headers["idempotent-replayed"] == "true"
    clock.advance(24 * 3600 + 1)
    rerun = await web.post("/orders", {"item": "tea"}, key="e")
    assert "idempotent-replayed" not in rerun.headers
    assert web.executions["orders"] == 2


async def test_oversize_response_not_stored(web):
    for _ in range(2):
        response = await web.post("/big", key="big")
        assert response.status_code == 200
        assert len(response.content) > POLICY.max_response_bytes
        assert "idempotent-replayed" not in response.headers
    assert web.executions["big"] == 2
