# Copyright 2026 stalwart contributors
"""The HTTP semantics, identical for FastAPI and Flask (in-memory store, in-process clients).

The storm through real servers on real engines is in tests/integration/.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.requests import Request

from stalwart.idempotency import (
    AsyncIdempotency,
    HttpPolicy,
    Idempotency,
    IdempotencyPolicy,
    InvalidIdempotencyKey,
    parse_idempotency_key,
)
from stalwart.idempotency._http import HttpReply, HttpRequest, request_fingerprint
from stalwart.idempotency.fastapi import idempotent_route_class, install_idempotency
from stalwart.storage import StoreUnavailable
from stalwart.web import PROBLEM_JSON
from unit.idempotency.idem_apps import make_fastapi, make_flask
from unit.idempotency.idem_memory_store import AsyncMemoryStore, MemoryStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

POLICY = HttpPolicy(max_response_bytes=2000, fingerprint_headers=("x-currency",))


class Harness:
    """One app (FastAPI or Flask) behind an async httpx client."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "fastapi":
            app, self.executions, self.state = make_fastapi(
                AsyncIdempotency(AsyncMemoryStore(), IdempotencyPolicy(lease=5)), POLICY
            )
            transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=app)
        else:
            app, self.executions, self.state = make_flask(
                Idempotency(MemoryStore(), IdempotencyPolicy(lease=5)), POLICY
            )
            self.flask = app
            transport = httpx.ASGITransport(app=_wsgi_to_asgi(app))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://test")

    async def post(
        self, path: str, body: Any = None, key: str | None = None, **headers: str
    ) -> httpx.Response:
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.client.post(path, json=body if body is not None else {}, headers=headers)


def _wsgi_to_asgi(app: Any) -> Any:
    # httpx has no sync WSGI transport for an AsyncClient; run the WSGI app in a thread.
    wsgi = httpx.WSGITransport(app=app)

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode()
        url = f"http://test{scope['path']}" + (f"?{query}" if query else "")
        request = httpx.Request(
            scope["method"],
            url,
            content=body,
            headers=[(k.decode(), v.decode()) for k, v in scope["headers"]],
        )
        response = await asyncio.to_thread(wsgi.handle_request, request)
        content = await asyncio.to_thread(response.read)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (k.encode(), v.encode())
                    for k, v in response.headers.multi_items()
                    if k.lower() != "content-length"
                ]
                + [(b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})

    return asgi


@pytest.fixture(params=["fastapi", "flask"])
async def web(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    harness = Harness(request.param)
    yield harness
    await harness.client.aclose()


def test_parse_key_forms() -> None:
    assert parse_idempotency_key('"a b\\"c"') == 'a b"c'
    assert parse_idempotency_key("  tok:en/1 ") == "tok:en/1"
    assert parse_idempotency_key('"' + "k" * 255 + '"') == "k" * 255
    for bad in (
        '""',
        "",
        '"' + "k" * 256 + '"',
        "k" * 256,
        '"open',
        '"a"b',
        "a b",
        "a,b",
        "a;b",
        "a\\b",
        "é",
        '"\\n"',
        '"é"',
    ):
        with pytest.raises(InvalidIdempotencyKey):
            parse_idempotency_key(bad)


def test_fingerprint_canonicalises_json_and_query() -> None:
    def fp(body: bytes, query: str = "", ctype: str = "application/json", **h: str) -> str:
        return request_fingerprint(
            POLICY, HttpRequest("POST", "/r", "/r", query, body, {"content-type": ctype, **h})
        )

    assert fp(b'{"a":1,"b":2}') == fp(b'{ "b": 2, "a": 1 }')
    assert fp(b'{"a":1}') != fp(b'{"a":2}')
    assert fp(b"", "x=1&y=2") == fp(b"", "y=2&x=1")
    assert fp(b"", "x=1") != fp(b"", "x=2")
    assert fp(b"{}", **{"x-currency": "EUR"}) != fp(b"{}", **{"x-currency": "USD"})
    assert fp(b"a b", ctype="text/plain") != fp(b"a  b", ctype="text/plain")


def test_reply_round_trip_binary() -> None:
    reply = HttpReply(200, (("content-type", "application/octet-stream"),), bytes(range(256)))
    assert HttpReply.from_json(json.loads(json.dumps(reply.to_json()))) == reply


async def test_replay_with_allow_listed_headers(web: Harness) -> None:
    first = await web.post("/orders", {"item": "tea"}, key='"k-1"')
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await web.post("/orders", {"item": "tea"}, key="k-1")  # bare token == same key
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"].startswith("application/json")
    assert "set-cookie" not in again.headers
    assert web.executions["orders"] == 1


async def test_no_key_runs_every_time_unless_required(web: Harness) -> None:
    await web.post("/orders", {"item": "tea"})
    await web.post("/orders", {"item": "tea"})
    assert web.executions["orders"] == 2
    response = await web.client.put("/required/x")
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "idempotency-key-missing"
    ok = await web.client.put("/required/x", headers={"Idempotency-Key": "r1"})
    replay = await web.client.put("/required/x", headers={"Idempotency-Key": "r1"})
    assert ok.status_code == replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert web.executions["required"] == 1


@pytest.mark.parametrize("bad", ['""', "x" * 256, '"unterminated'])
async def test_bad_key_is_400_problem(web: Harness, bad: str) -> None:
    response = await web.post("/orders", {"item": "tea"}, key=bad)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == 400
    assert problem["title"] == "Bad Request"
    assert problem["code"] == "idempotency-key-invalid"
    assert web.executions["orders"] == 0


async def test_mismatch_is_422(web: Harness) -> None:
    await web.post("/orders", {"item": "tea"}, key="m")
    response = await web.post("/orders", {"item": "coffee"}, key="m")
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency-key-reused"
    other_header = await web.post("/orders", {"item": "tea"}, key="m", **{"X-Currency": "USD"})
    assert other_header.status_code == 422
    assert web.executions["orders"] == 1


async def test_in_progress_is_409_with_retry_after(web: Harness) -> None:
    started = asyncio.Event() if web.kind == "fastapi" else threading.Event()
    gate = asyncio.Event() if web.kind == "fastapi" else threading.Event()
    web.state["started"], web.state["gate"] = started, gate
    first = asyncio.create_task(web.post("/orders", {"item": "tea"}, key="busy"))
    if web.kind == "fastapi":
        await asyncio.wait_for(started.wait(), 5)  # type: ignore[union-attr]
    else:
        await asyncio.to_thread(started.wait, 5)
    response = await web.post("/orders", {"item": "tea"}, key="busy")
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert 1 <= int(response.headers["retry-after"]) <= 5
    gate.set()
    assert (await first).status_code == 201
    replay = await web.post("/orders", {"item": "tea"}, key="busy")
    assert replay.headers["idempotent-replayed"] == "true"
    assert web.executions["orders"] == 1


async def test_tenants_are_isolated(web: Harness) -> None:
    a = await web.post("/orders", {"item": "tea"}, key="same", **{"X-Tenant": "a"})
    b = await web.post("/orders", {"item": "tea"}, key="same", **{"X-Tenant": "b"})
    assert a.json()["tenant"] == "a"
    assert b.json()["tenant"] == "b"
    assert "idempotent-replayed" not in b.headers
    assert web.executions["orders"] == 2


async def test_routes_and_methods_are_separate_scopes(web: Harness) -> None:
    await web.post("/orders", {"item": "tea"}, key="k")
    patched = await web.client.patch(
        "/orders/7", json={"item": "tea"}, headers={"Idempotency-Key": "k"}
    )
    assert patched.status_code == 200
    assert "idempotent-replayed" not in patched.headers
    other_id = await web.client.patch(
        "/orders/8", json={"item": "tea"}, headers={"Idempotency-Key": "k"}
    )
    assert other_id.status_code == 422  # same route template and key, other path
    assert web.executions["patch"] == 1


async def test_exceptions_and_5xx_release(web: Harness) -> None:
    if web.kind == "flask":
        web.flask.config["PROPAGATE_EXCEPTIONS"] = False
        first = await web.post("/fail", key="f")
        assert first.status_code == 500
    else:
        with pytest.raises(RuntimeError):
            await web.post("/fail", key="f")
    second = await web.post("/fail", key="f")
    assert second.status_code == 200
    assert second.json() == {"ok": "second time"}
    for expected in (1, 2):
        response = await web.post("/server-error", key="s")
        assert response.status_code == 503
        assert response.json() == {"n": expected}


async def test_handled_4xx_is_stored(web: Harness) -> None:
    for _ in range(2):
        response = await web.post("/not-found", key="nf")
        assert response.status_code == 404
    assert response.headers["idempotent-replayed"] == "true"
    assert web.executions["not-found"] == 1


async def test_oversize_and_streaming_not_stored(
    web: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):
        response = await web.post("/big", key="b")
        assert response.status_code == 200
        assert "idempotent-replayed" not in response.headers
        streamed = await web.post("/stream", key="st")
        assert streamed.content == b"ab"
    assert web.executions["big"] == 2
    assert web.executions["stream"] == 2
    assert "not stored" in caplog.text


async def test_opt_out_and_safe_methods(web: Harness) -> None:
    for _ in range(2):
        await web.post("/exempt", key="e")
        await web.client.get("/plain", headers={"Idempotency-Key": "p"})
    assert web.executions["exempt"] == 2
    assert web.executions["plain"] == 2


@pytest.mark.parametrize("kind", ["fastapi", "flask"])
async def test_malformed_json_body_not_stored(kind: str) -> None:
    """FastAPI rejects it in validation (422), Flask in ``request.get_json()`` (400): neither
    is the handler's result, so neither is stored -- the same key runs a valid body next."""
    harness = Harness(kind)
    headers = {"Idempotency-Key": "m", "content-type": "application/json"}
    for _ in range(2):
        bad = await harness.client.post("/orders", content=b'{"item": ', headers=headers)
        assert bad.status_code in (400, 422)
        assert "idempotent-replayed" not in bad.headers
    good = await harness.client.post("/orders", content=b'{"item": "tea"}', headers=headers)
    assert good.status_code == 201
    assert "idempotent-replayed" not in good.headers
    assert harness.executions["orders"] == (1 if kind == "fastapi" else 3)
    await harness.client.aclose()


async def test_fastapi_validation_failures_not_stored() -> None:
    harness = Harness("fastapi")
    bad = await harness.post("/orders", {"qty": "many"}, key="v")
    assert bad.status_code == 422
    assert "code" not in bad.json()  # FastAPI's own validation error, not a key reuse
    good = await harness.post("/orders", {"item": "tea"}, key="v2")
    assert good.status_code == 201
    again = await harness.post("/orders", {"qty": "many"}, key="v")
    assert again.status_code == 422
    assert "idempotent-replayed" not in again.headers
    assert harness.executions["orders"] == 1


def test_fastapi_openapi_documents_the_header() -> None:
    app, _, _ = make_fastapi(AsyncIdempotency(AsyncMemoryStore()), POLICY)
    paths = app.openapi()["paths"]
    post = paths["/orders"]["post"]
    header = next(p for p in post["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header"
    assert header["required"] is False
    assert set(header["examples"]) == {"structured", "token"}
    assert {"400", "409", "422"} <= set(post["responses"])
    assert "Retry-After" in post["responses"]["409"]["headers"]
    assert "201" in post["responses"]  # the route's own response survives
    assert post["responses"]["201"]["description"] == "Successful Response"
    assert "Idempotent-Replayed" in post["responses"]["201"]["headers"]
    assert "content" in post["responses"]["201"]
    required = next(
        p for p in paths["/required/{name}"]["put"]["parameters"] if p["name"] == "Idempotency-Key"
    )
    assert required["required"] is True
    assert "parameters" not in paths["/exempt"]["post"]
    assert "parameters" not in paths["/plain"]["get"]
    assert any(
        p["name"] == "Idempotency-Key" for p in paths["/orders/{order_id}"]["patch"]["parameters"]
    )


class BrokenStore(MemoryStore):
    def create(self, key, data, *, ttl=None):
        raise StoreUnavailable("connection refused")


async def test_store_unavailable_is_503_and_handler_not_run() -> None:
    fast_app, fast_runs, _ = make_fastapi(AsyncIdempotency(AsyncMemoryStore(BrokenStore())))
    flask_app, flask_runs, _ = make_flask(Idempotency(BrokenStore()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fast_app), base_url="http://t"
    ) as client:
        fast = await client.post("/orders", json={"item": "tea"}, headers={"Idempotency-Key": "k"})
    with httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url="http://t") as sync:
        slow = await asyncio.to_thread(
            sync.post, "/orders", json={"item": "tea"}, headers={"Idempotency-Key": "k"}
        )
    for response in (fast, slow):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["code"] == "idempotency-store-unavailable"
    assert fast_runs["orders"] == flask_runs["orders"] == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", ["fastapi", "flask"])
async def test_late_completion_is_fenced_and_logged(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    policy = IdempotencyPolicy(lease=5, clock=clock)
    if kind == "fastapi":
        app, runs, state = make_fastapi(AsyncIdempotency(AsyncMemoryStore(), policy))
        started, gate = asyncio.Event(), asyncio.Event()
        transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=app)
    else:
        flask_app, runs, state = make_flask(Idempotency(MemoryStore(), policy))
        started, gate = threading.Event(), threading.Event()  # type: ignore[assignment]
        transport = httpx.ASGITransport(app=_wsgi_to_asgi(flask_app))
    state["started"], state["gate"] = started, gate
    headers = {"Idempotency-Key": "slow"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        stalled = asyncio.create_task(client.post("/orders", json={"item": "a"}, headers=headers))
        if kind == "fastapi":
            await asyncio.wait_for(started.wait(), 5)
        else:
            await asyncio.to_thread(started.wait, 5)
        state["started"] = state["gate"] = None
        clock.now += 6  # the stalled request's lease is over
        fresh = await client.post("/orders", json={"item": "a"}, headers=headers)
        assert fresh.status_code == 201
        assert fresh.json()["n"] == 2
        gate.set()
        with caplog.at_level(logging.ERROR, logger="stalwart.idempotency"):
            late = await stalled
        assert late.status_code == 201  # the late client still gets what its handler made
        assert late.json()["n"] == 1
        assert "completion refused" in caplog.text
        replay = await client.post("/orders", json={"item": "a"}, headers=headers)
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["n"] == 2  # the new owner's record was not overwritten
    assert runs["orders"] == 2


async def test_fastapi_dependency_rejections_not_stored_endpoint_errors_stored() -> None:
    harness = Harness("fastapi")
    denied = await harness.post("/guarded", key="g")
    assert denied.status_code == 401
    allowed = await harness.post("/guarded", key="g", authorization="Bearer ok")
    assert allowed.status_code == 200
    assert "idempotent-replayed" not in allowed.headers  # the 401 was not stored
    replay = await harness.post("/guarded", key="g", authorization="Bearer ok")
    assert replay.headers["idempotent-replayed"] == "true"
    assert harness.executions["guarded"] == 1
    for _ in range(2):  # a sync endpoint (worker thread) raising: its result, stored
        missing = await harness.post("/sync-not-found", key="s")
        assert missing.status_code == 404
    assert missing.headers["idempotent-replayed"] == "true"
    assert harness.executions["sync-not-found"] == 1
    await harness.client.aclose()


def _app() -> tuple[Any, Any]:
    store = AsyncMemoryStore()
    app, executions, _ = make_fastapi(AsyncIdempotency(store, IdempotencyPolicy(lease=5)))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ), executions


async def test_fastapi_invalid_json_not_stored_and_json_compared_parsed() -> None:
    client, executions = _app()
    async with client:
        headers = {"Idempotency-Key": "k1", "content-type": "application/json"}
        bad = await client.post("/orders", content=b'{"item": ', headers=headers)
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["type"] == "json_invalid"
        good = await client.post("/orders", content=b'{"qty": 2, "item": "tea"}', headers=headers)
        assert good.status_code == 201
        assert good.json()["qty"] == 2
        same = await client.post("/orders", content=b'{"item":"tea","qty":2}', headers=headers)
        assert same.headers["idempotent-replayed"] == "true"
        assert same.json() == good.json()
    assert executions["orders"] == 1


async def test_deeply_nested_json_still_answers_a_bad_key_first() -> None:
    client, executions = _app()
    deep = b"[" * 100_000 + b"]" * 100_000
    async with client:
        bad_key = await client.post(
            "/orders",
            content=deep,
            headers={"Idempotency-Key": '"unterminated', "content-type": "application/json"},
        )
    assert bad_key.status_code == 400
    assert bad_key.json()["code"] == "idempotency-key-invalid"
    assert executions["orders"] == 0


async def test_async_principal_scopes_the_key() -> None:
    calls: list[str | None] = []

    async def principal(request: Request) -> str | None:
        await asyncio.sleep(0)
        return request.headers.get("x-tenant")

    router = APIRouter(
        route_class=idempotent_route_class(
            AsyncIdempotency(AsyncMemoryStore()), principal=principal
        )
    )

    @router.post("/pay")
    async def pay(request: Request) -> dict[str, int]:
        calls.append(request.headers.get("x-tenant"))
        return {"n": len(calls)}

    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        headers = {"Idempotency-Key": "same"}
        first = await client.post("/pay", json={}, headers={**headers, "x-tenant": "a"})
        other = await client.post("/pay", json={}, headers={**headers, "x-tenant": "b"})
        replay = await client.post("/pay", json={}, headers={**headers, "x-tenant": "a"})
        anonymous = await client.post("/pay", json={}, headers=headers)
    assert [first.json(), other.json(), replay.json(), anonymous.json()] == [
        {"n": 1},
        {"n": 2},
        {"n": 1},
        {"n": 3},
    ]
    assert replay.headers["idempotent-replayed"] == "true"
    assert calls == ["a", "b", None]


async def test_install_idempotency_guards_the_apps_routes_and_refuses_late_calls() -> None:
    layer = AsyncIdempotency(AsyncMemoryStore())
    app = FastAPI()
    install_idempotency(app, layer)
    runs: list[int] = []

    @app.post("/pay")
    async def pay() -> dict[str, int]:
        runs.append(1)
        return {"n": len(runs)}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        for _ in range(2):
            response = await client.post("/pay", headers={"Idempotency-Key": "k"})
    assert response.headers["idempotent-replayed"] == "true"
    assert runs == [1]

    # Routes that exist already would silently stay unguarded: refused, naming them.
    with pytest.raises(RuntimeError, match="POST /pay"):
        install_idempotency(app, layer)
    router = APIRouter()
    router.add_api_route("/late", pay, methods=["PATCH"])
    with pytest.raises(RuntimeError, match="PATCH /late"):
        install_idempotency(router, layer)
    assert router.route_class is not app.router.route_class
