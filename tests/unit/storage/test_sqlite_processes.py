# Copyright 2026 stalwart contributors
"""Several processes on one database file: WAL + busy timeout + BEGIN IMMEDIATE keep it exact."""

from __future__ import annotations

import multiprocessing

from sqlite_process_workers import (
    COUNTER,
    LEFT,
    RIGHT,
    increment_many,
    replace_many,
    transfer_many,
)
from stalwart.storage.sqlite import SQLiteStore

PROCESSES = 2


def run_processes(target, path: str, times: int) -> None:
    context = multiprocessing.get_context("spawn")  # no inherited connections or locks
    processes = [context.Process(target=target, args=(path, times)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * PROCESSES


def test_processes_incrementing_one_counter_lose_nothing(tmp_path):
    path = str(tmp_path / "procs.db")
    with SQLiteStore(path, table="procs") as store:
        store.create(COUNTER, {"n": 0})
    run_processes(increment_many, path, 400)
    with SQLiteStore(path, table="procs") as store:
        final = store.get(COUNTER)
    assert final is not None
    assert final.data == {"n": PROCESSES * 400}
    assert final.version == 1 + PROCESSES * 400


def test_processes_doing_optimistic_replaces_lose_nothing(tmp_path):
    path = str(tmp_path / "procs.db")
    with SQLiteStore(path, table="procs") as store:
        store.create(COUNTER, {"r": 0})
    run_processes(replace_many, path, 300)
    with SQLiteStore(path, table="procs") as store:
        final = store.get(COUNTER)
    assert final is not None
    assert final.data == {"r": PROCESSES * 300}


def test_processes_transferring_conserve_the_total(tmp_path):
    path = str(tmp_path / "procs.db")
    with SQLiteStore(path, table="procs") as store:
        store.create(LEFT, {"v": 1000})
        store.create(RIGHT, {"v": 0})
    run_processes(transfer_many, path, 150)
    with SQLiteStore(path, table="procs") as store:
        left, right = store.get(LEFT), store.get(RIGHT)
    assert left is not None
    assert right is not None
    assert (left.data["v"], right.data["v"]) == (1000 - PROCESSES * 150, PROCESSES * 150)
    assert left.version == right.version == 1 + PROCESSES * 150
