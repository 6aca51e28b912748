# Copyright 2026 stalwart contributors
"""Every shortcut on the hot path gives exactly what the straightforward code gives."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from stalwart.idempotency import AsyncIdempotency, HttpPolicy, IdempotencyPolicy
from stalwart.idempotency._core import canonical_json, canonical_json_acyclic
from stalwart.idempotency._http import (
    HttpReply,
    HttpRequest,
    request_fingerprint,
    storable,
    stored_reply,
)
from stalwart.idempotency.fastapi import (
    _FAST_URL,
    _header_reader,
    _path_and_query,
    idempotent_route_class,
)
from unit.idempotency.idem_apps import make_fastapi
from unit.idempotency.idem_memory_store import AsyncMemoryStore

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_acyclic_encoder_matches_canonical_json(value: Any) -> None:
    assert canonical_json_acyclic(value) == canonical_json(value)


def test_acyclic_encoder_errors_match() -> None:
    for bad in ([float("nan")], {"a": float("inf")}, {"a": object()}, {1.5j: 1}):
        with pytest.raises((ValueError, TypeError)) as expected:
            canonical_json(bad)
        with pytest.raises(type(expected.value), match=str(expected.value)[:20]):
            canonical_json_acyclic(bad)


def test_the_installed_starlette_takes_the_fast_url_path() -> None:
    assert _FAST_URL  # otherwise the fast path below is never exercised


_paths = st.text(
    st.sampled_from(list("/abc%?#\\\t\r\n ;:=.~é@[]")) | st.characters(codec="utf-8"), max_size=12
)
_queries = st.binary(max_size=12) | st.text(
    st.sampled_from(list("a=1&b#\t\r\n %+é")), max_size=12
).map(str.encode)
_hosts = st.none() | st.sampled_from(
    ["example.org", "example.org:8080", "[::1]:80", "bad host", "a/b", "h?x", "é.org", ""]
)

_servers = st.sampled_from([None, ("127.0.0.1", 8000), ("::1", 80), ("example.org", 443)])


@settings(max_examples=300)
@given(path=_paths, query=_queries, host=_hosts, root=st.sampled_from(["", "/r"]), server=_servers)
@example(path="/orders", query=b"a=1&b=2", host="example.org", root="", server=None)
@example(path="//x", query=b"", host=None, root="", server=None)
@example(path="/a?b", query=b"c#d", host="h", root="", server=None)
@example(path="/a\\b\t", query=b"x\ny", host="h", root="", server=None)
@example(path="/caf\u00e9", query="q=\u00e9".encode(), host="h", root="", server=None)
@example(path="/caf\u00e9", query=b"\xff", host="h", root="", server=None)
@example(path="", query=b"", host="h", root="", server=None)
@example(path="x:y", query=b"", host=None, root="", server=None)
def test_path_and_query_match_request_url(
    path: str, query: bytes, host: str | None, root: str, server: tuple[str, int] | None
) -> None:
    headers = [] if host is None else [(b"host", host.encode())]
    scope = {
        "type": "http",
        "scheme": "http",
        "server": server,
        "root_path": root,
        "path": root + path,
        "query_string": query,
        "headers": headers,
    }
    try:
        url = Request(scope).url
        expected: Any = (url.path, url.query)
    except Exception as exc:  # the same failure is what we compare
        expected = type(exc)
    try:
        got: Any = _path_and_query(Request(scope))
    except Exception as exc:
        got = type(exc)
    assert got == expected


_header_names = st.sampled_from(
    [b"idempotency-key", b"content-type", b"x-currency", b"Content-Type", b"host", b"x"]
)


@given(st.lists(st.tuples(_header_names, st.binary(max_size=6)), max_size=8))
@example([(b"content-type", b"a"), (b"content-type", b"b"), (b"Idempotency-Key", b"k")])
def test_header_reader_matches_starlette(raw: list[tuple[bytes, bytes]]) -> None:
    names = ("idempotency-key", "content-type", "x-currency", "content-type")
    request = Request({"type": "http", "headers": raw})
    headers = request.headers
    expected = {name: value for name in names if (value := headers.get(name)) is not None}
    assert _header_reader(names)(Request({"type": "http", "headers": raw})) == expected


def test_header_reader_keeps_starlettes_failure_for_unencodable_names() -> None:
    read = _header_reader(("idempotency-key", "\u952e"))
    with pytest.raises(UnicodeEncodeError):
        read(Request({"type": "http", "headers": [(b"idempotency-key", b"k")]}))


@given(json_values, st.booleans())
def test_parsed_body_gives_the_same_fingerprint(value: Any, parse: bool) -> None:
    body = json.dumps(value).encode()
    plain = HttpRequest("POST", "/r", "/r", "", body, {"content-type": "application/json"})
    parsed = HttpRequest(
        "POST", "/r", "/r", "", body, {"content-type": "application/json"}, None, json.loads(body)
    )
    policy = HttpPolicy()
    assert request_fingerprint(policy, parsed if parse else plain) == request_fingerprint(
        policy, plain
    )


_reply_headers = st.lists(
    st.tuples(
        st.sampled_from(["Content-Type", "location", "Set-Cookie", "ETag", "x-private"]),
        st.text(max_size=5),
    ),
    max_size=6,
)


@given(st.integers(100, 599), _reply_headers, st.binary(max_size=20) | st.text().map(str.encode))
def test_stored_reply_is_storable_to_json(
    status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    reply = HttpReply(status, tuple(headers), body)
    policy = HttpPolicy()
    assert stored_reply(policy, reply) == storable(policy, reply).to_json()


def _app() -> tuple[Any, Any]:
    store = AsyncMemoryStore()
    app, executions, _ = make_fastapi(AsyncIdempotency(store, IdempotencyPolicy(lease=5)))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ), executions


async def test_shared_json_parse_keeps_fastapi_validation() -> None:
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
