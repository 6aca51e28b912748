"""The HTTP client tests' real server: uvicorn on a thread running :class:`ScriptedApp`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from http_app import ScriptedApp
from servers import uvicorn_server
from stalwart.resilience import retry_testing


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedApp]:
    app = ScriptedApp()
    with uvicorn_server(app) as url:
        app.base_url = url
        yield app


@pytest.fixture
def server(scripted_server: ScriptedApp) -> ScriptedApp:
    return scripted_server


@pytest.fixture(autouse=True)
def no_backoff_sleeps() -> Iterator[None]:
    """Retries happen at once unless a test turns test mode off to measure real waits."""
    with retry_testing():
        yield
