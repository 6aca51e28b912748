# Copyright 2026 stalwart contributors
"""One engine shape: pure plans, one executor per mode, and the store classes shared by all.

An *engine* knows one database and does no I/O. For every operation of the contract it makes a
*plan*: a generator that yields the engine's own command objects, receives each command's
result, and returns the operation's result. An engine error raised by a command is thrown into
the plan, which may handle it (a conflict the engine reports as an error) or let it go; an
engine error that leaves the plan is translated into the contract's errors by the engine's
``translate_error``.

An *executor* performs commands for one mode: :class:`Executor` runs a whole plan
synchronously, :class:`AsyncExecutor` awaits it (a blocking engine's async executor runs the
sync executor on worker threads). :func:`drive` and :func:`drive_async` are the loop most
executors need around a ``perform(command)``.

:class:`EngineStore` and :class:`AsyncEngineStore` implement :class:`~stalwart.storage.Store`
and :class:`~stalwart.storage.AsyncStore` over any engine and executor: they validate what
every engine validates the same way (keys, query arguments, the shape of a transaction), read
the clock once per operation and run the engine's plan. ``docs/storage/new-engine.md`` walks
through an engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, Protocol, Self

from stalwart.storage._contract import (
    Clock,
    JSONObject,
    Key,
    Operation,
    Page,
    Record,
    StorageError,
    validate_key,
    validate_operations,
)
from stalwart.storage._query import check_query

type Plan[C, T] = Generator[C, Any, T]
"""Yields commands of type ``C``, receives their results, returns ``T``."""


class Engine[C](Protocol):
    """The pure half of an engine: one plan per operation of the contract.

    The store has already checked the key (or the query's partition, prefix and limit, or the
    transaction's shape) and passes ``now``, the store clock's epoch seconds for the call.
    """

    @property
    def max_item_bytes(self) -> int:
        """Largest ``data`` in bytes of compact UTF-8 JSON."""
        ...

    @property
    def max_transaction_items(self) -> int:
        """Largest number of operations one transaction takes."""
        ...

    def get(self, key: Key, now: float) -> Plan[C, Record | None]:
        """Plan :meth:`Store.get`."""
        ...

    def create(self, key: Key, data: JSONObject, ttl: float | None, now: float) -> Plan[C, Record]:
        """Plan :meth:`Store.create`."""
        ...

    def replace(
        self, key: Key, data: JSONObject, expected_version: int, ttl: float | None, now: float
    ) -> Plan[C, Record]:
        """Plan :meth:`Store.replace`."""
        ...

    def delete(self, key: Key, expected_version: int | None, now: float) -> Plan[C, bool]:
        """Plan :meth:`Store.delete`."""
        ...

    def increment(
        self, key: Key, field: str, by: float, ttl: float | None, now: float
    ) -> Plan[C, Record]:
        """Plan :meth:`Store.increment`."""
        ...

    def query(
        self,
        partition: str,
        *,
        prefix: str,
        limit: int,
        cursor: str | None,
        descending: bool,
        now: float,
    ) -> Plan[C, Page]:
        """Plan :meth:`Store.query`."""
        ...

    def transact(self, operations: Sequence[Operation], now: float) -> Plan[C, list[Record | None]]:
        """Plan :meth:`Store.transact`."""
        ...


class Executor[C](Protocol):
    """Runs an engine's plans synchronously."""

    def run[T](self, plan: Plan[C, T]) -> T:
        """Perform the plan's commands in order; return its result."""
        ...

    def close(self) -> None:
        """Release what the executor opened itself."""
        ...


class AsyncExecutor[C](Protocol):
    """Runs an engine's plans on the event loop."""

    async def run[T](self, plan: Plan[C, T]) -> T:
        """Perform the plan's commands in order; return its result."""
        ...

    async def close(self) -> None:
        """Release what the executor opened itself."""
        ...


type Translate = Callable[[BaseException], StorageError]


def drive[C, T](
    plan: Plan[C, T],
    perform: Callable[[C], Any],
    engine_errors: tuple[type[BaseException], ...],
    translate: Translate,
) -> T:
    """Run ``plan``: send each command's result in, throw each engine error in; an engine
    error the plan lets go is raised as ``translate(error)``."""
    try:
        command = next(plan)
        while True:
            try:
                result = perform(command)
            except engine_errors as error:
                command = plan.throw(error)
            else:
                command = plan.send(result)
    except StopIteration as stop:
        done: T = stop.value
        return done
    except engine_errors as error:
        raise translate(error) from error
    finally:
        plan.close()


async def drive_async[C, T](
    plan: Plan[C, T],
    perform: Callable[[C], Awaitable[Any]],
    engine_errors: tuple[type[BaseException], ...],
    translate: Translate,
) -> T:
    """The async twin of :func:`drive`: ``perform`` is awaited."""
    try:
        command = next(plan)
        while True:
            try:
                result = await perform(command)
            except engine_errors as error:
                command = plan.throw(error)
            else:
                command = plan.send(result)
    except StopIteration as stop:
        done: T = stop.value
        return done
    except engine_errors as error:
        raise translate(error) from error
    finally:
        plan.close()


class EngineStore[C]:
    """:class:`~stalwart.storage.Store` over any engine and sync executor."""

    def __init__(self, engine: Engine[C], executor: Executor[C], clock: Clock) -> None:
        self._engine = engine
        self._executor = executor
        self._clock = clock

    @property
    def max_transaction_items(self) -> int:
        """Largest number of operations :meth:`transact` accepts on this engine."""
        return self._engine.max_transaction_items

    @property
    def max_item_bytes(self) -> int:
        """Largest ``data`` in bytes of compact UTF-8 JSON."""
        return self._engine.max_item_bytes

    def get(self, key: Key) -> Record | None:
        """Return the live record at ``key``, or ``None``."""
        return self._executor.run(self._engine.get(validate_key(key), self._clock()))

    def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        """Create at version 1 (over an expired record too); :class:`AlreadyExists` if live."""
        plan = self._engine.create(validate_key(key), data, ttl, self._clock())
        return self._executor.run(plan)

    def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        """Overwrite at ``expected_version`` (new version = old + 1), else
        :class:`VersionConflict`. ``ttl=None`` stores the record without expiry."""
        plan = self._engine.replace(validate_key(key), data, expected_version, ttl, self._clock())
        return self._executor.run(plan)

    def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        """Delete; ``True`` if a live record was removed. With ``expected_version`` a mismatch
        or absence raises :class:`VersionConflict`."""
        plan = self._engine.delete(validate_key(key), expected_version, self._clock())
        return self._executor.run(plan)

    def increment(self, key: Key, field: str, by: float = 1, *, ttl: float | None = None) -> Record:
        """Atomically add ``by`` to ``field``, creating the record if missing."""
        plan = self._engine.increment(validate_key(key), field, by, ttl, self._clock())
        return self._executor.run(plan)

    def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        """Live records of ``partition`` whose sort key starts with ``prefix``, by sort key."""
        check_query(partition, prefix, limit)
        plan = self._engine.query(
            partition,
            prefix=prefix,
            limit=limit,
            cursor=cursor,
            descending=bool(descending),
            now=self._clock(),
        )
        return self._executor.run(plan)

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        """Apply all operations or none; each item's resulting record (``None`` for Delete and
        Check). A failed condition raises :class:`TransactionConflict`."""
        operations = list(operations)
        validate_operations(operations, self._engine.max_transaction_items)
        return self._executor.run(self._engine.transact(operations, self._clock()))

    def close(self) -> None:
        """Release the connections the store opened itself."""
        self._executor.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncEngineStore[C]:
    """:class:`~stalwart.storage.AsyncStore` over any engine and async executor."""

    def __init__(self, engine: Engine[C], executor: AsyncExecutor[C], clock: Clock) -> None:
        self._engine = engine
        self._executor = executor
        self._clock = clock

    @property
    def max_transaction_items(self) -> int:
        """Largest number of operations :meth:`transact` accepts on this engine."""
        return self._engine.max_transaction_items

    @property
    def max_item_bytes(self) -> int:
        """Largest ``data`` in bytes of compact UTF-8 JSON."""
        return self._engine.max_item_bytes

    async def get(self, key: Key) -> Record | None:
        """See :meth:`EngineStore.get`."""
        return await self._executor.run(self._engine.get(validate_key(key), self._clock()))

    async def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        """See :meth:`EngineStore.create`."""
        plan = self._engine.create(validate_key(key), data, ttl, self._clock())
        return await self._executor.run(plan)

    async def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        """See :meth:`EngineStore.replace`."""
        plan = self._engine.replace(validate_key(key), data, expected_version, ttl, self._clock())
        return await self._executor.run(plan)

    async def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        """See :meth:`EngineStore.delete`."""
        plan = self._engine.delete(validate_key(key), expected_version, self._clock())
        return await self._executor.run(plan)

    async def increment(
        self, key: Key, field: str, by: float = 1, *, ttl: float | None = None
    ) -> Record:
        """See :meth:`EngineStore.increment`."""
        plan = self._engine.increment(validate_key(key), field, by, ttl, self._clock())
        return await self._executor.run(plan)

    async def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        """See :meth:`EngineStore.query`."""
        check_query(partition, prefix, limit)
        plan = self._engine.query(
            partition,
            prefix=prefix,
            limit=limit,
            cursor=cursor,
            descending=bool(descending),
            now=self._clock(),
        )
        return await self._executor.run(plan)

    async def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        """See :meth:`EngineStore.transact`."""
        operations = list(operations)
        validate_operations(operations, self._engine.max_transaction_items)
        return await self._executor.run(self._engine.transact(operations, self._clock()))

    async def close(self) -> None:
        """See :meth:`EngineStore.close`."""
        await self._executor.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
