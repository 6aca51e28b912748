"""A runtime cache for rotating secrets: TTL with jitter, refresh on demand, stale on error.

``get`` serves from memory until the entry's (jittered) refresh time; then one thread
refreshes while others keep the cached value. When Secrets Manager is down, the cached value
is served and a warning logged, instead of failing every request that needs the secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from stalwart.config._aws import SecretPolicy, fetch_secret, secretsmanager_client
from stalwart.config._errors import SecretError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_secretsmanager import SecretsManagerClient

_log = logging.getLogger("stalwart.config.secrets")

type _Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Entry:
    value: str
    version_id: str
    fetched_at: float
    refresh_at: float


class SecretFetcher:
    """Reads secrets from AWS Secrets Manager through an in-process cache.

    Pass a ``client`` (then its timeouts are yours) or let it build one with
    ``policy.timeout_s`` on each call. ``clock``/``sleep``/``rng`` are injectable for tests.

    >>> fetcher = SecretFetcher(policy=SecretPolicy(ttl_s=600), region_name="us-east-1")
    >>> fetcher.policy.ttl_s
    600
    """

    def __init__(
        self,
        client: SecretsManagerClient | None = None,
        *,
        policy: SecretPolicy | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy or SecretPolicy()
        self._client = client
        self._region_name = region_name
        self._endpoint_url = endpoint_url
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._entries: dict[_Key, _Entry] = {}
        self._locks: dict[_Key, threading.Lock] = {}
        self._guard = threading.Lock()

    @property
    def client(self) -> SecretsManagerClient:
        """The Secrets Manager client (built on first use)."""
        with self._guard:
            if self._client is None:
                self._client = secretsmanager_client(
                    region_name=self._region_name,
                    endpoint_url=self._endpoint_url,
                    timeout_s=self.policy.timeout_s,
                )
            return self._client

    def get(self, secret_id: str, *, version_stage: str = "AWSCURRENT") -> SecretStr:
        """The secret's string value, from the cache while it is fresh.

        Raises :class:`~stalwart.config.SecretError` only when there is no value to serve.
        """
        key = (secret_id, version_stage)
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry.refresh_at:
            return SecretStr(entry.value)
        return SecretStr(self._refresh(key, entry, force=False))

    def get_json(self, secret_id: str, *, version_stage: str = "AWSCURRENT") -> dict[str, Any]:
        """The secret parsed as a JSON object (e.g. ``{"username": ..., "password": ...}``)."""
        text = self.get(secret_id, version_stage=version_stage).get_secret_value()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SecretError(f"secret {secret_id!r} is not JSON") from exc
        if not isinstance(parsed, dict):
            raise SecretError(f"secret {secret_id!r} is not a JSON object")
        return parsed

    def refresh(self, secret_id: str, *, version_stage: str = "AWSCURRENT") -> SecretStr:
        """Fetch now, ignoring the TTL (e.g. after the secret was refused as out of date).

        Falls back to the cached value, logged, when Secrets Manager cannot be reached.
        """
        key = (secret_id, version_stage)
        return SecretStr(self._refresh(key, self._entries.get(key), force=True))

    async def aget(self, secret_id: str, *, version_stage: str = "AWSCURRENT") -> SecretStr:
        """:meth:`get` for async code: a cache hit returns at once, a refresh runs in a thread."""
        key = (secret_id, version_stage)
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry.refresh_at:
            return SecretStr(entry.value)
        value = await asyncio.to_thread(self._refresh, key, entry, force=False)
        return SecretStr(value)

    async def arefresh(self, secret_id: str, *, version_stage: str = "AWSCURRENT") -> SecretStr:
        """:meth:`refresh` for async code (the call runs in a thread)."""
        key = (secret_id, version_stage)
        value = await asyncio.to_thread(self._refresh, key, self._entries.get(key), force=True)
        return SecretStr(value)

    def invalidate(self, secret_id: str | None = None) -> None:
        """Forget one secret (all stages) or, with no argument, every cached secret."""
        with self._guard:
            for key in list(self._entries):
                if secret_id is None or key[0] == secret_id:
                    del self._entries[key]

    def _lock_for(self, key: _Key) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def _refresh(self, key: _Key, seen: _Entry | None, *, force: bool) -> str:
        lock = self._lock_for(key)
        if seen is not None and not force and not lock.acquire(blocking=False):
            # Another thread is already refreshing: the value we hold is fine meanwhile.
            return seen.value
        if seen is None or force:
            lock.acquire()
        try:
            current = self._entries.get(key)
            if current is not None and current is not seen and self._clock() < current.refresh_at:
                return current.value  # refreshed by another thread while we waited
            return self._fetch_into_cache(key, current)
        finally:
            lock.release()

    def _fetch_into_cache(self, key: _Key, current: _Entry | None) -> str:
        secret_id, stage = key
        try:
            fetched = fetch_secret(
                self.client, secret_id, self.policy, version_stage=stage, sleep=self._sleep
            )
        except SecretError as exc:
            return self._stale_or_raise(key, current, exc)
        now = self._clock()
        ttl = self.policy.ttl_s * (1.0 - self.policy.jitter * self._rng())
        self._entries[key] = _Entry(fetched.value, fetched.version_id, now, now + ttl)
        if current is not None and current.version_id != fetched.version_id:
            _log.info(
                "secret rotated",
                extra={
                    "resource": secret_id,
                    "version_stage": stage,
                    "version_id": fetched.version_id,
                },
            )
        return fetched.value

    def _stale_or_raise(self, key: _Key, current: _Entry | None, exc: SecretError) -> str:
        now = self._clock()
        limit = self.policy.max_stale_s
        if current is None or (
            limit is not None and now > current.fetched_at + self.policy.ttl_s + limit
        ):
            raise exc
        # Try again after error_retry_s rather than on every call while the service is down.
        self._entries[key] = replace(current, refresh_at=now + self.policy.error_retry_s)
        _log.warning(
            "serving a stale secret: Secrets Manager failed",
            extra={
                "resource": key[0],
                "version_stage": key[1],
                "stale_for_s": round(now - current.fetched_at, 3),
                "error": str(exc),
            },
        )
        return current.value
