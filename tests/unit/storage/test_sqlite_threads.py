# Copyright 2026 stalwart contributors
"""A file store's per-thread connections end with their threads (no descriptor leak)."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from stalwart.storage import Key
from stalwart.storage.sqlite import SQLiteStore

KEY = Key("acct", "balance")


def _open_descriptors() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def _in_short_lived_threads(work, count: int) -> None:
    # Sequential, like a threaded server handling one request per thread.
    for _ in range(count):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()


def test_connections_of_finished_threads_are_closed(tmp_path):
    with SQLiteStore(tmp_path / "threads.db", table="threads") as store:
        store.create(KEY, {"n": 0})
        baseline = _open_descriptors()
        _in_short_lived_threads(lambda: store.increment(KEY, "n"), 200)
        gc.collect()
        # Each leaked connection would hold 2-3 descriptors (database, WAL, shared memory).
        assert _open_descriptors() - baseline < 10
        record = store.get(KEY)
        assert record is not None
        assert record.data == {"n": 200}


def test_close_still_closes_the_connections_of_live_threads(tmp_path):
    store = SQLiteStore(tmp_path / "live.db", table="live")
    store.get(KEY)
    baseline = _open_descriptors()
    opened = threading.Barrier(5)
    release = threading.Event()

    def hold() -> None:
        store.get(KEY)
        opened.wait(timeout=5)
        release.wait(timeout=5)

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    opened.wait(timeout=5)
    assert _open_descriptors() > baseline
    store.close()
    # The main thread's connection and those of the four live threads are all closed.
    assert _open_descriptors() < baseline
    release.set()
    for thread in threads:
        thread.join()
    assert _open_descriptors() < baseline
