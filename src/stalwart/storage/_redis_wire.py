# Copyright 2026 stalwart contributors
"""A lean RESP2 transport for the Redis engine's own commands (scripts and ``HMGET``).

Why not redis-py's client for every call: its per-command machinery (command packing, pool
locking, retry wrappers, observability hooks) costs more CPU than the round trip itself on a
fast network -- measured ~50 us of CPU per async ``SET`` under 16 concurrent tasks, against
~7 us for a pipelined protocol connection (``benchmarks/idempotency.py`` reports both). The
store therefore talks to Redis over its own connections, built from the caller's redis-py
client configuration, whenever that configuration is a plain one:

- sync: a small pool of blocking sockets (one per concurrently calling thread), hiredis parser;
- async: one pipelined connection per event loop; concurrent calls share it, their replies are
  matched in order (Redis answers in order on one connection), so there is no pool to lock.

Anything this module does not handle -- TLS, RESP3, credential providers, Sentinel or Cluster
pools, custom connection classes, a missing hiredis -- makes :func:`wire_options` return
``None`` and the store keeps using redis-py for everything. Errors are raised as redis-py's
own exception types (``ConnectionError``, ``TimeoutError``, ``ResponseError`` subclasses), so
the store's error translation is the same on both paths, and the client's ``Retry`` policy is
applied the same way redis-py applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, cast

import redis
import redis.asyncio
from redis import exceptions as redis_errors

hiredis: ModuleType | None
try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis ships with the redis extra
    hiredis = None

try:
    from redis._parsers.base import BaseParser

    _parse_error = BaseParser.parse_error
except ImportError:  # pragma: no cover - redis-py moved its parser: plain ResponseErrors

    def _parse_error(response: str) -> redis_errors.ResponseError:
        return redis_errors.ResponseError(response)


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

type Reply = Any
"""A decoded RESP2 reply: bytes, int, None or (nested) lists of those."""

_READ_SIZE: Final = 65536
_DEFAULT_TIMEOUT_S: Final = 5.0

# redis-py connection settings that do not change what goes over the wire (or that only its
# own client machinery uses); any other setting with a non-default value keeps redis-py.
_IGNORED_KWARGS: Final = frozenset(
    {
        "socket_read_size",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "driver_info",
        "lib_name",
        "lib_version",
        "himport_registry",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "legacy_responses",
        "socket_keepalive_options",
        "socket_type",
        "retry_on_timeout",
        "event_dispatcher",
    }
)


@dataclass(frozen=True, slots=True)
class WireOptions:
    """Where and how to connect: what the caller's redis-py client would use."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    """A Unix socket path (then host and port are unused)."""
    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str | None = None
    connect_timeout: float | None = None
    timeout: float = _DEFAULT_TIMEOUT_S
    """Seconds to wait for a reply (always set: every external call has a deadline)."""
    health_check_interval: float = 0.0
    """Idle seconds after which a connection is PINGed before use (0: never)."""
    keepalive: bool = False

    @property
    def address(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"


_PLAIN_POOLS: Final = frozenset(
    {
        redis.ConnectionPool,
        redis.BlockingConnectionPool,
        redis.asyncio.ConnectionPool,
        redis.asyncio.BlockingConnectionPool,
    }
)
_TCP_CONNECTIONS: Final = frozenset({redis.Connection, redis.asyncio.Connection})
_UNIX_CONNECTIONS: Final = frozenset(
    {redis.UnixDomainSocketConnection, redis.asyncio.UnixDomainSocketConnection}
)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


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
}


def _honourable(name: str, value: Any) -> bool:
    """Whether a setting the wire does not honour is harmless to leave out."""
    if name in _IGNORED_KWARGS or name == "retry":
        return True
    if name == "protocol":
        return value in {None, 2, "2"}
    return value is None or value is False or value in ((), [], {}, "")


def wire_options(pool: Any) -> WireOptions | None:
    """The wire settings equivalent to a redis-py pool's, or None if the wire cannot honour them.

    >>> wire_options(redis.Redis(host="10.0.0.5", db=2).connection_pool).address
    '10.0.0.5:6379'
    >>> wire_options(redis.Redis(ssl=True).connection_pool) is None  # TLS: redis-py's job
    True
    """
    connection_class = getattr(pool, "connection_class", None)
    unix = connection_class in _UNIX_CONNECTIONS
    if hiredis is None or type(pool) not in _PLAIN_POOLS:
        return None
    if not unix and connection_class not in _TCP_CONNECTIONS:
        return None
    options: dict[str, Any] = {}
    try:
        for name, value in pool.connection_kwargs.items():
            if name in _HONOURED:
                field, convert = _HONOURED[name]
                options[field] = convert(value)
            elif not _honourable(name, value):
                return None  # credential_provider, RESP3, retry_on_error...: redis-py's job
    except (TypeError, ValueError):
        return None
    if unix != ("path" in options):
        return None
    if options.get("timeout") is None:
        # Every external call has a deadline; redis-py's own default is 5 s since version 8.
        options.pop("timeout", None)
    return WireOptions(**options)


def traced(client: Any) -> bool:
    """Whether OpenTelemetry's redis instrumentation wraps this client's commands.

    Then the store sends its commands through redis-py, so they are traced like every other
    Redis command (the check is one attribute lookup, made per call because instrumentation
    is often switched on after the store is built).
    """
    return hasattr(type(client).execute_command, "__wrapped__")


def _pool_retry(pool: Any) -> Any:
    """The redis-py ``Retry`` of a pool's connections (None when it retries nothing)."""
    retry = getattr(pool, "connection_kwargs", {}).get("retry")
    if retry is None or retry.get_retries() == 0:
        return None
    return retry


def transport_for[W: (SyncWire, AsyncWire)](client: Any, wire: type[W]) -> W | None:
    """The store's own transport for a redis-py client, or None when redis-py must carry
    the commands (see :func:`wire_options`)."""
    pool = getattr(client, "connection_pool", None)
    options = wire_options(pool)
    return None if options is None else wire(options, _pool_retry(pool))


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


def check(reply: Reply) -> Reply:
    """Raise a top-level error reply as redis-py's exception for it (NOSCRIPT, READONLY...)."""
    if isinstance(reply, redis_errors.ResponseError):
        raise _parse_error(str(reply))  # type: ignore[no-untyped-call]
    return reply


def _reader() -> Any:
    assert hiredis is not None
    return hiredis.Reader(
        protocolError=redis_errors.InvalidResponse, replyError=redis_errors.ResponseError
    )


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
# Sync: a pool of blocking sockets
# ---------------------------------------------------------------------------------------------


class _Connection:
    __slots__ = ("__weakref__", "last_used", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = _reader()
        self.last_used = time.monotonic()
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
    """Thread-safe blocking transport; one socket per concurrently calling thread.

    Idle sockets wait in a deque (its ``append``/``pop`` are atomic), so taking one costs no
    lock. A socket that saw any error or interruption is closed, never reused: its reply
    stream may be out of step.
    """

    def __init__(self, options: WireOptions, retry: Any = None) -> None:
        self._options = options
        self._retry = retry
        self._idle: deque[_Connection] = deque()
        self._pid = os.getpid()
        self._closed = False

    @property
    def options(self) -> WireOptions:
        return self._options

    def _connect(self) -> _Connection:
        options = self._options
        try:
            if options.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(options.connect_timeout)
                sock.connect(options.path)
            else:
                sock = socket.create_connection(
                    (options.host, options.port), timeout=options.connect_timeout
                )
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if options.keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
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
        if self._closed:
            raise redis_errors.ConnectionError("the store is closed")
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self._idle = deque()
            self._pid = os.getpid()
        try:
            connection = self._idle.pop()
        except IndexError:
            return self._connect()
        interval = self._options.health_check_interval
        if interval and time.monotonic() - connection.last_used > interval:
            # An idle socket may have been closed by the server: check it before sending a
            # write whose outcome would otherwise be unknown.
            try:
                check(self._guarded(connection, _PING)[0])
            except redis_errors.RedisError:
                connection.close()
                return self._connect()
        return connection

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
            connection.close()
            raise
        connection.last_used = time.monotonic()
        if self._closed:
            connection.close()
        else:
            self._idle.append(connection)
        return reply

    def call(self, packed: bytes) -> Reply:
        """Send one packed command and return its reply (error replies are returned, not
        raised: see :func:`check`). Connection errors are retried per the client's policy."""
        if self._retry is None:
            return self._once(packed)
        return self._retry.call_with_retry(lambda: self._once(packed), lambda _error: None)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


# ---------------------------------------------------------------------------------------------
# Async: one pipelined connection per event loop
# ---------------------------------------------------------------------------------------------


class _Pipe(asyncio.Protocol):
    """One connection; requests are answered in the order they were written.

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
        self._loop = asyncio.get_running_loop()
        self._watchdog: asyncio.TimerHandle | None = None
        self._unsent: list[bytes] = []
        self.lost: redis_errors.ConnectionError | None = None
        self.last_used = time.monotonic()

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
        loop = self._loop
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
        if self._loop.time() < deadline:  # the overdue request was answered; watch the next
            self._watchdog = self._loop.call_at(deadline, self._watch)
            return
        self._fail(
            redis_errors.ConnectionError(f"connection to {self._address} reset after a timeout"),
            first=redis_errors.TimeoutError(f"Timeout reading from {self._address}"),
        )
        if self._transport is not None:
            self._transport.abort()

    def abort(self, error: redis_errors.ConnectionError) -> None:
        """Fail every pending request and drop the connection (its replies are out of step)."""
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()


class AsyncWire:
    """Asyncio transport: concurrent calls are pipelined on one connection per event loop."""

    def __init__(self, options: WireOptions, retry: Any = None) -> None:
        self._options = options
        self._retry = retry
        self._pipe: _Pipe | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Future[_Pipe] | None = None
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
                    transport, pipe = await loop.create_connection(
                        protocol, options.host, options.port
                    )
        except (OSError, TimeoutError) as exc:
            raise _connect_error(options, exc) from exc
        if options.keepalive:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        try:
            for command in handshake(options):
                check(await pipe.send(command))
        except BaseException:
            transport.abort()
            raise
        return pipe

    async def _current(self) -> _Pipe:
        if self._closed:
            raise redis_errors.ConnectionError("the store is closed")
        loop = asyncio.get_running_loop()
        pipe = self._pipe
        if pipe is not None and pipe.lost is None and self._loop is loop:
            if not self._idle_limit or time.monotonic() - pipe.last_used <= self._idle_limit:
                return pipe
            try:
                check(await pipe.send(_PING))
            except redis_errors.RedisError:
                pipe.abort(redis_errors.ConnectionError("health check failed"))
            else:
                return pipe
        if self._opening is not None and self._loop is loop and not self._opening.done():
            try:
                return await asyncio.shield(self._opening)
            except _OpeningCancelled:
                # The caller that was connecting got cancelled (its client went away, say):
                # not a reason to fail this one. Connect again.
                return await self._current()
        # One connect for every caller that finds no connection (not one each).
        self._loop = loop
        opening: asyncio.Future[_Pipe] = loop.create_future()
        self._opening = opening
        try:
            pipe = await self._open()
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            opening.set_exception(_OpeningCancelled() if cancelled else exc)
            opening.exception()  # retrieved: waiters re-raise it, nobody else must log it
            raise
        self._pipe = pipe
        opening.set_result(pipe)
        return pipe

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
        # The fast path, inline: a live pipe of this loop, recently used, no retry policy.
        # Anything else -- first call, lost connection, new loop, idle, closed -- goes the
        # careful way (_current).
        if (
            self._retry is None
            and pipe is not None
            and pipe.lost is None
            and self._loop is asyncio.get_running_loop()
        ):
            now = time.monotonic()
            if not self._idle_limit or now - pipe.last_used <= self._idle_limit:
                pipe.last_used = now
                return pipe.send(packed)
        if self._retry is None:
            return self._once(packed)
        return self._retry.call_with_retry(lambda: self._once(packed), _no_cleanup)  # type: ignore[no-any-return]

    async def close(self) -> None:
        self._closed = True
        pipe, self._pipe = self._pipe, None
        if pipe is not None and self._loop is asyncio.get_running_loop():
            pipe.abort(redis_errors.ConnectionError("the store is closed"))

    def __del__(self) -> None:
        # A store dropped without close(): drop the connection quietly (on its own loop).
        pipe, loop = self._pipe, self._loop
        if pipe is not None and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(pipe.abort, redis_errors.ConnectionError("store dropped"))


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
