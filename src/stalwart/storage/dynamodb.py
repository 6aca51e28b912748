# Copyright 2026 stalwart contributors
"""The storage contract on DynamoDB, sync (boto3) and async (aiobotocore).

Both stores are the shared engine stores running :class:`DynamoDBEngine`'s plans from
:mod:`stalwart.storage._dynamodb_core`; the executors here only send each request with the
low-level client and hand back the reply. See
``docs/storage/dynamodb.md`` for the item layout, conditions and table creation.

>>> store = store_from_url("dynamodb://orders?region=eu-west-1")  # doctest: +SKIP
>>> store.create(Key("acct-1", "balance"), {"cents": 0}).version  # doctest: +SKIP
1
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import unquote, urlsplit

from stalwart._extras import require_extra

require_extra("boto3", "dynamodb", feature="stalwart.storage.dynamodb")
require_extra("aiobotocore", "dynamodb", feature="stalwart.storage.dynamodb")

import boto3  # noqa: E402 - after the extra check, so a missing extra names itself
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]  # noqa: E402
from aiobotocore.session import get_session  # type: ignore[import-untyped]  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402

from stalwart.storage._contract import (  # noqa: E402
    Clock,
    StorageError,
    StoreConfigurationError,
    wall_clock,
)
from stalwart.storage._dynamodb_core import (  # noqa: E402
    Call,
    DynamoDBEngine,
    Plan,
    Reply,
    Sleep,
    create_table_plan,
    failure_from_response,
    map_transport_error,
)
from stalwart.storage._engine import (  # noqa: E402
    AsyncEngineStore,
    EngineStore,
    drive,
    drive_async,
)
from stalwart.storage._url import (  # noqa: E402
    flag,
    positive_number,
    url_options,
    whole_number,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.client import DynamoDBClient as AsyncDynamoDBClient

__all__ = [
    "AsyncDynamoDBStore",
    "ConnectionSettings",
    "DynamoDBStore",
    "async_create_table",
    "async_store_from_url",
    "create_table",
    "store_from_url",
]

_TABLE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_URL_OPTIONS: Final = (
    "region",
    "endpoint_url",
    "timeout",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
    "max_pool_connections",
    "create",
)
DEFAULT_TABLE_WAIT_S: Final = 60.0
DEFAULT_CONNECT_TIMEOUT_S: Final = 2.0
DEFAULT_READ_TIMEOUT_S: Final = 5.0
DEFAULT_MAX_ATTEMPTS: Final = 3
DEFAULT_MAX_POOL_CONNECTIONS: Final = 50


# ---------------------------------------------------------------------------------------------
# Executors: the only code that performs I/O
# ---------------------------------------------------------------------------------------------

# A ClientError is a DynamoDB reply: it goes back into the plan as a Failure value. These are
# raised before any reply arrived: thrown into the plan, and translated when it lets them go.
_TRANSPORT_ERRORS: Final = (BotoCoreError, OSError)


class _Executor:
    """Runs plans on a boto3 client."""

    __slots__ = ("_client", "_owns_client")

    def __init__(self, client: DynamoDBClient, *, owns_client: bool = False) -> None:
        self._client = client
        self._owns_client = owns_client

    def _perform(self, step: Call | Sleep) -> Reply:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        try:
            response: Mapping[str, Any] = getattr(self._client, step.operation)(**step.request)
        except ClientError as exc:
            return failure_from_response(exc.response, exc)
        return response

    def run[T](self, plan: Plan[T]) -> T:
        return drive(plan, self._perform, _TRANSPORT_ERRORS, map_transport_error)

    def close(self) -> None:
        if self._owns_client:
            self._owns_client = False
            self._client.close()


class _AsyncExecutor:
    """Runs plans on an aiobotocore client: the caller's, or one it enters on first use from
    connection settings (and exits in :meth:`close`)."""

    def __init__(
        self, client: AsyncDynamoDBClient | None, table: str, settings: ConnectionSettings | None
    ) -> None:
        self.client = client
        self._table = table
        self._settings = settings
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    async def ready(self) -> AsyncDynamoDBClient:
        """The client, entered now if the executor builds its own."""
        if self._closed:
            raise StorageError("the store is closed")
        if self.client is None:
            async with self._opening:
                # Another task may have opened it while this one waited for the lock.
                if self.client is None:
                    self.client = await self._enter_client()
        return self.client

    async def _enter_client(self) -> AsyncDynamoDBClient:
        settings = self._settings
        assert settings is not None
        stack = contextlib.AsyncExitStack()
        try:
            client: AsyncDynamoDBClient = await stack.enter_async_context(
                get_session().create_client(
                    "dynamodb",
                    config=AioConfig(**settings.config_kwargs()),
                    **settings.client_kwargs(),
                )
            )
            if settings.create:
                await async_create_table(client, self._table)
        except BaseException:
            await stack.aclose()
            raise
        self._exit_stack = stack
        return client

    async def run[T](self, plan: Plan[T]) -> T:
        client = await self.ready()  # held for the whole plan, even if close() runs meanwhile

        async def perform(step: Call | Sleep) -> Reply:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                return None
            try:
                response: Mapping[str, Any] = await getattr(client, step.operation)(**step.request)
            except ClientError as exc:
                return failure_from_response(exc.response, exc)
            return response

        return await drive_async(plan, perform, _TRANSPORT_ERRORS, map_transport_error)

    async def close(self) -> None:
        self._closed = True
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            self.client = None
            await stack.aclose()


# ---------------------------------------------------------------------------------------------
# Table creation
# ---------------------------------------------------------------------------------------------


def create_table(
    client: DynamoDBClient, table: str, *, wait_seconds: float = DEFAULT_TABLE_WAIT_S
) -> None:
    """Create ``table`` if missing (``pk`` S HASH, ``sk`` S RANGE, on-demand) and enable TTL
    on ``exp``. Idempotent; meant for development and tests (production: see the docs).

    >>> create_table(boto3.client("dynamodb"), "orders")  # doctest: +SKIP
    """
    _Executor(client).run(create_table_plan(table, wait_seconds))


async def async_create_table(
    client: AsyncDynamoDBClient, table: str, *, wait_seconds: float = DEFAULT_TABLE_WAIT_S
) -> None:
    """The async twin of :func:`create_table`, on an aiobotocore client.

    >>> await async_create_table(client, "orders")  # doctest: +SKIP
    """
    await _AsyncExecutor(client, table, None).run(create_table_plan(table, wait_seconds))


# ---------------------------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------------------------


class DynamoDBStore(EngineStore[Call | Sleep]):
    """A :class:`~stalwart.storage.Store` on one DynamoDB table, over a boto3 client.

    A client passed in stays the caller's: :meth:`close` leaves it open.

    >>> store = DynamoDBStore(boto3.client("dynamodb"), table="orders")  # doctest: +SKIP
    >>> store.get(Key("acct-1", "balance"))  # doctest: +SKIP
    """

    def __init__(self, client: DynamoDBClient, *, table: str, clock: Clock = wall_clock) -> None:
        super().__init__(DynamoDBEngine(table), _Executor(client), clock)
        self._client = client
        self._table = table

    @property
    def client(self) -> DynamoDBClient:
        """The low-level boto3 client (read-only)."""
        return self._client

    @property
    def table(self) -> str:
        """The table name."""
        return self._table


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """How a store opened from a URL builds its client (timeouts are always explicit).

    ``max_attempts`` counts botocore's own attempts (standard retry mode): retries of
    throttling and 5xx are safe, but a write retried after a lost response may already have
    been applied (see the docs: a create then reports AlreadyExists with your own record, and an
    increment can count twice). Set it to 1 to leave every retry to the caller.
    """

    table: str
    region: str | None = None
    endpoint_url: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout: float = DEFAULT_READ_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS
    create: bool = False

    @classmethod
    def from_url(cls, url: str) -> ConnectionSettings:
        """Parse ``dynamodb://TABLE?region=..&endpoint_url=..&timeout=..&create=true``.

        >>> ConnectionSettings.from_url("dynamodb://orders?region=us-east-1&timeout=3").read_timeout
        3.0
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "dynamodb":
            raise StoreConfigurationError(f"not a dynamodb:// URL: {url!r}")
        table = unquote(parts.netloc or parts.path.strip("/"))
        if not _TABLE_NAME.fullmatch(table):
            raise StoreConfigurationError(
                f"invalid DynamoDB table name {table!r}: 3 to 255 of A-Z a-z 0-9 _ . -"
            )
        # An empty value means the default, as if the option were not given.
        options = {
            name: value
            for name, value in url_options(url, _URL_OPTIONS, engine="dynamodb").items()
            if value
        }

        def seconds(name: str) -> float | None:
            return positive_number(name, options[name]) if name in options else None

        timeout = seconds("timeout")
        return cls(
            table=table,
            region=options.get("region"),
            endpoint_url=options.get("endpoint_url"),
            connect_timeout=seconds("connect_timeout") or timeout or DEFAULT_CONNECT_TIMEOUT_S,
            read_timeout=seconds("read_timeout") or timeout or DEFAULT_READ_TIMEOUT_S,
            max_attempts=whole_number(
                "max_attempts", options.get("max_attempts", str(DEFAULT_MAX_ATTEMPTS))
            ),
            max_pool_connections=whole_number(
                "max_pool_connections",
                options.get("max_pool_connections", str(DEFAULT_MAX_POOL_CONNECTIONS)),
            ),
            create=flag("create", options.get("create", "false")),
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_client("dynamodb", ...)`` except ``config``."""
        kwargs: dict[str, Any] = {}
        if self.region:
            kwargs["region_name"] = self.region
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return kwargs

    def config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for botocore's ``Config`` / aiobotocore's ``AioConfig``."""
        return {
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "retries": {"mode": "standard", "max_attempts": self.max_attempts},
            "max_pool_connections": self.max_pool_connections,
        }


def store_from_url(url: str, *, clock: Clock = wall_clock) -> DynamoDBStore:
    """Open a :class:`DynamoDBStore` that owns a boto3 client built from ``url``.

    Parameters: ``region``, ``endpoint_url``, ``timeout`` (connect and read, seconds),
    ``connect_timeout`` (default 2), ``read_timeout`` (default 5), ``max_attempts`` (botocore
    standard retry mode, default 3), ``max_pool_connections`` (default 50), ``create=true``
    (create the table and enable TTL: development only).

    >>> store = store_from_url("dynamodb://orders?region=us-east-1&create=true")  # doctest: +SKIP
    """
    settings = ConnectionSettings.from_url(url)
    client = boto3.client(
        "dynamodb", config=Config(**settings.config_kwargs()), **settings.client_kwargs()
    )
    try:
        if settings.create:
            create_table(client, settings.table)
    except BaseException:
        client.close()
        raise
    store = DynamoDBStore(client, table=settings.table, clock=clock)
    # The factory hands the client it built to the store's executor, which closes it.
    store._executor = _Executor(client, owns_client=True)  # noqa: SLF001
    return store


class AsyncDynamoDBStore(AsyncEngineStore[Call | Sleep]):
    """An :class:`~stalwart.storage.AsyncStore` on one DynamoDB table, over aiobotocore.

    Pass an open aiobotocore client (it stays yours: :meth:`close` leaves it open), or use
    :func:`async_store_from_url`, whose store enters its own client on first use (or on
    :meth:`open`) and exits it in :meth:`close`.

    >>> async with get_session().create_client("dynamodb") as client:  # doctest: +SKIP
    ...     store = AsyncDynamoDBStore(client, table="orders")
    ...     await store.get(Key("acct-1", "balance"))
    """

    def __init__(
        self,
        client: AsyncDynamoDBClient | None,
        *,
        table: str,
        clock: Clock = wall_clock,
        settings: ConnectionSettings | None = None,
    ) -> None:
        if client is None and settings is None:
            raise StorageError("AsyncDynamoDBStore needs a client or connection settings")
        executor = _AsyncExecutor(client, table, settings if client is None else None)
        super().__init__(DynamoDBEngine(table), executor, clock)
        self._connection = executor
        self._table = table

    @property
    def client(self) -> AsyncDynamoDBClient:
        """The aiobotocore client (read-only); a URL-built store has one once opened."""
        client = self._connection.client
        if client is None:
            raise StorageError("the store has not opened its client yet: await store.open()")
        return client

    @property
    def table(self) -> str:
        """The table name."""
        return self._table

    async def open(self) -> Self:
        """Enter the store's own client now (and create the table if ``create=true``)."""
        await self._connection.ready()
        return self

    async def __aenter__(self) -> Self:
        return await self.open()


def async_store_from_url(url: str, *, clock: Clock = wall_clock) -> AsyncDynamoDBStore:
    """An :class:`AsyncDynamoDBStore` that builds its aiobotocore client lazily from ``url``.

    Same parameters as :func:`store_from_url`. No I/O happens here (it may run outside an event
    loop); the client is entered on :meth:`AsyncDynamoDBStore.open` or the first operation.

    >>> store = async_store_from_url("dynamodb://orders?region=us-east-1")  # doctest: +SKIP
    >>> await store.open()  # doctest: +SKIP
    """
    settings = ConnectionSettings.from_url(url)
    return AsyncDynamoDBStore(None, table=settings.table, clock=clock, settings=settings)
