# Copyright 2026 stalwart contributors
"""Redis engine of the storage contract: one Lua script per operation, atomic server-side.

>>> store = store_from_url("redis://localhost:6379/0?prefix=app")  # doctest: +SKIP
>>> store.create(Key("acct-1", "balance"), {"cents": 0}).version  # doctest: +SKIP
1

Layout, scripts, limits and URL parameters are described in ``docs/storage/redis.md``. In
short: every key of one partition shares the Redis Cluster hash tag
:func:`partition_key` ``(prefix, partition)``; records are hashes ``{tag}r:<sort key>`` and
the partition's sorted-set index is ``{tag}i``.

Both stores are the shared :class:`~stalwart.storage._engine.EngineStore` pair over
:class:`~stalwart.storage._redis_codec.RedisEngine` (one ``Call`` per operation) and an
executor per mode that sends each call on the store's own connections or through redis-py.
Both accept a caller-made client and never close it (unless ``close_client=True``).
Scripts are sent with ``EVALSHA`` through redis-py's ``register_script``; a ``NOSCRIPT`` reply
means the script did not run, so redis-py's load-and-retry cannot apply a write twice. When the
client retries, a resend after a lost reply is recognised by the call's replay marker and gets
the first run's reply (see the docs, *Resends*).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

from stalwart._extras import require_extra

require_extra("redis", "redis", feature="stalwart.storage.redis")

import redis  # noqa: E402 - after the extra check so a missing extra names itself
import redis.asyncio  # noqa: E402
from redis import exceptions as redis_errors  # noqa: E402
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff  # noqa: E402

from stalwart.storage._contract import (  # noqa: E402
    AsyncStore,
    Clock,
    Store,
    StoreConfigurationError,
    wall_clock,
)
from stalwart.storage._engine import (  # noqa: E402
    AsyncEngineStore,
    EngineStore,
    Plan,
    drive,
    drive_async,
)
from stalwart.storage._redis_codec import (  # noqa: E402
    MAX_ITEM_BYTES,
    MAX_TRANSACTION_ITEMS,
    Arg,
    Call,
    Layout,
    RedisEngine,
    ScriptName,
    Transport,
    UrlOptions,
    parse_store_url,
    partition_key,
    translate_error,
)
from stalwart.storage._redis_scripts import SCRIPTS  # noqa: E402
from stalwart.storage._redis_wire import (  # noqa: E402
    DEFAULT_MAX_CONNECTIONS,
    AsyncWire,
    SyncWire,
    WireScript,
    check,
    is_noscript,
    load_and_resend,
    run_sync,
    traced,
    transport_for,
    wire_command,
)

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterable, Sequence

    from redis.commands.core import AsyncScript, Script

__all__ = [
    "MAX_ITEM_BYTES",
    "MAX_TRANSACTION_ITEMS",
    "AsyncRedisStore",
    "RedisStore",
    "async_store_from_url",
    "partition_key",
    "store_from_url",
    "translate_error",
]

_RETRY_BACKOFF_BASE_S: Final = 0.05
_RETRY_BACKOFF_CAP_S: Final = 0.5
_REDIS_ERRORS: Final = (redis_errors.RedisError,)


class _Route[Client: (redis.Redis, redis.asyncio.Redis), Wire: (SyncWire, AsyncWire)]:
    """What carries one store's calls: its own connections (``wire``), or redis-py -- always
    when OpenTelemetry instruments the client, so the commands are traced like others."""

    __slots__ = ("client", "close_client", "scripts", "wire", "wire_scripts")

    def __init__(
        self, client: Client, wire: type[Wire], transport: Transport, *, close_client: bool
    ) -> None:
        self.client: Client = client
        self.close_client = close_client
        self.scripts: dict[ScriptName, Any] = {
            name: client.register_script(SCRIPTS[name]) for name in ScriptName
        }
        self.wire_scripts = {
            name: WireScript.of(script.sha, SCRIPTS[name]) for name, script in self.scripts.items()
        }
        self.wire: Wire | None = transport_for(client, wire, transport)

    def packed(self, call: Call[Any]) -> tuple[WireScript | None, bytes]:
        """The script (None for the plain ``HMGET`` of ``get``) and the packed command."""
        script = None if call.script is None else self.wire_scripts[call.script]
        return script, wire_command(script, call.keys, call.args)

    def via_redis_py(self, call: Call[Any]) -> Any:
        """Send ``call`` through the client (an awaitable on an asyncio client)."""
        if call.script is None:
            return self.client.hmget(call.keys[0], call.args)
        return self.scripts[call.script](keys=call.keys, args=call.args)


class _Executor:
    """Runs the engine's one-call plans synchronously."""

    __slots__ = ("_route",)

    def __init__(self, route: _Route[redis.Redis, SyncWire]) -> None:
        self._route = route

    def run[T](self, plan: Plan[Call[Any], T]) -> T:
        return drive(plan, self._perform, _REDIS_ERRORS, translate_error)

    def _perform(self, call: Call[Any]) -> Any:
        route = self._route
        wire = route.wire
        if wire is None or traced(route.client):
            return route.via_redis_py(call)
        return run_sync(wire, *route.packed(call))

    def close(self) -> None:
        route = self._route
        if route.wire is not None:
            route.wire.close()
        if route.close_client:
            route.client.close()


class _AsyncExecutor:
    """Runs the engine's one-call plans on the event loop."""

    __slots__ = ("_route",)

    def __init__(self, route: _Route[redis.asyncio.Redis, AsyncWire]) -> None:
        self._route = route

    def run[T](self, plan: Plan[Call[Any], T]) -> Coroutine[Any, Any, T]:
        # A plain function returning drive_async's coroutine: no coroutine of its own.
        return drive_async(plan, self._perform, _REDIS_ERRORS, translate_error)

    async def _perform(self, call: Call[Any]) -> Any:
        route = self._route
        wire = route.wire
        if wire is None or traced(route.client):
            return await route.via_redis_py(call)
        script, command = route.packed(call)
        reply = await wire.call(command)
        if script is not None and is_noscript(reply):
            reply = await load_and_resend(wire, script, command)
        return check(reply)

    async def close(self) -> None:
        route = self._route
        if route.wire is not None:
            await route.wire.close()
        if route.close_client:
            await route.client.aclose()


class RedisStore(EngineStore[Call[Any]]):
    """Synchronous :class:`~stalwart.storage.Store` on a ``redis.Redis`` client.

    ``prefix`` namespaces the store's keys; ``cluster=True`` rejects transactions spanning
    partitions (Redis Cluster runs a script only when all its keys share one hash slot).
    The client is not closed by :meth:`close` unless ``close_client=True``.

    ``transport`` picks what carries the store's commands: ``"auto"`` (the store's own
    connections, built from the client's settings, unless a setting needs redis-py),
    ``"stalwart"`` (the own connections, or :class:`~stalwart.storage.StoreConfigurationError`
    naming the settings they cannot honour) or ``"redis-py"`` (the client itself).

    >>> store = RedisStore(redis.Redis(), prefix="app")  # doctest: +SKIP
    >>> store.increment(Key("acct-1", "stats"), "hits").data  # doctest: +SKIP
    {'hits': 1}
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        clock: Clock = wall_clock,
        cluster: bool = False,
        close_client: bool = False,
        transport: Transport = "auto",
    ) -> None:
        self._route = _Route(client, SyncWire, transport, close_client=close_client)
        self._redis = RedisEngine(Layout(prefix), client_may_resend(client), cluster)
        super().__init__(self._redis, _Executor(self._route), clock)

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client (its settings; :meth:`run_script`)."""
        return self._route.client

    @property
    def transport(self) -> SyncWire | None:
        """The store's own connections that carry its commands (built from the client's
        settings), or None when redis-py carries them (``transport="redis-py"``, or a setting
        such as RESP3 or a Cluster pool that only redis-py honours)."""
        return self._route.wire

    @property
    def prefix(self) -> str:
        """The key namespace; see :func:`partition_key` for the layout."""
        return self._redis.layout.prefix

    def run_script(
        self, script: Script, keys: Sequence[Arg] = (), args: Iterable[Arg | int | float] = ()
    ) -> Any:
        """Run a script registered on :attr:`client`, mapping errors like the store does.

        >>> bump = store.client.register_script(  # doctest: +SKIP
        ...     "return redis.call('INCR', KEYS[1])")
        >>> store.run_script(bump, [partition_key(store.prefix, "p") + "n"])  # doctest: +SKIP
        1
        """
        try:
            return script(keys=keys, args=args)
        except redis_errors.RedisError as exc:
            raise translate_error(exc) from exc


class AsyncRedisStore(AsyncEngineStore[Call[Any]]):
    """Asynchronous :class:`~stalwart.storage.AsyncStore` on a ``redis.asyncio.Redis`` client.

    Same semantics, layout and scripts as :class:`RedisStore`.

    >>> store = AsyncRedisStore(redis.asyncio.Redis(), prefix="app")  # doctest: +SKIP
    >>> (await store.get(Key("acct-1", "balance"))) is None  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str,
        clock: Clock = wall_clock,
        cluster: bool = False,
        close_client: bool = False,
        transport: Transport = "auto",
    ) -> None:
        self._route = _Route(client, AsyncWire, transport, close_client=close_client)
        self._redis = RedisEngine(Layout(prefix), client_may_resend(client), cluster)
        super().__init__(self._redis, _AsyncExecutor(self._route), clock)

    @property
    def client(self) -> redis.asyncio.Redis:
        """The underlying redis-py asyncio client (its settings; :meth:`run_script`)."""
        return self._route.client

    @property
    def transport(self) -> AsyncWire | None:
        """See :attr:`RedisStore.transport` (here: one pipelined connection per event loop)."""
        return self._route.wire

    @property
    def prefix(self) -> str:
        """The key namespace; see :func:`partition_key` for the layout."""
        return self._redis.layout.prefix

    async def run_script(
        self, script: AsyncScript, keys: Sequence[Arg] = (), args: Iterable[Arg | int | float] = ()
    ) -> Any:
        """Run a script registered on :attr:`client`, mapping errors like the store does."""
        try:
            return await script(keys=keys, args=args)
        except redis_errors.RedisError as exc:
            raise translate_error(exc) from exc


def client_may_resend(client: redis.Redis | redis.asyncio.Redis) -> bool:
    """Whether the client library may resend a command after losing its reply (its ``Retry``
    retries), so that the store's writes must be remembered for a resend (see the docs)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if kwargs is None:
        return True  # no plain pool (Cluster...): assume the client's own retries
    retry = kwargs.get("retry")
    if retry is not None:
        return bool(retry.get_retries() > 0)
    # redis-py gives such connections one retry when errors to retry on are named.
    return bool(kwargs.get("retry_on_error") or kwargs.get("retry_on_timeout"))


def _client_kwargs(options: UrlOptions, retry_class: type[Any]) -> dict[str, Any]:
    """Explicit timeouts and redis-py's own retries (none unless the URL asks)."""
    backoff = (
        NoBackoff()
        if options.retries == 0
        else ExponentialWithJitterBackoff(base=_RETRY_BACKOFF_BASE_S, cap=_RETRY_BACKOFF_CAP_S)
    )
    return {
        "socket_connect_timeout": options.socket_connect_timeout,
        "socket_timeout": options.socket_timeout,
        "health_check_interval": options.health_check_interval,
        "retry": retry_class(backoff, options.retries),
    }


def _client[C](
    url: str, client_class: type[C], pool_class: Any, retry_class: type[Any]
) -> tuple[C, UrlOptions]:
    """A redis-py client the store owns, with a blocking pool: a burst beyond
    ``max_connections`` waits for a free connection (up to the socket timeout) instead of
    failing at once, as redis-py's default pool does."""
    options = parse_store_url(url)
    pool_kwargs: dict[str, Any] = {"timeout": options.socket_timeout}
    if "max_connections" not in parse_qs(urlsplit(options.client_url).query):
        pool_kwargs["max_connections"] = DEFAULT_MAX_CONNECTIONS
    try:
        pool = pool_class.from_url(
            options.client_url, **pool_kwargs, **_client_kwargs(options, retry_class)
        )
    except (ValueError, TypeError) as exc:  # what redis-py's URL parser still refuses
        raise StoreConfigurationError(f"malformed Redis URL: {exc}") from exc
    return client_class.from_pool(pool), options  # type: ignore[attr-defined]


def _store_kwargs(options: UrlOptions, clock: Clock) -> dict[str, Any]:
    """A URL store's settings; it owns (and closes) its client."""
    return {
        "prefix": options.prefix,
        "clock": clock,
        "cluster": options.cluster,
        "close_client": True,
        "transport": options.transport,
    }


def store_from_url(url: str, *, clock: Clock = wall_clock) -> Store:
    """Open a :class:`RedisStore` on a client it owns (closed by ``close()``).

    >>> store = store_from_url("redis://127.0.0.1:6379/0?prefix=app&timeout=2")  # doctest: +SKIP
    """
    client, options = _client(url, redis.Redis, redis.BlockingConnectionPool, redis.retry.Retry)
    return RedisStore(client, **_store_kwargs(options, clock))


def async_store_from_url(url: str, *, clock: Clock = wall_clock) -> AsyncStore:
    """Open an :class:`AsyncRedisStore` on a client it owns (closed by ``close()``).

    >>> store = async_store_from_url("redis://127.0.0.1:6379/0?prefix=app")  # doctest: +SKIP
    """
    client, options = _client(
        url,
        redis.asyncio.Redis,
        redis.asyncio.BlockingConnectionPool,
        redis.asyncio.retry.Retry,
    )
    return AsyncRedisStore(client, **_store_kwargs(options, clock))
