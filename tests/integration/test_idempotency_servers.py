# Copyright 2026 stalwart contributors
"""The duplicate storm through real HTTP servers: uvicorn (FastAPI, async store) and werkzeug's
threaded server (Flask, sync store), on every engine, 200 concurrent requests with one key; and
the same servers refusing to store a malformed JSON body's rejection."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from conftest import ENGINES
from servers import uvicorn_server, werkzeug_server
from stalwart.idempotency import AsyncIdempotency, Idempotency, IdempotencyPolicy
from stalwart.storage import open_async_store, open_store
from unit.idempotency.idem_apps import make_fastapi, make_flask

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

STORM = 200
ROUNDS = 2
HANDLER_S = 0.3


async def storm(base_url: str, key: str) -> Counter[int]:
    limits = httpx.Limits(max_connections=STORM, max_keepalive_connections=STORM)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        start = asyncio.Event()

        async def one() -> httpx.Response:
            await start.wait()
            return await client.post(
                "/orders", json={"item": "tea"}, headers={"Idempotency-Key": key}
            )

        tasks = [asyncio.create_task(one()) for _ in range(STORM)]
        await asyncio.sleep(0)
        start.set()
        responses = await asyncio.gather(*tasks)
    statuses = Counter(r.status_code for r in responses)
    bodies = {r.content for r in responses if r.status_code == 201}
    assert len(bodies) == 1, "every 201 must carry the one stored response"
    return statuses


def check(statuses: Counter[int], executions: Counter[str]) -> None:
    assert executions["orders"] == 1, (executions, statuses)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
async def test_fastapi_uvicorn_storm(engine, store_url_factory):
    url = store_url_factory(engine)()
    for round_ in range(ROUNDS):
        store = open_async_store(url)
        app, executions, _ = make_fastapi(
            AsyncIdempotency(store, IdempotencyPolicy(lease=30)), delay=HANDLER_S
        )

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any, store: Any = store) -> AsyncIterator[None]:
            # The async client connects on uvicorn's loop, so it is closed there too.
            yield
            await store.close()

        app.router.lifespan_context = lifespan
        with uvicorn_server(app) as base_url:
            statuses = await storm(base_url, f"fastapi-{round_}")
        check(statuses, executions)


async def malformed_then_valid(base_url: str) -> list[httpx.Response]:
    """Two malformed JSON bodies, then a valid one, all with one key."""
    headers = {"Idempotency-Key": "malformed", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return [
            await client.post("/orders", content=body, headers=headers)
            for body in (b'{"item": ', b'{"item": ', b'{"item": "tea"}')
        ]


def check_not_stored(responses: list[httpx.Response], rejected: int) -> None:
    """The rejection is never replayed and does not hold the key: the valid body runs."""
    assert [r.status_code for r in responses] == [rejected, rejected, 201]
    assert all("idempotent-replayed" not in r.headers for r in responses)


@pytest.mark.parametrize("engine", ENGINES)
async def test_fastapi_uvicorn_malformed_json_not_stored(engine, store_url_factory):
    store = open_async_store(store_url_factory(engine)())
    app, executions, _ = make_fastapi(AsyncIdempotency(store))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        await store.close()

    app.router.lifespan_context = lifespan
    with uvicorn_server(app) as base_url:
        check_not_stored(await malformed_then_valid(base_url), 422)
    assert executions["orders"] == 1


@pytest.mark.parametrize("engine", ENGINES)
async def test_flask_werkzeug_malformed_json_not_stored(engine, store_url_factory):
    store = open_store(store_url_factory(engine)())
    try:
        app, _, _ = make_flask(Idempotency(store))
        with werkzeug_server(app) as base_url:
            responses = await malformed_then_valid(base_url)
        check_not_stored(responses, 400)
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
async def test_flask_werkzeug_storm(engine, store_url_factory):
    url = store_url_factory(engine)()
    store = open_store(url)
    try:
        for round_ in range(ROUNDS):
            app, executions, _ = make_flask(
                Idempotency(store, IdempotencyPolicy(lease=30)), delay=HANDLER_S
            )
            with werkzeug_server(app) as base_url:
                statuses = await storm(base_url, f"flask-{round_}")
            check(statuses, executions)
    finally:
        store.close()
