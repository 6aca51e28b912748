# Copyright 2026 stalwart contributors
"""Small FastAPI and Flask apps used by the idempotency HTTP tests (unit and real-server)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from flask import Flask, abort, jsonify
from flask import Request as FlaskRequest
from flask import request as flask_request
from pydantic import BaseModel

from stalwart.idempotency import AsyncIdempotency, HttpPolicy, Idempotency, idempotency_options
from stalwart.idempotency.fastapi import idempotent_route_class
from stalwart.idempotency.flask import FlaskIdempotency


class Order(BaseModel):
    item: str
    qty: int = 1


def tenant_of(request: Request | FlaskRequest) -> str | None:
    return request.headers.get("x-tenant")


def make_fastapi(  # noqa: C901 - one small route per behaviour under test
    layer: AsyncIdempotency, policy: HttpPolicy | None = None, delay: float = 0.0
) -> tuple[FastAPI, Counter[str], dict[str, Any]]:
    executions: Counter[str] = Counter()
    state: dict[str, Any] = {"gate": None, "started": None}
    app = FastAPI()
    router = APIRouter(route_class=idempotent_route_class(layer, policy, principal=tenant_of))

    @router.post("/orders", status_code=201)
    async def create_order(order: Order, request: Request) -> JSONResponse:
        executions["orders"] += 1
        n = executions["orders"]
        if state["started"] is not None:
            state["started"].set()
        if state["gate"] is not None:
            await state["gate"].wait()
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse(
            {
                "item": order.item,
                "qty": order.qty,
                "n": n,
                "tenant": request.headers.get("x-tenant"),
            },
            status_code=201,
            headers={
                "Location": f"/orders/{n}",
                "Set-Cookie": "secret=1",
                "X-Private": "no",
            },
        )

    @router.patch("/orders/{order_id}")
    async def patch_order(order_id: int, order: Order) -> dict[str, Any]:
        executions["patch"] += 1
        return {"id": order_id, "item": order.item}

    @router.post("/fail")
    async def fail() -> dict[str, str]:
        executions["fail"] += 1
        if executions["fail"] == 1:
            raise RuntimeError("boom")
        return {"ok": "second time"}

    @router.post("/server-error")
    async def server_error() -> JSONResponse:
        executions["server-error"] += 1
        return JSONResponse({"n": executions["server-error"]}, status_code=503)

    @router.post("/not-found")
    async def not_found() -> None:
        executions["not-found"] += 1
        raise HTTPException(404, "no such thing")

    def require_token(request: Request) -> None:
        if request.headers.get("authorization") != "Bearer ok":
            raise HTTPException(401, "no token")

    @router.post("/guarded", dependencies=[Depends(require_token)])
    async def guarded() -> dict[str, int]:
        executions["guarded"] += 1
        return {"n": executions["guarded"]}

    @router.post("/sync-not-found")
    def sync_not_found() -> None:
        executions["sync-not-found"] += 1
        raise HTTPException(404, "no such thing")

    @router.post("/big")
    async def big() -> dict[str, str]:
        executions["big"] += 1
        return {"blob": "x" * 5000}

    @router.post("/stream")
    async def stream() -> StreamingResponse:
        executions["stream"] += 1

        async def chunks() -> Any:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks())

    @router.post("/exempt")
    @idempotency_options(enabled=False)
    async def exempt() -> dict[str, int]:
        executions["exempt"] += 1
        return {"n": executions["exempt"]}

    @router.put("/required/{name}")
    @idempotency_options(key_required=True)
    async def required(name: str) -> dict[str, str]:
        executions["required"] += 1
        return {"name": name}

    @router.get("/plain")
    async def plain() -> dict[str, int]:
        executions["plain"] += 1
        return {"n": executions["plain"]}

    app.include_router(router)
    return app, executions, state


def make_flask(  # noqa: C901 - one small route per behaviour under test
    layer: Idempotency, policy: HttpPolicy | None = None, delay: float = 0.0
) -> tuple[Flask, Counter[str], dict[str, Any]]:
    executions: Counter[str] = Counter()
    lock = threading.Lock()
    state: dict[str, Any] = {"gate": None, "started": None}
    app = Flask(__name__)
    FlaskIdempotency(app, layer=layer, policy=policy, principal=tenant_of)

    def count(name: str) -> int:
        with lock:
            executions[name] += 1
            return executions[name]

    @app.post("/orders")
    def create_order() -> Any:
        n = count("orders")
        if state["started"] is not None:
            state["started"].set()
        if state["gate"] is not None:
            state["gate"].wait(10)
        if delay:
            time.sleep(delay)
        body = flask_request.get_json()
        response = jsonify(
            {
                "item": body["item"],
                "qty": body.get("qty", 1),
                "n": n,
                "tenant": flask_request.headers.get("x-tenant"),
            }
        )
        response.status_code = 201
        response.headers["Location"] = f"/orders/{n}"
        response.headers["Set-Cookie"] = "secret=1"
        return response

    @app.patch("/orders/<int:order_id>")
    def patch_order(order_id: int) -> Any:
        count("patch")
        return {"id": order_id, "item": flask_request.get_json()["item"]}

    @app.post("/fail")
    def fail() -> Any:
        if count("fail") == 1:
            raise RuntimeError("boom")
        return {"ok": "second time"}

    @app.post("/server-error")
    def server_error() -> Any:
        return {"n": count("server-error")}, 503

    @app.post("/not-found")
    def not_found() -> Any:
        count("not-found")
        abort(404)

    @app.post("/big")
    def big() -> Any:
        count("big")
        return {"blob": "x" * 5000}

    @app.post("/stream")
    def stream() -> Any:
        count("stream")
        return app.response_class(iter([b"a", b"b"]))

    @app.post("/exempt")
    @idempotency_options(enabled=False)
    def exempt() -> Any:
        return {"n": count("exempt")}

    @app.put("/required/<name>")
    @idempotency_options(key_required=True)
    def required(name: str) -> Any:
        count("required")
        return {"name": name}

    @app.get("/plain")
    def plain() -> Any:
        return {"n": count("plain")}

    return app, executions, state
