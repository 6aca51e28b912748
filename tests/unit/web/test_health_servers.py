# Copyright 2026 stalwart contributors
"""/livez and /readyz through real servers (FastAPI on uvicorn, Flask on werkzeug), one table
of cases for both, and a store check against a Redis server that is stopped mid-test."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask

from servers import own_redis_server, uvicorn_server, werkzeug_server
from stalwart.storage import StoreUnavailable, open_async_store, open_store
from stalwart.web import Health, store_check
from stalwart.web._fastapi_resources import health_router
from stalwart.web._flask_resources import health_blueprint

FRAMEWORKS = ("fastapi", "flask")
TIMEOUT_S = 0.3


@contextlib.contextmanager
def serve(
    framework: str, health: Health, on_close: Callable[[], Any] | None = None
) -> Iterator[str]:
    """Serve ``health``'s endpoints; ``on_close`` (a coroutine function for FastAPI, run on
    uvicorn's loop) runs at shutdown."""
    if framework == "fastapi":
        app = FastAPI()
        app.include_router(health_router(health))

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any) -> AsyncIterator[None]:
            yield
            if on_close is not None:
                await on_close()

        app.router.lifespan_context = lifespan
        with uvicorn_server(app) as base_url:
            yield base_url
        return
    flask_app = Flask(__name__)
    flask_app.register_blueprint(health_blueprint(health))
    with werkzeug_server(flask_app) as base_url:
        yield base_url
    if on_close is not None:
        on_close()


def down() -> None:
    raise StoreUnavailable("connection refused (password=hunter2)")


@dataclass(frozen=True)
class Case:
    name: str
    checks: dict[str, tuple[Callable[[], Any], bool]]
    """name → (probe, required)."""
    status: int
    document: dict[str, Any]
    """The /readyz body, ``duration_ms`` left out."""


def up_check(state: str = "up", *, required: bool = True, error: str | None = None) -> dict:
    check: dict[str, Any] = {"state": state, "required": required}
    if error:
        check["error"] = error
    return check


CASES = [
    Case(
        "all up",
        {"db": (lambda: True, True), "cache": (lambda: None, False)},
        200,
        {"status": "ok", "checks": {"db": up_check(), "cache": up_check(required=False)}},
    ),
    Case(
        "optional down",
        {"db": (lambda: True, True), "cache": (down, False)},
        200,
        {
            "status": "degraded",
            "checks": {
                "db": up_check(),
                "cache": up_check("down", required=False, error="StoreUnavailable"),
            },
        },
    ),
    Case(
        "required down",
        {"db": (lambda: False, True), "cache": (lambda: True, False)},
        503,
        {
            "status": "down",
            "checks": {"db": up_check("down"), "cache": up_check(required=False)},
        },
    ),
]


def without_durations(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    for check in document["checks"].values():
        assert isinstance(check.pop("duration_ms"), float)
    return document


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_readyz_on_both_frameworks(case):
    answers = {}
    for framework in FRAMEWORKS:
        health = Health(cache_s=0)
        for name, (probe, required) in case.checks.items():
            health.add(name, probe, required=required)
        with serve(framework, health) as base_url, httpx.Client(base_url=base_url) as client:
            ready, live = client.get("/readyz"), client.get("/livez")
            heads = (client.head("/readyz"), client.head("/livez"))
        assert [(head.status_code, head.content) for head in heads] == [
            (ready.status_code, b""),
            (200, b""),
        ]
        answers[framework] = (
            ready.status_code,
            ready.headers["content-type"],
            ready.headers["cache-control"],
            without_durations(ready.content),
            live.status_code,
            live.content,
            live.headers["content-type"],
        )
    assert answers["fastapi"] == answers["flask"]
    assert answers["flask"] == (
        case.status,
        "application/json",
        "no-store",
        case.document,
        200,  # liveness never depends on the checks
        b'{"status":"ok"}',
        "application/json",
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_hanging_check_is_down_within_its_timeout(framework):
    release = threading.Event()
    health = Health(cache_s=0, timeout_s=TIMEOUT_S)
    health.add("hangs", lambda: release.wait(30))
    try:
        with serve(framework, health) as base_url, httpx.Client(base_url=base_url) as client:
            for _ in range(3):
                began = time.monotonic()
                ready = client.get("/readyz")
                assert time.monotonic() - began < TIMEOUT_S + 1.0
                assert ready.status_code == 503
                assert json.loads(ready.content)["checks"]["hangs"]["error"] == "TimeoutError"
            hung = [t for t in threading.enumerate() if t.name == "stalwart-health-hangs"]
            assert len(hung) == 1
    finally:
        release.set()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_store_check_against_a_stopped_redis(framework):
    with own_redis_server() as redis:
        url = f"{redis.url}?prefix=health"
        health = Health(cache_s=0, timeout_s=2.0)
        store: Any = open_async_store(url) if framework == "fastapi" else open_store(url)
        health.add("store", store_check(store))
        with (
            serve(framework, health, on_close=store.close) as base_url,
            httpx.Client(base_url=base_url, timeout=10) as client,
        ):
            up = client.get("/readyz")
            redis.stop()
            stopped = client.get("/readyz")
            live = client.get("/livez")
    assert up.status_code == 200, up.text
    assert stopped.status_code == 503, stopped.text
    assert json.loads(stopped.content)["checks"]["store"]["error"] == "StoreUnavailable"
    assert live.status_code == 200
