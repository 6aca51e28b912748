# Copyright 2026 stalwart contributors
"""A tiny in-memory Store for unit tests of the idempotency layer ONLY.

It is not evidence that any engine works: the conformance tests run the layer on the real
engines. It follows the contract's single-record semantics and counts calls (round trips).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace as dc_replace
from typing import TYPE_CHECKING

from stalwart.storage import (
    AlreadyExists,
    JSONObject,
    Key,
    Operation,
    Page,
    Record,
    VersionConflict,
)
from stalwart.storage._contract import encode_data, expiry_from_ttl, validate_key

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.time, max_item_bytes: int = 400_000):
        self._records: dict[Key, Record] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._max = max_item_bytes
        self.calls: list[str] = []

    @property
    def max_transaction_items(self) -> int:
        return 100

    @property
    def max_item_bytes(self) -> int:
        return self._max

    def _live(self, key: Key) -> Record | None:
        record = self._records.get(key)
        if (
            record is not None
            and record.expires_at is not None
            and record.expires_at <= self._clock()
        ):
            return None
        return record

    def get(self, key: Key) -> Record | None:
        self.calls.append("get")
        with self._lock:
            return self._live(validate_key(key))

    def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        self.calls.append("create")
        encode_data(data, max_bytes=self._max)
        with self._lock:
            current = self._live(validate_key(key))
            if current is not None:
                raise AlreadyExists(key, current)
            record = Record(key, dict(data), 1, expiry_from_ttl(ttl, self._clock()))
            self._records[key] = record
            return record

    def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        self.calls.append("replace")
        encode_data(data, max_bytes=self._max)
        with self._lock:
            current = self._live(validate_key(key))
            if current is None or current.version != expected_version:
                raise VersionConflict(key, expected_version, current)
            record = Record(
                key, dict(data), expected_version + 1, expiry_from_ttl(ttl, self._clock())
            )
            self._records[key] = record
            return record

    def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        self.calls.append("delete")
        with self._lock:
            current = self._live(validate_key(key))
            if expected_version is not None and (
                current is None or current.version != expected_version
            ):
                raise VersionConflict(key, expected_version, current)
            self._records.pop(key, None)
            return current is not None

    def increment(self, key: Key, field: str, by: float = 1, *, ttl: float | None = None) -> Record:
        raise NotImplementedError

    def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        raise NotImplementedError

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def expire_all(self) -> None:
        with self._lock:
            for key, record in list(self._records.items()):
                self._records[key] = dc_replace(record, expires_at=0.0)


class AsyncMemoryStore:
    def __init__(self, sync: MemoryStore | None = None) -> None:
        self.sync = sync or MemoryStore()

    @property
    def calls(self) -> list[str]:
        return self.sync.calls

    @property
    def max_transaction_items(self) -> int:
        return 100

    @property
    def max_item_bytes(self) -> int:
        return self.sync.max_item_bytes

    async def get(self, key: Key) -> Record | None:
        return self.sync.get(key)

    async def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        return self.sync.create(key, data, ttl=ttl)

    async def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        return self.sync.replace(key, data, expected_version=expected_version, ttl=ttl)

    async def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        return self.sync.delete(key, expected_version=expected_version)

    async def increment(
        self, key: Key, field: str, by: float = 1, *, ttl: float | None = None
    ) -> Record:
        raise NotImplementedError

    async def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        raise NotImplementedError

    async def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        raise NotImplementedError

    async def close(self) -> None:
        pass
