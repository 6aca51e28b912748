# Copyright 2026 stalwart contributors
"""The FastAPI kit's request-size limits through a real uvicorn server: 413 for a body over
``max_body_bytes`` (declared or streamed), 431 for headers over ``max_header_bytes``, both as
problem+json and declared in OpenAPI; without limits, nothing is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from servers import uvicorn_server
from stalwart.web import PROBLEM_JSON
from stalwart.web.fastapi import install

BODY_LIMIT = 1000
HEADER_LIMIT = 2000
JSON = {"content-type": "application/json"}


def make_app(**limits: Any) -> FastAPI:
    app = FastAPI()
    install(app, **limits)

    @app.post("/echo")
    async def echo(payload: dict[str, str]) -> dict[str, int]:
        return {"keys": len(payload)}

    return app


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    limited = make_app(max_body_bytes=BODY_LIMIT, max_header_bytes=HEADER_LIMIT)
    with uvicorn_server(limited) as limited_url, uvicorn_server(make_app()) as open_url:
        yield limited_url, open_url


def body_of(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    head = b'{"a": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    return str(response.json()["code"])


def test_a_body_over_the_limit_is_413(servers: tuple[str, str]) -> None:
    limited, _ = servers
    assert (
        httpx.post(f"{limited}/echo", content=body_of(BODY_LIMIT), headers=JSON).status_code == 200
    )
    over = body_of(BODY_LIMIT + 1)
    assert (
        code(httpx.post(f"{limited}/echo", content=over, headers=JSON), 413)
        == "request-entity-too-large"
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused once the bytes pass it
        yield over[:600]
        yield over[600:]

    assert code(httpx.post(f"{limited}/echo", content=chunks(), headers=JSON), 413) == (
        "request-entity-too-large"
    )


def test_headers_over_the_limit_are_431(servers: tuple[str, str]) -> None:
    limited, _ = servers
    padded = {"X-Padding": "a" * HEADER_LIMIT}
    response = httpx.post(f"{limited}/echo", content=body_of(10), headers=padded | JSON)
    assert code(response, 431) == "request-header-fields-too-large"
    assert httpx.post(f"{limited}/echo", content=body_of(10), headers=JSON).status_code == 200


def test_the_limits_are_declared_in_openapi(servers: tuple[str, str]) -> None:
    limited, unlimited = servers
    declared = httpx.get(f"{limited}/openapi.json").json()["paths"]["/echo"]["post"]
    assert {"413", "431"} <= set(declared["responses"])
    plain = httpx.get(f"{unlimited}/openapi.json").json()["paths"]["/echo"]["post"]
    assert not {"413", "431"} & set(plain["responses"])


def test_without_limits_nothing_is_refused(servers: tuple[str, str]) -> None:
    _, unlimited = servers
    big = body_of(200_000)
    padded = {"X-Padding": "a" * 100_000}
    assert httpx.post(f"{unlimited}/echo", content=big, headers=padded | JSON).status_code == 200


def test_an_exempt_path_prefix_takes_bodies_over_the_limit() -> None:
    app = make_app(max_body_bytes=BODY_LIMIT, body_limit_exempt=("/uploads",))

    @app.post("/uploads/file")
    async def upload(payload: dict[str, str]) -> dict[str, int]:
        return {"bytes": len(payload["a"])}

    big = body_of(BODY_LIMIT * 5)
    with uvicorn_server(app) as url:
        assert httpx.post(f"{url}/uploads/file", content=big, headers=JSON).status_code == 200
        assert code(httpx.post(f"{url}/echo", content=big, headers=JSON), 413) == (
            "request-entity-too-large"
        )
