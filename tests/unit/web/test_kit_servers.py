# Copyright 2026 stalwart contributors
"""The web kit through real servers: FastAPI on uvicorn and Flask on werkzeug, one table of
cases (web_cases.py), byte-identical problem bodies on both."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from servers import uvicorn_server, werkzeug_server
from stalwart.observability import capture_logs
from stalwart.web import ACCESS_LOGGER, PROBLEM_JSON
from unit.web.web_apps import SECRET, make_fastapi, make_flask
from unit.web.web_cases import CASES, Case

HEX32 = re.compile(r"[0-9a-f]{32}")
FRAMEWORKS = ("fastapi", "flask")


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    with uvicorn_server(make_fastapi()) as fastapi_url, werkzeug_server(make_flask()) as flask_url:
        yield {"fastapi": fastapi_url, "flask": flask_url}


def send(base_url: str, case: Case, request_id: str | None) -> httpx.Response:
    headers = dict(case.request_headers)
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    return httpx.request(
        case.method, base_url + case.path, headers=headers, content=case.content, timeout=10
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case_on_both_frameworks(case: Case, servers: dict[str, str]) -> None:
    request_id = f"case-{case.name}"
    bodies = {}
    for framework in FRAMEWORKS:
        response = send(servers[framework], case, request_id)
        where = f"{framework}: {response.status_code} {response.text}"
        assert response.status_code == case.status, where
        assert response.headers["x-request-id"] == request_id, where
        for name, value in case.headers.items():
            assert response.headers.get(name) == value, (name, where)
        for name in case.header_names:
            assert name in response.headers, (name, where)
        if case.problem is None:
            assert not response.headers["content-type"].startswith("application/problem"), where
            continue
        assert response.headers["content-type"] == "application/problem+json", where
        assert response.json() == {**case.problem, "request_id": request_id}, where
        assert SECRET not in response.text
        assert "Traceback" not in response.text
        bodies[framework] = response.content
    if bodies:
        assert bodies["fastapi"] == bodies["flask"]


def wait_for(
    lines: list[dict[str, Any]], found: Callable[[dict[str, Any]], bool], count: int
) -> list[dict[str, Any]]:
    """The captured lines ``found`` accepts, once there are ``count`` (the ASGI kit logs after
    the response is sent, so the client can be a little ahead of the log line)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        matching = [line for line in list(lines) if found(line)]
        if len(matching) >= count:
            return matching
        time.sleep(0.02)
    raise AssertionError(f"expected {count} matching lines, got {lines}")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_invalid_or_missing_request_id_is_replaced(framework: str, servers: dict[str, str]) -> None:
    missing = Case("missing", "GET", "/nowhere", 404)
    for incoming in ("has spaces", "x" * 129, 'quote"', None):
        response = send(servers[framework], missing, incoming)
        request_id = response.headers["x-request-id"]
        assert HEX32.fullmatch(request_id), (incoming, request_id)
        assert response.json()["request_id"] == request_id
    kept = send(servers[framework], missing, "3f2b8c1e-5d4a-4c1b-9e7f-0a1b2c3d4e5f")
    assert kept.headers["x-request-id"] == "3f2b8c1e-5d4a-4c1b-9e7f-0a1b2c3d4e5f"


ROUTES = {
    "fastapi": {"/items/7": "/items/{item_id}"},
    "flask": {"/items/7": "/items/<int:item_id>"},
}


def test_one_request_log_line_per_request(servers: dict[str, str]) -> None:
    with capture_logs(ACCESS_LOGGER, level="INFO") as lines:
        for framework in FRAMEWORKS:
            base = servers[framework]
            headers = {"X-User": "ada"}
            httpx.get(f"{base}/items/7", headers={**headers, "X-Request-ID": f"log-{framework}"})
            httpx.get(f"{base}/nowhere", headers={"X-Request-ID": f"log-404-{framework}"})
            httpx.get(f"{base}/raise/unhandled", headers={"X-Request-ID": f"log-500-{framework}"})
        wait_for(lines, lambda line: line["request_id"].startswith("log-"), 6)
        time.sleep(0.2)  # a second line for any of these requests would be a defect
    # Only this test's requests (a late line of an earlier test's request may be captured).
    mine = [line for line in lines if line["request_id"].startswith("log-")]
    by_id = {line["request_id"]: line for line in mine}
    assert len(mine) == len(by_id) == 6, mine
    for framework in FRAMEWORKS:
        ok = by_id[f"log-{framework}"]
        assert ok["message"] == f"GET {ROUTES[framework]['/items/7']} 200"
        assert ok["method"] == "GET"
        assert ok["route"] == ROUTES[framework]["/items/7"]
        assert ok["status"] == 200
        assert isinstance(ok["duration_ms"], float)
        assert 0 <= ok["duration_ms"] < 5000
        assert ok["principal"] == "ada"
        assert ok["correlation_id"] == f"log-{framework}"
        assert ok["level"] == "INFO"
        assert ok["logger"] == ACCESS_LOGGER
        not_found = by_id[f"log-404-{framework}"]
        assert (not_found["route"], not_found["status"]) == (None, 404)
        assert "principal" not in not_found
        assert by_id[f"log-500-{framework}"]["status"] == 500


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_unhandled_exception_is_logged_with_its_stack(
    framework: str, servers: dict[str, str]
) -> None:
    request_id = f"boom-{framework}"
    with capture_logs("stalwart.web") as lines:
        response = httpx.get(
            f"{servers[framework]}/raise/unhandled", headers={"X-Request-ID": request_id}
        )
        [line] = wait_for(
            lines,
            lambda line: (
                line.get("correlation_id") == request_id and line["logger"] == "stalwart.web"
            ),
            1,
        )
    assert response.status_code == 500
    assert line["level"] == "ERROR"
    assert line["exception"]["type"] == "RuntimeError"
    assert "Traceback" in line["exception"]["stack"]
    assert line["code"] == "internal-error"


def test_openapi_declares_the_kit_problems(servers: dict[str, str]) -> None:
    schema = httpx.get(f"{servers['fastapi']}/openapi.json").json()
    paths = schema["paths"]

    def examples(path: str, method: str, status: str) -> set[str]:
        declared = paths[path][method]["responses"][status]["content"][PROBLEM_JSON]
        assert declared["schema"]["title"] == "Problem"
        return set(declared["examples"])

    assert examples("/orders", "post", "422") == {"validation-failed"}
    assert examples("/orders", "post", "400") == {"invalid-json"}
    assert examples("/items/{item_id}", "get", "422") == {"validation-failed"}
    assert "400" not in paths["/items/{item_id}"]["get"]["responses"]  # no body to parse
    for path, method in (("/orders", "post"), ("/items/{item_id}", "get"), ("/abort", "get")):
        assert examples(path, method, "500") == {"internal-error"}
        assert examples(path, method, "503") == {
            "store-unavailable",
            "circuit-open",
            "bulkhead-full",
        }
        assert "Retry-After" in paths[path][method]["responses"]["503"]["headers"]
    # The routes' own declarations, from the registry, keep their examples.
    assert examples("/transfers", "post", "422") == {"insufficient-funds", "validation-failed"}
    assert examples("/transfers", "post", "409") == {"version-conflict"}
    assert examples("/transfers", "post", "412") == {"precondition-failed"}
    value = paths["/transfers"]["post"]["responses"]["422"]["content"][PROBLEM_JSON]["examples"][
        "insufficient-funds"
    ]["value"]
    assert value["type"] == "https://example.com/problems/insufficient-funds"
    assert "HTTPValidationError" not in json.dumps(paths)


def test_flask_non_json_body_is_415_problem(servers: dict[str, str]) -> None:
    response = httpx.post(
        f"{servers['flask']}/orders",
        content=b"item=tea",
        headers={"content-type": "application/x-www-form-urlencoded", "X-Request-ID": "f-415"},
    )
    assert response.status_code == 415
    body = response.json()
    assert (body["code"], body["request_id"]) == ("unsupported-media-type", "f-415")
    assert "application/json" in body["detail"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_failing_principal_function_never_fails_the_request(
    framework: str, servers: dict[str, str]
) -> None:
    request_id = f"principal-{framework}"
    with capture_logs("stalwart.web", level="INFO") as lines:
        response = httpx.get(
            f"{servers[framework]}/items/7",
            headers={"X-User": "explode", "X-Request-ID": request_id},
        )
        [access] = wait_for(lines, lambda line: line.get("request_id") == request_id, 1)
        [warning] = wait_for(lines, lambda line: line["logger"] == "stalwart.web", 1)
    assert response.status_code == 200
    assert "principal" not in access
    assert warning["exception"]["type"] == "LookupError"
    assert warning["correlation_id"] == request_id
