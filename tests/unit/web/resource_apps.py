# Copyright 2026 stalwart contributors
"""The same items resource (conditional GET/PUT/PATCH/DELETE) and health endpoints, as a
FastAPI app on an async store and as a Flask app on a sync store.

Both run the whole web kit (``install`` / ``StalwartWeb``, with ``health``). No ``from
__future__ import annotations``: FastAPI reads the handlers' annotations at runtime.
"""

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI
from fastapi import Response as FastAPIResponse
from flask import Flask
from flask import Response as FlaskResponse
from flask import request as flask_request

from stalwart.storage import AsyncStore, Key, Store
from stalwart.web import Health, HttpProblem, IfNoneMatch, Precondition
from stalwart.web.fastapi import (
    if_match,
    if_none_match,
    install,
    not_modified,
    read_responses,
    set_etag,
    write_responses,
)
from stalwart.web.flask import StalwartWeb
from stalwart.web.flask import if_match as flask_if_match
from stalwart.web.flask import if_none_match as flask_if_none_match
from stalwart.web.flask import not_modified as flask_not_modified
from stalwart.web.flask import set_etag as flask_set_etag

JSON = "application/json"


def item_key(item_id: str) -> Key:
    return Key("items", item_id)


Conditional = Annotated[Precondition, Depends(if_match(item_key))]


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def not_found() -> HttpProblem:
    return HttpProblem(404, "not-found", "no such item")


class Observed:
    """What the PATCH handlers saw: the version each one read before writing."""

    def __init__(self) -> None:
        self.read_versions: list[int] = []


def make_fastapi(
    store: AsyncStore, health: Health | None = None, *, patch_pause_s: float = 0.0
) -> tuple[FastAPI, Observed]:
    app = FastAPI()
    observed = Observed()

    install(app, health=health)

    @app.post("/items/{item_id}", status_code=201)
    async def create(item_id: str, data: Annotated[dict[str, Any], Body()]) -> FastAPIResponse:
        record = await store.create(item_key(item_id), data)
        response = FastAPIResponse(encode(record.data), status_code=201, media_type=JSON)
        set_etag(response, record)
        return response

    @app.get("/items/{item_id}", responses=read_responses())
    async def read(
        item_id: str, cached: Annotated[IfNoneMatch, Depends(if_none_match)]
    ) -> FastAPIResponse:
        record = await store.get(item_key(item_id))
        if record is None:
            raise not_found()
        if cached.matches(record):
            return not_modified(record)
        response = FastAPIResponse(encode(record.data), media_type=JSON)
        set_etag(response, record)
        return response

    @app.put("/items/{item_id}", responses=write_responses())
    async def put(
        item_id: str, data: Annotated[dict[str, Any], Body()], precondition: Conditional
    ) -> FastAPIResponse:
        version = precondition.expected_version
        if version is None:
            version = precondition.require(await store.get(item_key(item_id))).version
        record = await store.replace(item_key(item_id), data, expected_version=version)
        response = FastAPIResponse(encode(record.data), media_type=JSON)
        set_etag(response, record)
        return response

    @app.patch("/items/{item_id}", responses=write_responses())
    async def patch(
        item_id: str, changes: Annotated[dict[str, Any], Body()], precondition: Conditional
    ) -> FastAPIResponse:
        current = precondition.require(await store.get(item_key(item_id)))
        observed.read_versions.append(current.version)
        await asyncio.sleep(patch_pause_s)
        record = await store.replace(
            item_key(item_id), {**current.data, **changes}, expected_version=current.version
        )
        response = FastAPIResponse(encode(record.data), media_type=JSON)
        set_etag(response, record)
        return response

    @app.delete("/items/{item_id}", status_code=204, responses=write_responses(204, etag=False))
    async def delete(item_id: str, precondition: Conditional) -> FastAPIResponse:
        version = precondition.expected_version
        if version is None:
            version = precondition.require(await store.get(item_key(item_id))).version
        await store.delete(item_key(item_id), expected_version=version)
        return FastAPIResponse(status_code=204)

    return app, observed


def make_flask(  # noqa: C901 - one app, its routes side by side with the FastAPI twin
    store: Store, health: Health | None = None, *, patch_pause_s: float = 0.0
) -> tuple[Flask, Observed]:
    app = Flask(__name__)
    observed = Observed()

    StalwartWeb(app, health=health)

    def body() -> dict[str, Any]:
        data = flask_request.get_json()
        assert isinstance(data, dict)
        return data

    @app.post("/items/<item_id>")
    def create(item_id: str) -> FlaskResponse:
        record = store.create(item_key(item_id), body())
        return flask_set_etag(FlaskResponse(encode(record.data), 201, content_type=JSON), record)

    @app.get("/items/<item_id>")
    def read(item_id: str) -> FlaskResponse:
        cached = flask_if_none_match()
        record = store.get(item_key(item_id))
        if record is None:
            raise not_found()
        if cached.matches(record):
            return flask_not_modified(record)
        return flask_set_etag(FlaskResponse(encode(record.data), content_type=JSON), record)

    @app.put("/items/<item_id>")
    @flask_if_match(item_key)
    def put(item_id: str, precondition: Precondition) -> FlaskResponse:
        version = precondition.expected_version
        if version is None:
            version = precondition.require(store.get(item_key(item_id))).version
        record = store.replace(item_key(item_id), body(), expected_version=version)
        return flask_set_etag(FlaskResponse(encode(record.data), content_type=JSON), record)

    @app.patch("/items/<item_id>")
    @flask_if_match(item_key)
    def patch(item_id: str, precondition: Precondition) -> FlaskResponse:
        current = precondition.require(store.get(item_key(item_id)))
        observed.read_versions.append(current.version)
        time.sleep(patch_pause_s)
        record = store.replace(
            item_key(item_id), {**current.data, **body()}, expected_version=current.version
        )
        return flask_set_etag(FlaskResponse(encode(record.data), content_type=JSON), record)

    @app.delete("/items/<item_id>")
    @flask_if_match(item_key)
    def delete(item_id: str, precondition: Precondition) -> FlaskResponse:
        version = precondition.expected_version
        if version is None:
            version = precondition.require(store.get(item_key(item_id))).version
        store.delete(item_key(item_id), expected_version=version)
        response = FlaskResponse(status=204)
        del response.headers["Content-Type"]  # Flask's default text/html, for no body
        return response

    return app, observed
