# Copyright 2026 stalwart contributors
"""A lean RESP2 transport for the Redis engine's own commands (scripts and ``HMGET``).

Why not redis-py's client for every call: its per-command machinery (command packing, pool
locking, retry wrappers, observability hooks) costs more CPU than the round trip itself on a
fast network -- measured ~50 us of CPU per async ``SET`` under 16 concurrent tasks, against
~7 us for a pipelined protocol connection (``benchmarks/idempotency.py`` reports both). The
store therefore talks to Redis over its own connections, built from the caller's redis-py
client configuration:

- sync: a bounded pool of blocking sockets (one per concurrently calling thread, at most
  ``max_connections``), hiredis parser; a pooled socket is checked for a close by the server
  (one non-blocking ``poll``) before it is reused;
- async: one pipelined connection per event loop; concurrent calls share it, their replies are
  matched in order (Redis answers in order on one connection), so there is no pool to lock.

TCP, TLS (``rediss://``, the ``ssl_*`` settings as redis-py reads them) and Unix sockets are
supported, with AUTH (password or ACL user), ``SELECT``, a client name, timeouts, keepalive,
health checks and the client's ``Retry`` policy. Settings the transport cannot honour -- RESP3,
credential providers, OCSP checks, ``retry_on_error``, Sentinel or Cluster pools, custom
connection classes, a missing hiredis -- are listed by :func:`wire_options`; the store then
uses redis-py for everything (``transport="auto"``, the default) or refuses the configuration
(``transport="stalwart"``). Errors are raised as redis-py's own public exception types
(``ConnectionError``, ``TimeoutError``, ``ResponseError``), so the store's error translation is
the same on both paths, and the client's ``Retry`` policy is applied the way redis-py applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import select
import socket
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, cast

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis import exceptions as redis_errors
from redis.backoff import NoBackoff

from stalwart.storage._contract import StoreConfigurationError
from stalwart.storage._redis_codec import TRANSPORTS, Transport

hiredis: ModuleType | None
try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis ships with the redis extra
    hiredis = None


if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

type Reply = Any
"""A decoded RESP2 reply: bytes, int, None or (nested) lists of those."""

_READ_SIZE: Final = 65536
_DEFAULT_TIMEOUT_S: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 64
"""Sync: sockets of a store's own pool when nothing else says (a URL store's default too)."""

# redis-py's TCP keepalive defaults since 8.0 (idle 30 s, then 3 probes 5 s apart), used when
# keepalive is on and the client names no options of its own.
_DEFAULT_KEEPALIVE: Final[tuple[tuple[int, int], ...]] = tuple(
    (option, value)
    for name, value in (
        ("TCP_KEEPIDLE" if hasattr(socket, "TCP_KEEPIDLE") else "TCP_KEEPALIVE", 30),
        ("TCP_KEEPINTVL", 5),
        ("TCP_KEEPCNT", 3),
    )
    if (option := getattr(socket, name, None)) is not None
)


@dataclass(frozen=True, slots=True)
class WireOptions:
    """Where and how to connect: what the caller's redis-py client would use."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    """A Unix socket path (then host, port, TLS and keepalive are unused)."""
    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str | None = None
    connect_timeout: float = _DEFAULT_TIMEOUT_S
    timeout: float = _DEFAULT_TIMEOUT_S
    """Seconds to wait for a reply (always set: every external call has a deadline)."""
    health_check_interval: float = 0.0
    """Idle seconds after which a connection is PINGed before use (0: never)."""
    keepalive: bool = True
    keepalive_options: tuple[tuple[int, int | bytes], ...] = _DEFAULT_KEEPALIVE
    """``(TCP option, value)`` pairs set with ``setsockopt`` when keepalive is on."""
    tls: ssl.SSLContext | None = field(default=None, compare=False)
    """The TLS context of a ``rediss://`` client (built the way redis-py builds it)."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Sync: at most this many sockets; a thread finding none free waits (see below)."""
    pool_timeout: float | None = None
    """Sync: seconds to wait for a free socket (None: up to :attr:`timeout`; 0: fail at once)."""

    @property
    def address(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """The settings of a redis-py client that the store's own transport cannot honour."""

    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return ", ".join(self.reasons)


# ---------------------------------------------------------------------------------------------
# Reading a redis-py client's settings
# ---------------------------------------------------------------------------------------------

_PLAIN_POOLS: Final = frozenset(
    {
        redis.ConnectionPool,
        redis.BlockingConnectionPool,
        redis.asyncio.ConnectionPool,
        redis.asyncio.BlockingConnectionPool,
    }
)
_BLOCKING_POOLS: Final = frozenset(
    {redis.BlockingConnectionPool, redis.asyncio.BlockingConnectionPool}
)
_ASYNC_POOLS: Final = frozenset(
    {redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool}
)
_TCP_CONNECTIONS: Final = frozenset({redis.Connection, redis.asyncio.Connection})
_TLS_CONNECTIONS: Final = frozenset({redis.SSLConnection, redis.asyncio.SSLConnection})
_UNIX_CONNECTIONS: Final = frozenset(
    {redis.UnixDomainSocketConnection, redis.asyncio.UnixDomainSocketConnection}
)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _keepalive_options(value: Any) -> tuple[tuple[int, int | bytes], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):  # redis-py's "not given" marker: its defaults
        return _DEFAULT_KEEPALIVE
    return tuple((int(option), setting) for option, setting in value.items())


# redis-py connection setting -> (WireOptions field, conversion)
_HONOURED: Final[dict[str, tuple[str, Callable[[Any], Any]]]] = {
    "host": ("host", str),
    "port": ("port", int),
    "path": ("path", str),
    "db": ("db", int),
    "username": ("username", lambda value: value),
    "password": ("password", lambda value: value),
    "client_name": ("client_name", lambda value: value),
    "socket_timeout": ("timeout", _optional_float),
    "socket_connect_timeout": ("connect_timeout", _optional_float),
    "health_check_interval": ("health_check_interval", lambda value: float(value or 0)),
    "socket_keepalive": ("keepalive", bool),
    "socket_keepalive_options": ("keepalive_options", _keepalive_options),
}
# Read elsewhere: the retry policy (see _retry_policy) and TLS (see _tls_context).
_RETRY_SETTINGS: Final = frozenset({"retry", "retry_on_timeout"})
_TLS_SETTINGS: Final = frozenset(
    {
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_check_hostname",
        "ssl_password",
        "ssl_min_version",
        "ssl_ciphers",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
    }
)
# Settings that change nothing on the store's connections: how redis-py decodes replies for
# its own commands, how it names itself, its RESP3-only maintenance notifications.
_IRRELEVANT: Final = frozenset(
    {
        "socket_read_size",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "encoder_class",
        "parser_class",
        "driver_info",
        "lib_name",
        "lib_version",
        "himport_registry",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "maintenance_state",
        "maintenance_notification_hash",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "legacy_responses",
        "event_dispatcher",
    }
)
_READ_ELSEWHERE: Final = _RETRY_SETTINGS | _TLS_SETTINGS
SUPPORTED_SETTINGS: Final = tuple(sorted({*_HONOURED, *_READ_ELSEWHERE}))
"""The redis-py connection settings the store's own transport honours."""


def _at_default(name: str, value: Any) -> bool:
    """Whether a setting the transport does not implement is at its harmless default."""
    if name == "protocol":
        return value in {None, 2, "2"}
    if name == "socket_type":
        return value in {0, socket.SOCK_STREAM}
    if name == "retry_on_error":  # retry_on_timeout adds TimeoutError; the Retry covers it
        return not isinstance(value, list | tuple | set) or set(value) <= {
            redis_errors.TimeoutError,
            socket.timeout,
        }
    return value is None or value is False or value in ((), [], {}, "")


def wire_options(pool: Any) -> WireOptions | Unsupported:
    """The wire settings equivalent to a redis-py pool's, or what the wire cannot honour.

    Raises :class:`StoreConfigurationError` for a value that cannot work on any transport
    (a TLS file that cannot be read, an unknown ``ssl_cert_reqs``, a port that is no number).

    >>> wire_options(redis.Redis(host="10.0.0.5", db=2).connection_pool).address
    '10.0.0.5:6379'
    >>> wire_options(redis.Redis(protocol=3).connection_pool)
    Unsupported(reasons=('protocol=3',))
    """
    if hiredis is None:  # pragma: no cover - hiredis ships with the redis extra
        return Unsupported(("hiredis is not installed",))
    if type(pool) not in _PLAIN_POOLS:
        return Unsupported((f"connection pool {type(pool).__qualname__}",))
    connection_class = pool.connection_class
    if connection_class not in _TCP_CONNECTIONS | _TLS_CONNECTIONS | _UNIX_CONNECTIONS:
        return Unsupported((f"connection class {connection_class.__qualname__}",))
    kwargs: dict[str, Any] = pool.connection_kwargs
    options, reasons = _read_settings(kwargs)
    if reasons:
        return Unsupported(tuple(reasons))
    if connection_class in _TLS_CONNECTIONS:
        options["tls"] = _tls_context(kwargs)
    if connection_class in _UNIX_CONNECTIONS:
        options["keepalive"] = False
        if "path" not in options:
            raise StoreConfigurationError("a Unix socket connection needs a path")
    else:
        options.pop("path", None)
        _check_keepalive(options.get("keepalive_options", _DEFAULT_KEEPALIVE))
    # Every external call has a deadline; redis-py's own default is 5 s since version 8.
    if options.get("timeout") is None:
        options.pop("timeout", None)
    if options.get("connect_timeout") is None:
        options["connect_timeout"] = options.get("timeout", _DEFAULT_TIMEOUT_S)
    options["max_connections"] = int(getattr(pool, "max_connections", DEFAULT_MAX_CONNECTIONS))
    # A plain pool fails at once when full (redis-py's MaxConnectionsError); a blocking one
    # waits its timeout.
    options["pool_timeout"] = _optional_float(pool.timeout) if type(pool) in _BLOCKING_POOLS else 0
    return WireOptions(**options)


def _read_settings(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """WireOptions fields from a pool's connection settings, and the settings they miss."""
    options: dict[str, Any] = {}
    reasons: list[str] = []
    try:
        for name, value in kwargs.items():
            if name in _HONOURED:
                attribute, convert = _HONOURED[name]
                options[attribute] = convert(value)
            elif name in _READ_ELSEWHERE or name in _IRRELEVANT:
                continue
            elif not _at_default(name, value):
                reasons.append(f"{name}={value!r}")
    except (TypeError, ValueError) as exc:
        raise StoreConfigurationError(f"invalid Redis connection setting: {exc}") from exc
    return options, reasons


_CERT_REQS: Final = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def _verify_mode(cert_reqs: Any) -> ssl.VerifyMode:
    if cert_reqs is None:
        return ssl.CERT_NONE
    if isinstance(cert_reqs, str):
        if cert_reqs.lower() not in _CERT_REQS:
            msg = f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, got {cert_reqs!r}"
            raise StoreConfigurationError(msg)
        return _CERT_REQS[cert_reqs.lower()]
    return ssl.VerifyMode(cert_reqs)


def _tls_context(kwargs: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS context redis-py's ``SSLConnection`` would build from the same settings."""
    verify_mode = _verify_mode(kwargs.get("ssl_cert_reqs", "required"))
    context = ssl.create_default_context()
    context.check_hostname = bool(kwargs.get("ssl_check_hostname", True)) and (
        verify_mode != ssl.CERT_NONE
    )
    context.verify_mode = verify_mode
    for flag in kwargs.get("ssl_include_verify_flags") or ():
        context.verify_flags |= flag
    for flag in kwargs.get("ssl_exclude_verify_flags") or ():
        context.verify_flags &= ~flag
    try:
        certfile, keyfile = kwargs.get("ssl_certfile"), kwargs.get("ssl_keyfile")
        if keyfile and not certfile:
            raise StoreConfigurationError("ssl_keyfile needs an ssl_certfile")
        if certfile:
            context.load_cert_chain(certfile, keyfile, kwargs.get("ssl_password"))
        cafile, capath, cadata = (kwargs.get(f"ssl_ca_{k}") for k in ("certs", "path", "data"))
        if cafile is not None or capath is not None or cadata is not None:
            context.load_verify_locations(cafile, capath, cadata)
        if kwargs.get("ssl_min_version") is not None:
            context.minimum_version = kwargs["ssl_min_version"]
        if kwargs.get("ssl_ciphers"):
            context.set_ciphers(kwargs["ssl_ciphers"])
    except (OSError, ValueError, TypeError) as exc:  # ssl.SSLError is an OSError
        raise StoreConfigurationError(f"the Redis TLS settings cannot be used: {exc}") from exc
    return context


def _check_keepalive(options: Iterable[tuple[int, int | bytes]]) -> None:
    """Try the keepalive options on a throwaway socket: a wrong one is a configuration error
    now, not a connection error on every call later."""
    with socket.socket() as probe:
        for option, value in options:
            try:
                probe.setsockopt(socket.IPPROTO_TCP, option, value)
            except (OSError, TypeError) as exc:
                msg = f"socket_keepalive_options: option {option}={value!r} is refused: {exc}"
                raise StoreConfigurationError(msg) from exc


def _retry_policy(pool: Any) -> Any:
    """The redis-py ``Retry`` its connections would use (None when it retries nothing)."""
    kwargs = pool.connection_kwargs
    retry = kwargs.get("retry")
    if kwargs.get("retry_on_timeout"):
        retry_class = redis.asyncio.retry.Retry if type(pool) in _ASYNC_POOLS else redis.retry.Retry
        retry = retry_class(NoBackoff(), 1) if retry is None else copy.deepcopy(retry)
        retry.update_supported_errors([redis_errors.TimeoutError])
    if retry is None or retry.get_retries() == 0:
        return None
    return retry


def traced(client: Any) -> bool:
    """Whether OpenTelemetry's redis instrumentation wraps this client's commands.

    Then the store sends its commands through redis-py, so they are traced like every other
    Redis command (the check is one attribute lookup, made per call because instrumentation
    is often switched on after the store is built).
    """
    return hasattr(type(client).execute_command, "__wrapped__")


def transport_for[W: (SyncWire, AsyncWire)](
    client: Any, wire: type[W], transport: Transport = "auto"
) -> W | None:
    """The store's own transport for a redis-py client, or None when redis-py carries the
    commands: asked for (``"redis-py"``), or the client has settings the transport cannot
    honour (``"auto"``). ``"stalwart"`` refuses such a client with StoreConfigurationError."""
    if transport not in TRANSPORTS:
        msg = f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}"
        raise StoreConfigurationError(msg)
    pool = getattr(client, "connection_pool", None)
    options = wire_options(pool)  # also on redis-py: a setting that cannot work fails now
    if transport == "redis-py":
        return None
    if isinstance(options, Unsupported):
        if transport == "auto":
            return None
        msg = (
            f"the store's own Redis transport cannot honour {options}; it supports "
            f"{', '.join(SUPPORTED_SETTINGS)} on TCP, TLS and Unix sockets "
            "(use transport=auto to fall back to redis-py, or transport=redis-py)"
        )
        raise StoreConfigurationError(msg)
    return wire(options, _retry_policy(pool))


# ---------------------------------------------------------------------------------------------
# Encoding and errors
# ---------------------------------------------------------------------------------------------


def pack(parts: Sequence[bytes | str]) -> bytes:
    """One command as a RESP array of bulk strings.

    >>> pack([b"GET", "k"])
    b'*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n'
    """
    return b"*%d\r\n" % len(parts) + _bulk(parts)


def _bulk(parts: Sequence[bytes | str]) -> bytes:
    """The bulk strings of ``parts``, without the array header."""
    raws = [part if part.__class__ is bytes else part.encode() for part in parts]  # type: ignore[union-attr]
    values: list[int | bytes] = []
    for raw in raws:
        values += (len(raw), raw)
    # One %-format of the whole command: fewer, larger C calls than a join of pieces.
    return b"$%d\r\n%s\r\n" * len(raws) % tuple(values)


_ReplyError: Final = redis_errors.ResponseError
"""The class hiredis builds error replies with (the full reply, code first, as message)."""


def check(reply: Reply) -> Reply:
    """Raise a top-level error reply (NOSCRIPT, READONLY, NOAUTH...) as a redis-py
    ``ResponseError`` whose message starts with the error code."""
    if isinstance(reply, _ReplyError):
        raise reply
    return reply


def _refused(error: redis_errors.ResponseError) -> bool:
    """Whether an error reply says the connection is not authenticated: it is not reused."""
    return str(error).startswith(("NOAUTH", "WRONGPASS"))


def _reader() -> Any:
    assert hiredis is not None
    return hiredis.Reader(protocolError=redis_errors.InvalidResponse, replyError=_ReplyError)


def handshake(options: WireOptions) -> list[bytes]:
    """Commands a fresh connection sends before any other (each must reply ``OK``)."""
    commands: list[bytes] = []
    if options.password is not None:
        auth = (
            [options.password] if options.username is None else [options.username, options.password]
        )
        commands.append(pack([b"AUTH", *auth]))
    if options.db:
        commands.append(pack([b"SELECT", str(options.db)]))
    if options.client_name:
        commands.append(pack([b"CLIENT", b"SETNAME", options.client_name]))
    return commands


def _connect_error(options: WireOptions, exc: BaseException) -> redis_errors.RedisError:
    if isinstance(exc, TimeoutError):
        return redis_errors.TimeoutError(f"Timeout connecting to {options.address}")
    return redis_errors.ConnectionError(f"Error connecting to {options.address}: {exc}")


_PING: Final = pack([b"PING"])


# ---------------------------------------------------------------------------------------------
# Sync: a bounded pool of blocking sockets
# ---------------------------------------------------------------------------------------------


def _open_socket(options: WireOptions) -> socket.socket:
    """A connected (and for TLS, handshaken) blocking socket; raises OSError."""
    if options.path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(options.connect_timeout)
            sock.connect(options.path)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((options.host, options.port), options.connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if options.keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in options.keepalive_options:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
        if options.tls is not None:
            # The handshake runs here, bounded by the connect timeout set above.
            return options.tls.wrap_socket(sock, server_hostname=options.host)
    except BaseException:
        sock.close()
        raise
    return sock


def _input_check(sock: socket.socket) -> Callable[[], bool]:
    """A non-blocking check for anything to read on an idle socket: an EOF (the server closed
    it, e.g. on a restart), an error, or bytes nobody asked for (its replies are out of step)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return lambda: bool(poller.poll(0))
    return lambda: bool(select.select([sock], [], [], 0)[0])  # pragma: no cover - Windows


class _Connection:
    __slots__ = ("__weakref__", "has_input", "last_used", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = _reader()
        self.last_used = time.monotonic()
        self.has_input = _input_check(sock)
        # A store dropped without close() releases the socket quietly. A finalizer, not
        # __del__: when the store dies in a reference cycle, the garbage collector may
        # finalize the socket before a __del__ here could close it (a ResourceWarning).
        weakref.finalize(self, _close_quietly, sock)

    def request(self, packed: bytes, replies: int = 1) -> list[Reply]:
        """Send ``packed`` (holding ``replies`` commands) and read that many replies."""
        self.sock.sendall(packed)
        out: list[Reply] = []
        reader = self.reader
        while len(out) < replies:
            reply = reader.gets()
            if reply is False:
                data = self.sock.recv(_READ_SIZE)
                if not data:
                    raise redis_errors.ConnectionError("Connection closed by server.")
                reader.feed(data)
                continue
            out.append(reply)
        return out

    def close(self) -> None:
        _close_quietly(self.sock)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


class SyncWire:
    """Thread-safe blocking transport: a pool of at most ``max_connections`` sockets.

    A thread takes an idle socket (or opens one while fewer than ``max_connections`` are
    open), uses it for one command and gives it back. When all are in use it waits up to
    ``pool_timeout`` for one (then ``MaxConnectionsError``, a connection error). The pool's
    lock guards only that bookkeeping, never the I/O. A socket that saw any error or
    interruption is closed, never reused: its reply stream may be out of step.
    """

    def __init__(self, options: WireOptions, retry: Any = None) -> None:
        self._options = options
        self._retry = retry
        self._pool_timeout = (
            options.timeout if options.pool_timeout is None else options.pool_timeout
        )
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        """A fresh, empty pool (at creation, and in a forked child: the parent's sockets and
        lock are not the child's to use)."""
        self._pid = os.getpid()
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._open = 0  # sockets open or being opened, idle or in use
        self._waiting = 0  # threads waiting for one

    @property
    def options(self) -> WireOptions:
        return self._options

    def _connect(self) -> _Connection:
        options = self._options
        try:
            sock = _open_socket(options)
        except OSError as exc:
            raise _connect_error(options, exc) from exc
        sock.settimeout(options.timeout)
        connection = _Connection(sock)
        commands = handshake(options)
        if commands:
            try:
                for reply in self._guarded(connection, b"".join(commands), len(commands)):
                    check(reply)
            except BaseException:
                connection.close()
                raise
        return connection

    def _take(self) -> _Connection:
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            if not self._idle and self._open >= self._options.max_connections:
                self._wait_for_a_socket()
            if self._closed:
                raise redis_errors.ConnectionError("the store is closed")
            connection = self._idle.pop() if self._idle else None
            if connection is None:
                self._open += 1
        if connection is not None:
            if self._usable(connection):
                return connection
            connection.close()  # its place in the pool goes to the replacement
        try:
            return self._connect()
        except BaseException:
            self._forget(None)
            raise

    def _wait_for_a_socket(self) -> None:
        """Wait (lock held) until a socket is idle or may be opened, up to the pool timeout."""
        deadline = time.monotonic() + self._pool_timeout
        self._waiting += 1
        try:
            while not self._idle and self._open >= self._options.max_connections:
                if self._closed:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = (
                        f"all {self._options.max_connections} connections to "
                        f"{self._options.address} stayed busy for {self._pool_timeout:g}s "
                        "(max_connections)"
                    )
                    raise redis_errors.MaxConnectionsError(msg)
                self._freed.wait(remaining)
        finally:
            self._waiting -= 1

    def _usable(self, connection: _Connection) -> bool:
        """Whether an idle socket may carry a command: one non-blocking poll tells whether the
        server closed it (a restart, a timeout, CLIENT KILL); after ``health_check_interval``
        idle seconds a PING also proves it is still answered."""
        if connection.has_input():
            return False
        interval = self._options.health_check_interval
        if interval and time.monotonic() - connection.last_used > interval:
            try:
                check(self._guarded(connection, _PING)[0])
            except redis_errors.RedisError:
                return False
        return True

    def _give_back(self, connection: _Connection) -> None:
        connection.last_used = time.monotonic()
        with self._lock:
            if self._closed:
                connection.close()
                self._open -= 1
            else:
                self._idle.append(connection)
            if self._waiting:
                self._freed.notify()

    def _forget(self, connection: _Connection | None) -> None:
        """Close a socket that must not be reused and free its place in the pool."""
        if connection is not None:
            connection.close()
        with self._lock:
            self._open -= 1
            if self._waiting:
                self._freed.notify()

    def _guarded(self, connection: _Connection, packed: bytes, replies: int = 1) -> list[Reply]:
        try:
            return connection.request(packed, replies)
        except TimeoutError as exc:
            raise redis_errors.TimeoutError(
                f"Timeout reading from {self._options.address}"
            ) from exc
        except OSError as exc:
            msg = f"Error while talking to {self._options.address}: {exc}"
            raise redis_errors.ConnectionError(msg) from exc

    def _once(self, packed: bytes) -> Reply:
        connection = self._take()
        try:
            reply = self._guarded(connection, packed)[0]
        except BaseException:
            self._forget(connection)
            raise
        if reply.__class__ is _ReplyError and _refused(reply):
            # An unauthenticated socket stays so: never pool it.
            self._forget(connection)
        else:
            self._give_back(connection)
        return reply

    def call(self, packed: bytes) -> Reply:
        """Send one packed command and return its reply (error replies are returned, not
        raised: see :func:`check`). Connection errors are retried per the client's policy."""
        if self._retry is None:
            return self._once(packed)
        return self._retry.call_with_retry(lambda: self._once(packed), lambda _error: None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._freed.notify_all()
        for connection in idle:
            connection.close()


# ---------------------------------------------------------------------------------------------
# Async: one pipelined connection per event loop
# ---------------------------------------------------------------------------------------------


class _Pipe(asyncio.Protocol):
    """One connection of one event loop; requests are answered in the order they were written.

    Every request shares the same timeout, so the oldest unanswered request is always the
    first to be overdue: one watchdog timer on the head of the queue replaces a timer per
    request. An overdue request means the connection is stuck (every later reply waits behind
    it), so the whole connection is dropped and the next call opens a fresh one.
    """

    def __init__(self, address: str, timeout: float) -> None:
        self._address = address
        self._timeout = timeout
        self._reader = _reader()
        self._waiters: deque[tuple[asyncio.Future[Reply], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self._watchdog: asyncio.TimerHandle | None = None
        self._unsent: list[bytes] = []
        self.lost: redis_errors.ConnectionError | None = None
        self.last_used = time.monotonic()
        self.closer: AsyncIterator[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports have the interface without the class.
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                waiter = self._waiters.popleft()[0]
                if not waiter.done():  # a cancelled caller: drop its reply
                    waiter.set_result(reply)
                if reply.__class__ is _ReplyError and _refused(reply):
                    # Not authenticated: every later request here gets the same answer.
                    self.abort(_ReplyError(*reply.args))
                    return
        except (redis_errors.InvalidResponse, IndexError) as exc:
            self.abort(redis_errors.ConnectionError(f"protocol error from {self._address}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail(redis_errors.ConnectionError(f"Connection to {self._address} lost{reason}"))

    def _fail(
        self, error: redis_errors.RedisError, first: redis_errors.RedisError | None = None
    ) -> None:
        if self.lost is None:
            self.lost = redis_errors.ConnectionError(str(error))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiters:
            waiter = self._waiters.popleft()[0]
            if not waiter.done():
                # One exception object per caller: raising a shared one in many tasks would
                # pile all their tracebacks onto it.
                reason = first or error
                waiter.set_exception(type(reason)(*reason.args))
                first = None

    def send(self, packed: bytes) -> asyncio.Future[Reply]:
        if self.lost is not None:
            raise self.lost
        loop = self.loop
        waiter: asyncio.Future[Reply] = loop.create_future()
        deadline = loop.time() + self._timeout
        self._waiters.append((waiter, deadline))
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._watch)
        # Commands issued in one event-loop turn leave in one write (one syscall), the way
        # concurrent requests of a busy server arrive: a pipeline without anyone asking.
        if not self._unsent:
            loop.call_soon(self._flush)
        self._unsent.append(packed)
        return waiter

    def _flush(self) -> None:
        unsent, self._unsent = self._unsent, []
        if self.lost is None and self._transport is not None:
            self._transport.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))

    def _watch(self) -> None:
        self._watchdog = None
        if not self._waiters or self.lost is not None:
            return
        deadline = self._waiters[0][1]
        if self.loop.time() < deadline:  # the overdue request was answered; watch the next
            self._watchdog = self.loop.call_at(deadline, self._watch)
            return
        self._fail(
            redis_errors.ConnectionError(f"connection to {self._address} reset after a timeout"),
            first=redis_errors.TimeoutError(f"Timeout reading from {self._address}"),
        )
        if self._transport is not None:
            self._transport.abort()

    def abort(self, error: redis_errors.RedisError) -> None:
        """Fail every pending request and drop the connection (its replies are out of step)."""
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def drop(self, reason: str) -> None:
        """Drop the connection from any thread: on its own loop if that still runs; if the
        loop is closed, shut the socket down so the server lets go of it at once."""
        error = redis_errors.ConnectionError(reason)
        if not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                if self.loop is _running_loop():
                    self.abort(error)
                else:
                    self.loop.call_soon_threadsafe(self.abort, error)
                return
        sock = None if self._transport is None else self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


async def _close_at_loop_shutdown(pipe: _Pipe) -> AsyncIterator[None]:
    """Suspended for the connection's life; the loop closes it on shutdown (``aclose()``)."""
    try:
        yield
    finally:
        pipe.abort(redis_errors.ConnectionError("the event loop is shutting down"))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class AsyncWire:
    """Asyncio transport: concurrent calls are pipelined on one connection per event loop.

    A store may be used from several event loops (one after another, as successive
    ``asyncio.run()`` calls do, or at the same time in several threads): each loop gets its
    own connection, and a call only ever uses a connection of the loop it runs on.
    """

    def __init__(self, options: WireOptions, retry: Any = None) -> None:
        self._options = options
        self._retry = retry
        self._pipe: _Pipe | None = None  # the connection used last: the fast path's guess
        self._pipes: dict[asyncio.AbstractEventLoop, _Pipe] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Future[_Pipe]] = {}
        self._closed = False
        self._idle_limit = options.health_check_interval

    @property
    def options(self) -> WireOptions:
        return self._options

    async def _open(self) -> _Pipe:
        options = self._options
        loop = asyncio.get_running_loop()

        def protocol() -> _Pipe:
            return _Pipe(options.address, options.timeout)

        try:
            async with asyncio.timeout(options.connect_timeout):
                if options.path is not None:
                    transport, pipe = await loop.create_unix_connection(protocol, options.path)
                else:
                    tls = options.tls
                    transport, pipe = await loop.create_connection(
                        protocol,
                        options.host,
                        options.port,
                        ssl=tls,
                        server_hostname=options.host if tls is not None else None,
                    )
        except (OSError, TimeoutError) as exc:
            raise _connect_error(options, exc) from exc
        sock = transport.get_extra_info("socket")
        if options.path is None and options.keepalive and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in options.keepalive_options:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
        try:
            for command in handshake(options):
                check(await pipe.send(command))
        except BaseException:
            transport.abort()
            raise
        # Close the connection when its loop shuts down (asyncio.run() and uvicorn finalize
        # a loop's async generators before closing it): a later loop cannot close it, and
        # an unclosed transport would be left to the garbage collector.
        pipe.closer = _close_at_loop_shutdown(pipe)
        await anext(pipe.closer)
        return pipe

    async def _current(self) -> _Pipe:
        if self._closed:
            raise redis_errors.ConnectionError("the store is closed")
        loop = asyncio.get_running_loop()
        pipe = self._pipes.get(loop)
        if pipe is not None and pipe.lost is None:
            if not self._idle_limit or time.monotonic() - pipe.last_used <= self._idle_limit:
                self._pipe = pipe
                return pipe
            try:
                check(await pipe.send(_PING))
            except redis_errors.RedisError:
                pipe.abort(redis_errors.ConnectionError("health check failed"))
            else:
                self._pipe = pipe
                return pipe
        opening = self._opening.get(loop)
        if opening is not None and not opening.done():
            try:
                return await asyncio.shield(opening)
            except _OpeningCancelled:
                # The caller that was connecting got cancelled (its client went away, say):
                # not a reason to fail this one. Connect again.
                return await self._current()
        # One connect per loop for every caller that finds no connection (not one each).
        self._forget_closed_loops()
        opening = self._opening[loop] = loop.create_future()
        try:
            pipe = await self._open()
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            opening.set_exception(_OpeningCancelled() if cancelled else exc)
            opening.exception()  # retrieved: waiters re-raise it, nobody else must log it
            raise
        finally:
            del self._opening[loop]
        self._adopt(loop, pipe)
        opening.set_result(pipe)
        return pipe

    def _adopt(self, loop: asyncio.AbstractEventLoop, pipe: _Pipe) -> None:
        if self._closed:  # closed while connecting
            pipe.abort(redis_errors.ConnectionError("the store is closed"))
        else:
            self._pipes[loop] = self._pipe = pipe

    def _forget_closed_loops(self) -> None:
        """Drop the connections of loops that are closed (an earlier ``asyncio.run()``)."""
        for loop, pipe in list(self._pipes.items()):  # list(): other threads' loops add theirs
            if loop.is_closed():
                self._pipes.pop(loop, None)
                pipe.drop("its event loop is closed")

    async def _once(self, packed: bytes) -> Reply:
        pipe = await self._current()
        pipe.last_used = time.monotonic()
        return await pipe.send(packed)

    def call(self, packed: bytes) -> Awaitable[Reply]:
        """Send one packed command; await the result for its reply (error replies are
        returned, not raised: see :func:`check`). Connection errors are retried per the
        client's policy.

        Not a coroutine function: on the fast path (no retry policy, a live connection of
        this loop) the reply's future itself is returned -- one coroutine object less per
        command, which also keeps fewer objects alive while requests wait on Redis (what
        drives CPython's cyclic collector under concurrency). Call it from a running loop.
        """
        pipe = self._pipe
        # The fast path, inline: the last used connection is live, of this loop, recently
        # used, and there is no retry policy. Anything else -- first call, lost connection,
        # another loop, idle, closed -- goes the careful way (_current).
        if (
            self._retry is None
            and pipe is not None
            and pipe.lost is None
            and pipe.loop is asyncio.get_running_loop()
        ):
            now = time.monotonic()
            if not self._idle_limit or now - pipe.last_used <= self._idle_limit:
                pipe.last_used = now
                return pipe.send(packed)
        if self._retry is None:
            return self._once(packed)
        return self._retry.call_with_retry(lambda: self._once(packed), _no_cleanup)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Close every connection: this loop's at once, other live loops' on their loop."""
        self._closed = True
        self._pipe = None
        pipes, self._pipes = self._pipes, {}
        for pipe in pipes.values():
            pipe.drop("the store is closed")

    def __del__(self) -> None:
        # A store dropped without close(): drop the connections quietly (each on its loop).
        for pipe in list(self._pipes.values()):
            pipe.drop("store dropped")


class _OpeningCancelled(Exception):
    """The caller opening the connection was cancelled; others waiting for it connect again."""


async def _no_cleanup(_error: Exception) -> None:
    """Nothing to undo between retries: a failed pipe is replaced on the next call."""


# ---------------------------------------------------------------------------------------------
# Scripts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireScript:
    """A Lua script sent by SHA1, loaded on a ``NOSCRIPT`` reply (the script did not run)."""

    sha: bytes
    load: bytes
    _heads: dict[tuple[int, int], bytes] = field(default_factory=dict, compare=False, repr=False)
    """``*N EVALSHA <sha> <numkeys>``, packed once per (keys, args) count."""

    @classmethod
    def of(cls, sha: str, source: str) -> WireScript:
        return cls(sha.encode(), pack([b"SCRIPT", b"LOAD", source]))

    def command(self, keys: Sequence[bytes | str], args: Sequence[bytes | str]) -> bytes:
        shape = (len(keys), len(args))
        head = self._heads.get(shape)
        if head is None:
            count = b"*%d\r\n" % (3 + len(keys) + len(args))
            head = self._heads[shape] = count + _bulk([b"EVALSHA", self.sha, str(len(keys))])
        return head + _bulk((*keys, *args))


def is_noscript(reply: Reply) -> bool:
    return isinstance(reply, redis_errors.ResponseError) and str(reply).startswith("NOSCRIPT")


def wire_command(
    call_script: WireScript | None, keys: Sequence[bytes | str], args: Sequence[bytes | str]
) -> bytes:
    """``EVALSHA`` of ``call_script``, or for ``None`` an ``HMGET keys[0] *args``."""
    if call_script is None:
        return pack([b"HMGET", keys[0], *args])
    return call_script.command(keys, args)


def run_sync(wire: SyncWire, script: WireScript | None, command: bytes) -> Reply:
    """Send ``command``; if it is a script the server does not know yet, load it and resend."""
    reply = wire.call(command)
    if script is not None and is_noscript(reply):
        check(wire.call(script.load))
        reply = wire.call(command)
    return check(reply)


async def load_and_resend(wire: AsyncWire, script: WireScript, command: bytes) -> Reply:
    """Async half of :func:`run_sync`'s ``NOSCRIPT`` recovery: load the script, send again.

    The async store awaits ``wire.call`` itself and calls this only on a ``NOSCRIPT`` reply:
    a wrapper coroutine around every command would cost more than the check.
    """
    check(await wire.call(script.load))
    return await wire.call(command)


__all__ = [
    "AsyncWire",
    "SyncWire",
    "WireOptions",
    "WireScript",
    "check",
    "is_noscript",
    "load_and_resend",
    "pack",
    "run_sync",
    "traced",
    "transport_for",
    "wire_command",
    "wire_options",
]
