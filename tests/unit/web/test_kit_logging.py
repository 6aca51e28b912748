# Copyright 2026 stalwart contributors
"""Through real servers with ``configure_logging`` on: every line on the stream is one JSON
object, uvicorn's and werkzeug's access lines included, with no ANSI codes or
``color_message``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from servers import uvicorn_server, werkzeug_server
from stalwart.observability import configure_logging
from unit.web.web_apps import make_fastapi, make_flask

SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "werkzeug")


@pytest.fixture
def json_stream() -> Iterator[io.StringIO]:
    """configure_logging onto a buffer; the root and server loggers restored afterwards."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {
        name: (list(logger.handlers), logger.propagate, logger.level)
        for name in SERVER_LOGGERS
        if (logger := logging.getLogger(name))
    }
    for name in SERVER_LOGGERS:  # as a fresh process has them (another test may set a level)
        logging.getLogger(name).setLevel(logging.NOTSET)
    out = io.StringIO()
    configure_logging("web-test", stream=out)
    yield out
    root.handlers[:], root.level = saved_root
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate, logger.level = handlers, propagate, level


def test_server_lines_are_json_without_colour(json_stream: io.StringIO) -> None:
    with (
        uvicorn_server(make_fastapi(), log_level="info") as fastapi_url,
        werkzeug_server(make_flask()) as flask_url,
    ):
        for base in (fastapi_url, flask_url):
            for path in ("/items/7", "/nowhere", "/raise/unhandled", "/raise/store-unavailable"):
                httpx.get(base + path, headers={"X-Request-ID": "ansi-test"})
    text = json_stream.getvalue()
    assert "\x1b" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert not [line for line in lines if "color_message" in line]
    loggers = {line["logger"] for line in lines}
    # Not vacuous: the servers' own access lines did go through the JSON handler.
    assert {"uvicorn.access", "werkzeug", "stalwart.web.access", "stalwart.web"} <= loggers
    werkzeug_404 = [
        line for line in lines if line["logger"] == "werkzeug" and "/nowhere" in line["message"]
    ]
    assert werkzeug_404, "werkzeug colours 404 lines: the JSON line must hold the plain text"
    assert '"GET /nowhere HTTP/1.1" 404' in werkzeug_404[0]["message"]


def test_uvicorn_access_log_off_leaves_one_line_per_request(json_stream: io.StringIO) -> None:
    """``access_log=False`` (docs/web.md's advice) silences uvicorn's access line: the kit's
    line is the only one per request, even after the kit reclaims the server's loggers."""
    with uvicorn_server(make_fastapi(), log_level="info", access_log=False) as base:
        for _ in range(3):
            assert httpx.get(base + "/items/7").status_code == 200
    lines = [json.loads(line) for line in json_stream.getvalue().splitlines()]
    assert [line["logger"] for line in lines if line.get("route")].count("stalwart.web.access") == 3
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
