# Copyright 2026 stalwart contributors
"""The web kit through real servers: FastAPI on uvicorn and Flask on werkzeug, one table of
cases (web_cases.py), byte-identical problem bodies on both."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from servers import uvicorn_server, werkzeug_server
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
