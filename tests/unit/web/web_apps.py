# Copyright 2026 stalwart contributors
"""The same small service written for FastAPI and for Flask, with the web kit installed.

``/raise/<name>`` raises the exception ``RAISED[name]`` builds, so every row of the error
table is reached through a real handler; the messages hold "internals" that must never reach
a response body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from flask import Flask, abort
from flask import Request as FlaskRequest
from pydantic import BaseModel

from stalwart.config import SecretNotFound
from stalwart.idempotency import FingerprintMismatch, InProgress, InvalidIdempotencyKey
from stalwart.resilience import BulkheadFull, CircuitOpen, DeadlineExceeded
from stalwart.storage import (
    AlreadyExists,
    InvalidRecord,
    Key,
    StoreConfigurationError,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
)
from stalwart.web import ErrorRegistry, HttpProblem, default_errors
from stalwart.web.fastapi import install
from stalwart.web.flask import StalwartWeb, validated

SECRET = "dsn=postgres://ledger:hunter2@10.0.0.7/ledger"
"""In every raised exception's message: it must never appear in a body."""


class InsufficientFunds(Exception):
    """A domain error the apps register."""

    def __init__(self, balance: int) -> None:
        super().__init__(f"balance {balance} is too low")
        self.balance = balance


RAISED: dict[str, Callable[[], Exception]] = {
    "store-unavailable": lambda: StoreUnavailable(f"redis down: {SECRET}"),
    "version-conflict": lambda: VersionConflict(Key("acct", SECRET), 3, None),
    "already-exists": lambda: AlreadyExists(Key("acct", SECRET)),
    "transaction-conflict": lambda: TransactionConflict(0, None, SECRET),
    "invalid-record": lambda: InvalidRecord(SECRET),
    "store-configuration": lambda: StoreConfigurationError(SECRET),
    "circuit-open": lambda: CircuitOpen(SECRET, 2.2),
    "bulkhead-full": lambda: BulkheadFull(SECRET, "queue full"),
    "deadline-exceeded": lambda: DeadlineExceeded(SECRET),
    "idempotency-in-progress": lambda: InProgress(Key("idem", SECRET), 4.5),
    "idempotency-key-reused": lambda: FingerprintMismatch(Key("idem", SECRET)),
    "idempotency-key-invalid": lambda: InvalidIdempotencyKey("the key is longer than 255 chars"),
    "config": lambda: SecretNotFound(SECRET),
    "domain": lambda: InsufficientFunds(10),
    "http-problem": lambda: HttpProblem(
        409,
        "order-closed",
        "the order is closed",
        type_="https://example.com/problems/order-closed",
        headers={"X-Order-State": "closed"},
        extensions={"order": 7},
    ),
    "unhandled": lambda: RuntimeError(SECRET),
}


class Order(BaseModel):
    item: str
    qty: int


def registry() -> ErrorRegistry:
    errors = default_errors()
    errors.register(
        InsufficientFunds,
        status=422,
        code="insufficient-funds",
        type_="https://example.com/problems/insufficient-funds",
        detail=str,
        extensions=lambda exc: {"balance": exc.balance},
    )
    return errors


def principal_of(request: Request | FlaskRequest) -> str | None:
    user = request.headers.get("x-user")
    if user == "explode":
        raise LookupError("the user directory is down")
    return user


def make_fastapi() -> FastAPI:
    app = FastAPI()
    errors = install(app, errors=registry(), principal=principal_of)

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        return {"id": item_id}

    @app.api_route("/raise/{name}", methods=["GET", "PUT"], include_in_schema=False)
    def raise_named(name: str) -> None:  # sync: runs in the thread pool, context copied
        error = RAISED[name]()
        raise error

    @app.post("/orders", status_code=201)
    async def create_order(order: Order) -> dict[str, Any]:
        return order.model_dump()

    @app.get("/abort")
    async def abort_with_detail() -> None:
        raise HTTPException(404, "no such order")

    @app.post("/transfers", responses=errors.responses(InsufficientFunds, VersionConflict))
    async def transfer(order: Order) -> None:
        raise InsufficientFunds(order.qty)

    return app


def make_flask() -> Flask:
    app = Flask(__name__)
    StalwartWeb(app, errors=registry(), principal=principal_of)

    @app.get("/items/<int:item_id>")
    def get_item(item_id: int) -> dict[str, Any]:
        return {"id": item_id}

    @app.route("/raise/<name>", methods=["GET", "PUT"])
    def raise_named(name: str) -> None:
        error = RAISED[name]()
        raise error

    @app.post("/orders")
    def create_order() -> tuple[dict[str, Any], int]:
        return validated(Order).model_dump(), 201

    @app.get("/abort")
    def abort_with_detail() -> None:
        abort(404, "no such order")

    return app
