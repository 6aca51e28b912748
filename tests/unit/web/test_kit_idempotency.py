# Copyright 2026 stalwart contributors
"""The idempotency layer and the web kit installed together, through real servers: the
layer's own 400/409/422 problems still answer, with the request id in the header and body."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask, request

from servers import uvicorn_server, werkzeug_server
from stalwart.idempotency import AsyncIdempotency, Idempotency
from stalwart.idempotency.fastapi import install_idempotency
from stalwart.idempotency.flask import FlaskIdempotency
from stalwart.storage import open_async_store, open_store
from stalwart.web.fastapi import install
from stalwart.web.flask import StalwartWeb


class Gate:
    """Holds a request inside its handler until released (to get a 409 in progress)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self, item: str) -> None:
        if item == "slow":
            self.entered.set()
            assert self.release.wait(10)


def fastapi_app(url: str, gate: Gate) -> FastAPI:
    app = FastAPI()
    install(app)
    install_idempotency(app, AsyncIdempotency(open_async_store(url)))

    @app.post("/orders", status_code=201)
    def create(order: dict[str, Any]) -> dict[str, Any]:  # sync: the gate blocks a thread
        gate.hold(order["item"])
        return order

    return app


def flask_app(url: str, gate: Gate) -> Flask:
    app = Flask(__name__)
    # Installed first on purpose: the kit's hooks still run first (before) and last (after).
    FlaskIdempotency(app, layer=Idempotency(open_store(url)))
    StalwartWeb(app)

    @app.post("/orders")
    def create() -> tuple[dict[str, Any], int]:
        order = request.get_json()
        gate.hold(order["item"])
        return order, 201

    return app


SERVERS: dict[str, Callable[[Any], AbstractContextManager[str]]] = {
    "fastapi": uvicorn_server,
    "flask": werkzeug_server,
}
APPS = {"fastapi": fastapi_app, "flask": flask_app}


@pytest.fixture(params=["fastapi", "flask"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Gate]]:
    gate = Gate()
    app = APPS[request.param](f"sqlite:///{tmp_path / 'idem.db'}?table=idem", gate)
    with SERVERS[request.param](app) as base_url:
        yield base_url, gate
    gate.release.set()


def post(base: str, key: str, item: str, request_id: str) -> httpx.Response:
    return httpx.post(
        f"{base}/orders",
        json={"item": item},
        headers={"Idempotency-Key": key, "X-Request-ID": request_id},
        timeout=15,
    )


def assert_problem(response: httpx.Response, status: int, code: str, request_id: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == request_id
    body = response.json()
    assert (body["code"], body["request_id"]) == (code, request_id)


def test_idempotency_problems_carry_the_request_id(served: tuple[str, Gate]) -> None:
    base, gate = served
    first = post(base, "k1", "tea", "idem-first")
    assert first.status_code == 201
    assert first.headers["x-request-id"] == "idem-first"
    replay = post(base, "k1", "tea", "idem-replay")
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers.get_list("x-request-id") == ["idem-replay"]  # never the stored one
    assert_problem(
        post(base, "k1", "coffee", "idem-422"), 422, "idempotency-key-reused", "idem-422"
    )
    assert_problem(
        post(base, '"unterminated', "tea", "idem-400"), 400, "idempotency-key-invalid", "idem-400"
    )
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(post, base, "k2", "slow", "idem-slow")
        assert gate.entered.wait(10)
        busy = post(base, "k2", "slow", "idem-409")
        gate.release.set()
        assert slow.result().status_code == 201
    assert_problem(busy, 409, "idempotency-in-progress", "idem-409")
    assert "retry-after" in busy.headers
