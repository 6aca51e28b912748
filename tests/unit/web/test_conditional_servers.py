# Copyright 2026 stalwart contributors
"""Conditional requests through real servers: one table of cases, run against FastAPI on
uvicorn (async store) and Flask on werkzeug (sync store), on SQLite and on Redis; both must
answer with the same status, ETag and bytes. Plus a real race of two conditional PATCHes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from conftest import unique_name
from servers import RunningServer, uvicorn_server, werkzeug_server
from stalwart.storage import Key, open_async_store, open_store
from stalwart.web import etag, problem, problem_bytes
from unit.web.resource_apps import Observed, make_fastapi, make_flask

PATCH_PAUSE_S = 0.3
"""Between a PATCH's read and its write: both racers read the same version first."""
FRAMEWORKS = ("fastapi", "flask")


def tag(item: str, version: int) -> str:
    return etag(Key("items", item), version)


REQUEST_ID = "conditional-case"
TRACED = {"X-Request-ID": REQUEST_ID}
"""Sent with every request, so the kit's problem bodies (which carry the id) are known exactly."""


def problem_body(status: int, code: str, detail: str) -> bytes:
    return problem_bytes(problem(status, detail=detail, code=code, request_id=REQUEST_ID))


STALE = problem_body(412, "precondition-failed", "the resource has changed since the ETag was read")
ABSENT = problem_body(412, "precondition-failed", "the resource does not exist")
WEAK = problem_body(412, "precondition-failed", "weak ETags never match If-Match")
REQUIRED = problem_body(
    428,
    "precondition-required",
    "this request must be conditional: send If-Match with the resource's ETag",
)


def malformed(name: str) -> bytes:
    detail = f'{name} is not "*" or a list of entity-tags (quoted, optionally W/-prefixed)'
    return problem_body(400, "invalid-precondition", detail)


@dataclass(frozen=True)
class Case:
    """Item ``id`` is created at version 1 (``{"n": 0}``) and updated ``updates`` times
    (``exists=False``: never created); then ``method`` is sent with ``headers(id)``."""

    name: str
    method: str
    headers: Callable[[str], dict[str, str]]
    status: int
    body: bytes
    etag_version: int | None = None
    updates: int = 0
    exists: bool = True
    final_version: int | None = field(default=None)
    """The item's version afterwards (None: unchanged)."""


def no_header(_item: str) -> dict[str, str]:
    return {}


def if_match(value: Callable[[str], str]) -> Callable[[str], dict[str, str]]:
    return lambda item: {"If-Match": value(item)}


def if_none_match(value: Callable[[str], str]) -> Callable[[str], dict[str, str]]:
    return lambda item: {"If-None-Match": value(item)}


NEW = b'{"n":99}'
NOT_FOUND = problem_body(404, "not-found", "no such item")
CASES = [
    Case("get sets the ETag", "GET", no_header, 200, b'{"n":0}', etag_version=1),
    Case("get after updates", "GET", no_header, 200, NEW, etag_version=3, updates=2),
    Case("inm current", "GET", if_none_match(lambda i: tag(i, 1)), 304, b"", etag_version=1),
    Case("inm star", "GET", if_none_match(lambda _: "*"), 304, b"", etag_version=1),
    Case(
        "inm list",
        "GET",
        if_none_match(lambda i: f'"nope", {tag(i, 1)}'),
        304,
        b"",
        etag_version=1,
    ),
    Case("inm weak", "GET", if_none_match(lambda i: f"W/{tag(i, 1)}"), 304, b"", etag_version=1),
    Case("inm stale", "GET", if_none_match(lambda i: tag(i, 1)), 200, NEW, 2, updates=1),
    Case("inm malformed", "GET", if_none_match(lambda _: "abc"), 400, malformed("If-None-Match")),
    Case("inm star absent", "GET", if_none_match(lambda _: "*"), 404, NOT_FOUND, exists=False),
    Case("put without If-Match", "PUT", no_header, 428, REQUIRED),
    Case("put current", "PUT", if_match(lambda i: tag(i, 1)), 200, NEW, 2, final_version=2),
    Case("put stale", "PUT", if_match(lambda i: tag(i, 1)), 412, STALE, updates=1),
    Case("put weak", "PUT", if_match(lambda i: f"W/{tag(i, 1)}"), 412, WEAK),
    Case("put malformed", "PUT", if_match(lambda i: tag(i, 1)[:-1]), 400, malformed("If-Match")),
    Case("put star absent", "PUT", if_match(lambda _: "*"), 412, ABSENT, exists=False),
    Case("put star", "PUT", if_match(lambda _: "*"), 200, NEW, 3, updates=1, final_version=3),
    Case("put other item's tag", "PUT", if_match(lambda _: tag("elsewhere", 1)), 412, STALE),
    Case(
        "put list with one current tag",
        "PUT",
        if_match(lambda i: f'W/"x", {tag(i, 1)}, {tag(i, 2)}'),
        200,
        NEW,
        3,
        updates=1,
        final_version=3,
    ),
    Case(
        "put list all stale",
        "PUT",
        if_match(lambda i: f"{tag(i, 1)}, {tag(i, 2)}"),
        412,
        STALE,
        updates=2,
    ),
    Case(
        "put versioned tag on absent",
        "PUT",
        if_match(lambda i: tag(i, 1)),
        412,
        STALE,
        exists=False,
    ),
    Case("patch current", "PATCH", if_match(lambda i: tag(i, 1)), 200, NEW, 2, final_version=2),
    Case("delete without If-Match", "DELETE", no_header, 428, REQUIRED),
    Case("delete stale", "DELETE", if_match(lambda i: tag(i, 1)), 412, STALE, updates=1),
    Case(
        "delete current",
        "DELETE",
        if_match(lambda i: tag(i, 2)),
        204,
        b"",
        updates=1,
        final_version=0,
    ),
]


@dataclass
class Served:
    base_url: str
    observed: Observed


@contextlib.contextmanager
def serve(framework: str, url: str) -> Iterator[Served]:
    if framework == "fastapi":
        store = open_async_store(url)
        app, observed = make_fastapi(store, patch_pause_s=PATCH_PAUSE_S)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any) -> AsyncIterator[None]:
            yield
            await store.close()  # its connections belong to uvicorn's loop

        app.router.lifespan_context = lifespan
        with uvicorn_server(app) as base_url:
            yield Served(base_url, observed)
        return
    sync_store = open_store(url)
    try:
        flask_app, observed = make_flask(sync_store, patch_pause_s=PATCH_PAUSE_S)
        with werkzeug_server(flask_app) as base_url:
            yield Served(base_url, observed)
    finally:
        sync_store.close()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def servers(request, tmp_path_factory) -> Iterator[dict[str, Served]]:
    """Both frameworks, each on its own fresh table of the engine."""

    def url(framework: str) -> str:
        if request.param == "sqlite":
            path = tmp_path_factory.mktemp("conditional") / f"{framework}.db"
            return f"sqlite:///{path}?table=items"
        redis: RunningServer = request.getfixturevalue("redis_srv")
        return f"{redis.url}?prefix={unique_name('conditional')}"

    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serve(name, url(name))) for name in FRAMEWORKS}


def run_case(
    base_url: str, case: Case, item: str
) -> tuple[int, str | None, str, bytes, str | None]:
    """(status, ETag, content type, body, the item's ETag afterwards)."""
    with httpx.Client(base_url=base_url, timeout=10, headers=TRACED) as client:
        path = f"/items/{item}"
        if case.exists:
            assert client.post(path, json={"n": 0}).status_code == 201
            for version in range(1, case.updates + 1):
                put = client.put(path, json={"n": 99}, headers={"If-Match": tag(item, version)})
                assert put.status_code == 200, put.text
        body = {"n": 99} if case.method in {"PUT", "PATCH"} else None
        response = client.request(case.method, path, json=body, headers=case.headers(item))
        after = client.get(path)
    return (
        response.status_code,
        response.headers.get("etag"),
        response.headers.get("content-type", ""),
        response.content,
        after.headers.get("etag") if after.status_code == 200 else None,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_on_both_frameworks(servers, case):
    item = case.name.replace(" ", "-").replace("'", "")
    results = {name: run_case(served.base_url, case, item) for name, served in servers.items()}
    assert results["fastapi"] == results["flask"], results
    status, etag_header, content_type, body, after = results["fastapi"]
    assert status == case.status, body
    assert body == case.body
    expected_etag = tag(item, case.etag_version) if case.etag_version else None
    assert etag_header == expected_etag
    if status >= 400:
        assert content_type == "application/problem+json"
    if case.exists:
        final = case.final_version if case.final_version is not None else 1 + case.updates
        assert after == (tag(item, final) if final else None)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_two_clients_race_with_the_same_etag(servers, framework):
    served = servers[framework]
    item = f"race-{framework}"
    with httpx.Client(base_url=served.base_url, timeout=10, headers=TRACED) as setup:
        assert setup.post(f"/items/{item}", json={"a": 0, "b": 0}).status_code == 201
        seen = setup.get(f"/items/{item}").headers["etag"]
    before = len(served.observed.read_versions)
    barrier = threading.Barrier(2, timeout=10)
    responses: dict[str, httpx.Response] = {}

    def patch(field_name: str) -> None:
        with httpx.Client(base_url=served.base_url, timeout=10, headers=TRACED) as client:
            barrier.wait()
            responses[field_name] = client.patch(
                f"/items/{item}", json={field_name: 1}, headers={"If-Match": seen}
            )

    threads = [threading.Thread(target=patch, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    statuses = sorted(response.status_code for response in responses.values())
    assert statuses == [200, 412], {k: r.text for k, r in responses.items()}
    # Both read version 1 before writing: the store's optimistic lock, not the read, decided.
    assert served.observed.read_versions[before:] == [1, 1]
    winner = next(name for name, response in responses.items() if response.status_code == 200)
    loser = "b" if winner == "a" else "a"
    assert responses[loser].content == STALE
    with httpx.Client(base_url=served.base_url, timeout=10, headers=TRACED) as client:
        final = client.get(f"/items/{item}")
    assert final.headers["etag"] == tag(item, 2)
    assert final.json() == {"a": 0, "b": 0, winner: 1}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_if_match_across_repeated_header_lines(servers, framework):
    """A list may come as several field lines (RFC 9110 §5.3): every line counts."""
    item = f"lines-{framework}"
    with httpx.Client(base_url=servers[framework].base_url, timeout=10, headers=TRACED) as client:
        assert client.post(f"/items/{item}", json={"n": 0}).status_code == 201
        lines = [("If-Match", tag(item, 7)), ("If-Match", tag(item, 1))]
        put = client.put(f"/items/{item}", json={"n": 1}, headers=lines)
        assert (put.status_code, put.headers["etag"]) == (200, tag(item, 2))
        lines = [("If-None-Match", '"nope"'), ("If-None-Match", tag(item, 2))]
        assert client.get(f"/items/{item}", headers=lines).status_code == 304
