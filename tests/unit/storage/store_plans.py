"""Plans exactly as a store runs them, for tests that drive a plan by hand.

:class:`HandBack` is an executor that returns the plan instead of running it, so
``EngineStore(engine, HandBack(), clock).get(key)`` is the real store's checks (key, query,
transaction shape), one clock reading and the engine's plan -- with no copy of those checks in
the engines or here. Each function is a generator, so, like a plan, it does nothing (and
raises nothing) until it is first advanced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from stalwart.storage._dynamodb_core import DynamoDBEngine
from stalwart.storage._engine import EngineStore
from stalwart.storage._mongodb_plan import MongoEngine, Settings, guarded


class HandBack:
    """An executor that hands each (wrapped) plan back to the caller."""

    def __init__(self, wrap: Callable[[Any], Any] = lambda plan: plan) -> None:
        self._wrap = wrap

    def run(self, plan: Any) -> Any:
        return self._wrap(plan)

    def close(self) -> None:
        return None


def _mongodb(settings: Settings) -> Any:
    return EngineStore(MongoEngine(settings), HandBack(guarded), settings.clock)


def mongodb_get(settings, key):
    return (yield from _mongodb(settings).get(key))


def mongodb_create(settings, key, data, ttl):
    return (yield from _mongodb(settings).create(key, data, ttl=ttl))


def mongodb_replace(settings, key, data, expected_version, ttl):
    store = _mongodb(settings)
    return (yield from store.replace(key, data, expected_version=expected_version, ttl=ttl))


def mongodb_delete(settings, key, expected_version):
    return (yield from _mongodb(settings).delete(key, expected_version=expected_version))


def mongodb_increment(settings, key, field, by, ttl):
    return (yield from _mongodb(settings).increment(key, field, by, ttl=ttl))


def mongodb_query(settings, partition, **options):
    return (yield from _mongodb(settings).query(partition, **options))


def mongodb_transact(settings, operations: Sequence[Any]):
    return (yield from _mongodb(settings).transact(operations))


def _dynamodb(table: str, clock) -> Any:
    return EngineStore(DynamoDBEngine(table), HandBack(), clock)


def dynamodb_get(table, key, clock):
    return (yield from _dynamodb(table, clock).get(key))


def dynamodb_create(table, key, data, *, ttl, clock):
    return (yield from _dynamodb(table, clock).create(key, data, ttl=ttl))


def dynamodb_replace(table, key, data, *, expected_version, ttl, clock):
    store = _dynamodb(table, clock)
    return (yield from store.replace(key, data, expected_version=expected_version, ttl=ttl))


def dynamodb_delete(table, key, expected_version, clock):
    return (yield from _dynamodb(table, clock).delete(key, expected_version=expected_version))


def dynamodb_increment(table, key, field, by, *, ttl, clock):
    return (yield from _dynamodb(table, clock).increment(key, field, by, ttl=ttl))


def dynamodb_query(table, partition, *, clock, **options):
    return (yield from _dynamodb(table, clock).query(partition, **options))


def dynamodb_transact(table, operations, clock):
    return (yield from _dynamodb(table, clock).transact(operations))


def _namespace(prefix: str) -> SimpleNamespace:
    names = ("get", "create", "replace", "delete", "increment", "query", "transact")
    return SimpleNamespace(**{name: globals()[f"{prefix}_{name}"] for name in names})


mongodb = _namespace("mongodb")
"""``mongodb.create(settings, key, data, ttl)`` and the other operations, as a store runs them."""
dynamodb = _namespace("dynamodb")
"""``dynamodb.create(table, key, data, ttl=..., clock=...)`` and the others, likewise."""
