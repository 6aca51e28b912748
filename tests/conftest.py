"""Session-wide real servers and the engine x mode matrix used by the conformance suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servers import RunningServer, mongodb_server, moto_server, redis_server

ENGINES = ("sqlite", "redis", "dynamodb", "mongodb")
MODES = ("sync", "async")

# moto accepts any credentials; boto3 refuses to sign without some.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[RunningServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def moto_srv() -> Iterator[RunningServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def mongodb_srv() -> Iterator[RunningServer]:
    with mongodb_server() as server:
        yield server


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


type UrlFactory = Callable[[], str]


@pytest.fixture
def store_url_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[str], UrlFactory]:
    """``store_url_factory(engine)()`` returns a URL of a fresh, empty table for that engine.

    Servers are started lazily: a test of the sqlite engine never starts MongoDB.
    """

    def for_engine(engine: str) -> UrlFactory:
        def make() -> str:
            name = unique_name()
            if engine == "sqlite":
                return f"sqlite:///{tmp_path / (name + '.db')}?table={name}"
            if engine == "redis":
                server: RunningServer = request.getfixturevalue("redis_srv")
                return f"{server.url}?prefix={name}"
            if engine == "dynamodb":
                server = request.getfixturevalue("moto_srv")
                return f"dynamodb://{name}?region=us-east-1&endpoint_url={server.url}&create=true"
            if engine == "mongodb":
                server = request.getfixturevalue("mongodb_srv")
                base = server.url.split("/?")[0]
                return f"{base}/stalwart_test?collection={name}&directConnection=true&create=true"
            msg = f"unknown engine {engine}"
            raise ValueError(msg)

        return make

    return for_engine
