# Copyright 2026 stalwart contributors
"""Worker functions for tests/unit/storage/test_sqlite_processes.py.

They live in an importable module (``tests`` is on pythonpath) because spawned processes import
their target by module name, and pytest's importlib mode gives test files no importable name.
"""

from __future__ import annotations

from stalwart.storage import Key, Replace, TransactionConflict, VersionConflict
from stalwart.storage.sqlite import SQLiteStore

COUNTER = Key("shared", "counter")
LEFT = Key("shared", "left")
RIGHT = Key("shared", "right")


def increment_many(path: str, times: int) -> None:
    with SQLiteStore(path, table="procs", timeout=30) as store:
        for _ in range(times):
            store.increment(COUNTER, "n")


def replace_many(path: str, times: int) -> None:
    with SQLiteStore(path, table="procs", timeout=30) as store:
        for _ in range(times):
            current = store.get(COUNTER)
            assert current is not None
            while True:
                try:
                    store.replace(
                        COUNTER,
                        {**current.data, "r": current.data.get("r", 0) + 1},
                        expected_version=current.version,
                    )
                    break
                except VersionConflict as conflict:
                    current = conflict.current or store.get(COUNTER)
                    assert current is not None


def transfer_many(path: str, times: int) -> None:
    with SQLiteStore(path, table="procs", timeout=30) as store:
        for _ in range(times):
            while True:
                left, right = store.get(LEFT), store.get(RIGHT)
                assert left is not None
                assert right is not None
                try:
                    store.transact(
                        [
                            Replace(LEFT, {"v": left.data["v"] - 1}, left.version),
                            Replace(RIGHT, {"v": right.data["v"] + 1}, right.version),
                        ]
                    )
                    break
                except TransactionConflict:
                    continue
