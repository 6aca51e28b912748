# Copyright 2026 stalwart contributors
"""Redis engine of the storage contract: one Lua script per operation, atomic server-side.

>>> store = store_from_url("redis://localhost:6379/0?prefix=app")  # doctest: +SKIP
>>> store.create(Key("acct-1", "balance"), {"cents": 0}).version  # doctest: +SKIP
1

Layout, scripts, limits and URL parameters are described in ``docs/storage/redis.md``. In
short: every key of one partition shares the Redis Cluster hash tag
:func:`partition_key` ``(prefix, partition)``; records are hashes ``{tag}r:<sort key>`` and
the partition's sorted-set index is ``{tag}i``.

Both stores accept a caller-made client and never close it (unless ``close_client=True``).
Scripts are sent with ``EVALSHA`` through redis-py's ``register_script``; a ``NOSCRIPT`` reply
means the script did not run, so redis-py's load-and-retry cannot apply a write twice. When the
client retries, a resend after a lost reply is recognised by the call's replay marker and gets
the first run's reply (see the docs, *Resends*).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from stalwart._extras import require_extra

require_extra("redis", "redis", feature="stalwart.storage.redis")

import redis  # noqa: E402 - after the extra check so a missing extra names itself
import redis.asyncio  # noqa: E402
from redis import exceptions as redis_errors  # noqa: E402
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff  # noqa: E402

from stalwart.storage._contract import (  # noqa: E402
    AsyncStore,
    Clock,
    JSONObject,
    Key,
    Operation,
    Page,
    Record,
    Store,
    wall_clock,
)
from stalwart.storage._redis_codec import (  # noqa: E402
    MAX_ITEM_BYTES,
    MAX_TRANSACTION_ITEMS,
    Arg,
    Call,
    Layout,
    ScriptName,
    UrlOptions,
    create_call,
    decode_reply,
    delete_call,
    get_call,
    increment_call,
    parse_store_url,
    partition_key,
    query_call,
    replace_call,
    transact_call,
    translate_error,
)
from stalwart.storage._redis_scripts import SCRIPTS  # noqa: E402
from stalwart.storage._redis_wire import (  # noqa: E402
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
    from collections.abc import Iterable, Sequence

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


class RedisStore:
    """Synchronous :class:`~stalwart.storage.Store` on a ``redis.Redis`` client.

    ``prefix`` namespaces the store's keys; ``cluster=True`` rejects transactions spanning
    partitions (Redis Cluster runs a script only when all its keys share one hash slot).
    The client is not closed by :meth:`close` unless ``close_client=True``.

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
    ) -> None:
        self._client = client
        self._layout = Layout(prefix)
        self._clock = clock
        self._cluster = cluster
        self._close_client = close_client
        self._scripts: dict[ScriptName, Script] = {
            name: client.register_script(SCRIPTS[name]) for name in ScriptName
        }
        self._wire_scripts = _wire_scripts(self._scripts)
        self._wire = transport_for(client, SyncWire)
        self._remember = client_may_resend(client)

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client (its settings; :meth:`run_script`)."""
        return self._client

    @property
    def transport(self) -> SyncWire | None:
        """The store's own connections that carry its commands (built from the client's
        settings), or None when the client's configuration needs redis-py (TLS, Cluster...)."""
        return self._wire

    @property
    def prefix(self) -> str:
        """The key namespace; see :func:`partition_key` for the layout."""
        return self._layout.prefix

    @property
    def max_transaction_items(self) -> int:
        """See :meth:`~stalwart.storage.Store.max_transaction_items`."""
        return MAX_TRANSACTION_ITEMS

    @property
    def max_item_bytes(self) -> int:
        """See :meth:`~stalwart.storage.Store.max_item_bytes`."""
        return MAX_ITEM_BYTES

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

    def _run[T](self, call: Call[T]) -> T:
        try:
            if self._wire is not None and not traced(self._client):
                reply = run_sync(self._wire, *_wire_request(self._wire_scripts, call))
            elif call.script is None:
                reply = self._client.hmget(call.keys[0], call.args)
            else:
                reply = self._scripts[call.script](keys=call.keys, args=call.args)
        except redis_errors.RedisError as exc:
            raise translate_error(exc) from exc
        return decode_reply(call, reply)

    def get(self, key: Key) -> Record | None:
        """See :meth:`~stalwart.storage.Store.get`."""
        return self._run(get_call(self._layout, key, self._clock()))

    def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        """See :meth:`~stalwart.storage.Store.create`."""
        return self._run(
            create_call(
                self._layout, key, data, ttl=ttl, now=self._clock(), remember=self._remember
            )
        )

    def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        """See :meth:`~stalwart.storage.Store.replace`."""
        return self._run(
            replace_call(
                self._layout,
                key,
                data,
                expected_version=expected_version,
                ttl=ttl,
                now=self._clock(),
                remember=self._remember,
            )
        )

    def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        """See :meth:`~stalwart.storage.Store.delete`."""
        return self._run(
            delete_call(
                self._layout,
                key,
                expected_version=expected_version,
                now=self._clock(),
                remember=self._remember,
            )
        )

    def increment(self, key: Key, field: str, by: float = 1, *, ttl: float | None = None) -> Record:
        """See :meth:`~stalwart.storage.Store.increment`."""
        return self._run(
            increment_call(
                self._layout, key, field, by, ttl=ttl, now=self._clock(), remember=self._remember
            )
        )

    def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        """See :meth:`~stalwart.storage.Store.query`."""
        return self._run(
            query_call(
                self._layout,
                partition,
                prefix=prefix,
                limit=limit,
                cursor=cursor,
                descending=descending,
                now=self._clock(),
            )
        )

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        """See :meth:`~stalwart.storage.Store.transact`."""
        return self._run(
            transact_call(
                self._layout,
                operations,
                max_items=MAX_TRANSACTION_ITEMS,
                now=self._clock(),
                single_slot=self._cluster,
                remember=self._remember,
            )
        )

    def close(self) -> None:
        """See :meth:`~stalwart.storage.Store.close`."""
        if self._wire is not None:
            self._wire.close()
        if self._close_client:
            self._client.close()


class AsyncRedisStore:
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
    ) -> None:
        self._client = client
        self._layout = Layout(prefix)
        self._clock = clock
        self._cluster = cluster
        self._close_client = close_client
        self._scripts: dict[ScriptName, AsyncScript] = {
            name: client.register_script(SCRIPTS[name]) for name in ScriptName
        }
        self._wire_scripts = _wire_scripts(self._scripts)
        self._wire = transport_for(client, AsyncWire)
        self._remember = client_may_resend(client)

    @property
    def client(self) -> redis.asyncio.Redis:
        """The underlying redis-py asyncio client (its settings; :meth:`run_script`)."""
        return self._client

    @property
    def transport(self) -> AsyncWire | None:
        """See :attr:`RedisStore.transport` (here: one pipelined connection per event loop)."""
        return self._wire

    @property
    def prefix(self) -> str:
        """The key namespace; see :func:`partition_key` for the layout."""
        return self._layout.prefix

    @property
    def max_transaction_items(self) -> int:
        """See :meth:`~stalwart.storage.AsyncStore.max_transaction_items`."""
        return MAX_TRANSACTION_ITEMS

    @property
    def max_item_bytes(self) -> int:
        """See :meth:`~stalwart.storage.AsyncStore.max_item_bytes`."""
        return MAX_ITEM_BYTES

    async def run_script(
        self, script: AsyncScript, keys: Sequence[Arg] = (), args: Iterable[Arg | int | float] = ()
    ) -> Any:
        """Run a script registered on :attr:`client`, mapping errors like the store does."""
        try:
            return await script(keys=keys, args=args)
        except redis_errors.RedisError as exc:
            raise translate_error(exc) from exc

    async def _run[T](self, call: Call[T]) -> T:
        try:
            wire = self._wire
            if wire is not None and not traced(self._client):
                script, command = _wire_request(self._wire_scripts, call)
                reply = await wire.call(command)
                if script is not None and is_noscript(reply):
                    reply = await load_and_resend(wire, script, command)
                reply = check(reply)
            elif call.script is None:
                reply = await self._client.hmget(call.keys[0], call.args)
            else:
                reply = await self._scripts[call.script](keys=call.keys, args=call.args)
        except redis_errors.RedisError as exc:
            raise translate_error(exc) from exc
        return decode_reply(call, reply)

    async def get(self, key: Key) -> Record | None:
        """See :meth:`~stalwart.storage.AsyncStore.get`."""
        return await self._run(get_call(self._layout, key, self._clock()))

    async def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        """See :meth:`~stalwart.storage.AsyncStore.create`."""
        return await self._run(
            create_call(
                self._layout, key, data, ttl=ttl, now=self._clock(), remember=self._remember
            )
        )

    async def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        """See :meth:`~stalwart.storage.AsyncStore.replace`."""
        return await self._run(
            replace_call(
                self._layout,
                key,
                data,
                expected_version=expected_version,
                ttl=ttl,
                now=self._clock(),
                remember=self._remember,
            )
        )

    async def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        """See :meth:`~stalwart.storage.AsyncStore.delete`."""
        return await self._run(
            delete_call(
                self._layout,
                key,
                expected_version=expected_version,
                now=self._clock(),
                remember=self._remember,
            )
        )

    async def increment(
        self, key: Key, field: str, by: float = 1, *, ttl: float | None = None
    ) -> Record:
        """See :meth:`~stalwart.storage.AsyncStore.increment`."""
        return await self._run(
            increment_call(
                self._layout, key, field, by, ttl=ttl, now=self._clock(), remember=self._remember
            )
        )

    async def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        """See :meth:`~stalwart.storage.AsyncStore.query`."""
        return await self._run(
            query_call(
                self._layout,
                partition,
                prefix=prefix,
                limit=limit,
                cursor=cursor,
                descending=descending,
                now=self._clock(),
            )
        )

    async def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        """See :meth:`~stalwart.storage.AsyncStore.transact`."""
        return await self._run(
            transact_call(
                self._layout,
                operations,
                max_items=MAX_TRANSACTION_ITEMS,
                now=self._clock(),
                single_slot=self._cluster,
                remember=self._remember,
            )
        )

    async def close(self) -> None:
        """See :meth:`~stalwart.storage.AsyncStore.close`."""
        if self._wire is not None:
            await self._wire.close()
        if self._close_client:
            await self._client.aclose()


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


def _wire_scripts(scripts: dict[ScriptName, Any]) -> dict[ScriptName, WireScript]:
    return {name: WireScript.of(script.sha, SCRIPTS[name]) for name, script in scripts.items()}


def _wire_request(
    scripts: dict[ScriptName, WireScript], call: Call[Any]
) -> tuple[WireScript | None, bytes]:
    """The script (None for the plain ``HMGET`` of ``get``) and the packed command of a call."""
    script = None if call.script is None else scripts[call.script]
    return script, wire_command(script, call.keys, call.args)


_DEFAULT_MAX_CONNECTIONS = 64


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


def _pool_kwargs(options: UrlOptions) -> dict[str, Any]:
    """A blocking pool: a burst beyond ``max_connections`` waits for a free connection (up to
    the socket timeout) instead of failing at once, as redis-py's default async pool does."""
    kwargs: dict[str, Any] = {"timeout": options.socket_timeout}
    if "max_connections" not in options.client_url:
        kwargs["max_connections"] = _DEFAULT_MAX_CONNECTIONS
    return kwargs


def store_from_url(url: str, *, clock: Clock = wall_clock) -> Store:
    """Open a :class:`RedisStore` on a client it owns (closed by ``close()``).

    >>> store = store_from_url("redis://127.0.0.1:6379/0?prefix=app&timeout=2")  # doctest: +SKIP
    """
    options = parse_store_url(url)
    pool = redis.BlockingConnectionPool.from_url(
        options.client_url, **_pool_kwargs(options), **_client_kwargs(options, redis.retry.Retry)
    )
    client = redis.Redis.from_pool(pool)
    return RedisStore(
        client, prefix=options.prefix, clock=clock, cluster=options.cluster, close_client=True
    )


def async_store_from_url(url: str, *, clock: Clock = wall_clock) -> AsyncStore:
    """Open an :class:`AsyncRedisStore` on a client it owns (closed by ``close()``).

    >>> store = async_store_from_url("redis://127.0.0.1:6379/0?prefix=app")  # doctest: +SKIP
    """
    options = parse_store_url(url)
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        options.client_url,
        **_pool_kwargs(options),
        **_client_kwargs(options, redis.asyncio.retry.Retry),
    )
    client = redis.asyncio.Redis.from_pool(pool)
    return AsyncRedisStore(
        client, prefix=options.prefix, clock=clock, cluster=options.cluster, close_client=True
    )
