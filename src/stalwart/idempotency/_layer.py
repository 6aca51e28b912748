# Copyright 2026 stalwart contributors
"""Thin sync and async shells that run the core's plans against a store."""

from __future__ import annotations

from typing import cast

from stalwart.idempotency._core import (
    Get,
    IdempotencyPolicy,
    JSONValue,
    Lease,
    Plan,
    Replay,
    StoreCall,
    StoreReply,
    claim_plan,
    complete_plan,
    heartbeat_plan,
    record_key,
    release_plan,
)
from stalwart.storage import AsyncStore, Create, Delete, Key, Replace, StorageError, Store


def _execute(store: Store, call: StoreCall) -> StoreReply:
    match call:
        case Create(key=key, data=data, ttl=ttl):
            return store.create(key, data, ttl=ttl)
        case Replace(key=key, data=data, expected_version=version, ttl=ttl):
            return store.replace(key, data, expected_version=version, ttl=ttl)
        case Delete(key=key, expected_version=version):
            return store.delete(key, expected_version=version)
        case Get(key=key):
            return store.get(key)


async def _execute_async(store: AsyncStore, call: StoreCall) -> StoreReply:
    match call:
        case Create(key=key, data=data, ttl=ttl):
            return await store.create(key, data, ttl=ttl)
        case Replace(key=key, data=data, expected_version=version, ttl=ttl):
            return await store.replace(key, data, expected_version=version, ttl=ttl)
        case Delete(key=key, expected_version=version):
            return await store.delete(key, expected_version=version)
        case Get(key=key):
            return await store.get(key)


def run_plan[T](store: Store, plan: Plan[T]) -> T:
    """Drive ``plan`` with a sync store: send each result in, throw each store error in."""
    try:
        call = next(plan)
        while True:
            try:
                reply = _execute(store, call)
            except StorageError as exc:
                call = plan.throw(exc)
            else:
                call = plan.send(reply)
    except StopIteration as stop:
        return cast("T", stop.value)


async def run_plan_async[T](store: AsyncStore, plan: Plan[T]) -> T:
    """Drive ``plan`` with an async store (same protocol as :func:`run_plan`)."""
    try:
        call = next(plan)
        while True:
            try:
                reply = await _execute_async(store, call)
            except StorageError as exc:
                call = plan.throw(exc)
            else:
                call = plan.send(reply)
    except StopIteration as stop:
        return cast("T", stop.value)


class Idempotency:
    """The idempotency layer over a synchronous :class:`~stalwart.storage.Store`.

    >>> from stalwart.storage import open_store
    >>> layer = Idempotency(open_store("sqlite:///:memory:?table=idem"))
    >>> key = layer.key("payments", "order-42")
    >>> lease = layer.claim(key, fingerprint="f1")
    >>> layer.complete(lease, {"charged": 100})
    >>> layer.claim(key, fingerprint="f1").result
    {'charged': 100}
    """

    __slots__ = ("policy", "store")

    def __init__(self, store: Store, policy: IdempotencyPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or IdempotencyPolicy()

    def key(self, *scope: str) -> Key:
        """The record key of a scope, e.g. ``(namespace, principal, client_key)``."""
        return record_key(self.policy, *scope)

    def claim(self, key: Key, fingerprint: str | None = None) -> Lease | Replay:
        """One round trip: a :class:`Lease` to run the work, or a :class:`Replay`.

        Raises :class:`InProgress` or :class:`FingerprintMismatch`.
        """
        return run_plan(self.store, claim_plan(self.policy, key, fingerprint))

    def complete(self, lease: Lease, result: JSONValue) -> None:
        """Store the result (fenced); :class:`LeaseLost` if another worker took over."""
        run_plan(self.store, complete_plan(self.policy, lease, result))

    def release(self, lease: Lease) -> None:
        """Forget the claim so the key can run again (fenced); :class:`LeaseLost` if stale."""
        run_plan(self.store, release_plan(lease))

    def heartbeat(self, lease: Lease) -> Lease:
        """Extend the lease; use the returned lease from now on."""
        return run_plan(self.store, heartbeat_plan(self.policy, lease))


class AsyncIdempotency:
    """The idempotency layer over an :class:`~stalwart.storage.AsyncStore` (see
    :class:`Idempotency`; the same methods, awaited)."""

    __slots__ = ("policy", "store")

    def __init__(self, store: AsyncStore, policy: IdempotencyPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or IdempotencyPolicy()

    def key(self, *scope: str) -> Key:
        """The record key of a scope, e.g. ``(namespace, principal, client_key)``."""
        return record_key(self.policy, *scope)

    async def claim(self, key: Key, fingerprint: str | None = None) -> Lease | Replay:
        """See :meth:`Idempotency.claim`."""
        return await run_plan_async(self.store, claim_plan(self.policy, key, fingerprint))

    async def complete(self, lease: Lease, result: JSONValue) -> None:
        """See :meth:`Idempotency.complete`."""
        await run_plan_async(self.store, complete_plan(self.policy, lease, result))

    async def release(self, lease: Lease) -> None:
        """See :meth:`Idempotency.release`."""
        await run_plan_async(self.store, release_plan(lease))

    async def heartbeat(self, lease: Lease) -> Lease:
        """See :meth:`Idempotency.heartbeat`."""
        return await run_plan_async(self.store, heartbeat_plan(self.policy, lease))
