"""write_frame's chunking, splitting, retries and conflict handling, on a real SQLite store.

A thin wrapper fails chosen calls (StoreUnavailable, a lost reply, a conflict the engine could
not place) to drive the retry and split paths; the exactly-once evidence against every real
engine is in tests/conformance/test_frames.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest

from frames_kill_worker import Wrapped
from stalwart.frames import (
    FrameConflictError,
    WriteReport,
    async_read_frame,
    async_write_frame,
    read_frame,
    write_frame,
)
from stalwart.resilience import retry
from stalwart.storage import (
    Key,
    Operation,
    Record,
    Store,
    StoreUnavailable,
    TransactionConflict,
    open_async_store,
    open_store,
)


class Flaky(Wrapped):
    """A Store that delegates to ``inner`` and fails the calls it is told to."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.calls: list[tuple[str, int]] = []
        self.unavailable = 0
        """Fail this many next transact/create calls with StoreUnavailable (nothing written)."""
        self.lose_replies = 0
        """Commit this many next transacts, then raise StoreUnavailable (a lost reply)."""
        self.unplaced_conflicts = 0
        """Fail this many next transacts with TransactionConflict(-1) (nothing written)."""

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        self.calls.append(("transact", len(operations)))
        if self.unavailable:
            self.unavailable -= 1
            raise StoreUnavailable("throttled")
        if self.unplaced_conflicts:
            self.unplaced_conflicts -= 1
            raise TransactionConflict(-1, None, "cancelled for an unknown reason")
        results = self.inner.transact(operations)
        if self.lose_replies:
            self.lose_replies -= 1
            raise StoreUnavailable("connection lost after the commit")
        return results

    def create(self, key: Key, data: dict[str, Any], *, ttl: float | None = None) -> Record:
        self.calls.append(("create", 1))
        if self.unavailable:
            self.unavailable -= 1
            raise StoreUnavailable("throttled")
        return self.inner.create(key, data, ttl=ttl)


def frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"r{i:04d}" for i in range(start, start + n)], "n": range(n)})


def no_sleep_policy(waits: list[float], attempts: int = 4) -> Any:
    return retry(StoreUnavailable, attempts=attempts, base_s=0.05, cap_s=1.0, sleep=waits.append)


@pytest.fixture
def store() -> Flaky:
    return Flaky(open_store("sqlite:///:memory:?table=t"))


def write(store: Flaky, df: pd.DataFrame, **kwargs: Any) -> WriteReport:
    kwargs.setdefault("chunk_rows", 10)
    return write_frame(store, df, partition="p", key_columns=["id"], **kwargs)  # type: ignore[arg-type]


def stored_ids(store: Flaky) -> list[str]:
    return [record.data["id"] for record in store.inner.query("p", limit=1000).records]


def test_rows_go_in_transactions_of_chunk_rows(store: Flaky) -> None:
    assert write(store, frame(25)) == WriteReport(written=25, already_present=0)
    assert store.calls == [("transact", 10), ("transact", 10), ("transact", 5)]
    assert stored_ids(store) == [f"r{i:04d}" for i in range(25)]


def test_chunks_default_to_the_store_transaction_limit(store: Flaky) -> None:
    assert write(store, frame(150), chunk_rows=None).written == 150
    assert store.calls == [("transact", 100), ("transact", 50)]


def test_chunk_rows_one_writes_row_by_row(store: Flaky) -> None:
    assert write(store, frame(3), chunk_rows=1).written == 3
    assert store.calls == [("create", 1)] * 3


def test_throttled_chunks_are_retried_with_jittered_backoff(store: Flaky) -> None:
    waits: list[float] = []
    store.unavailable = 3
    report = write(store, frame(15), retry_policy=no_sleep_policy(waits))
    assert report == WriteReport(written=15, already_present=0)
    assert len(waits) == 3
    assert all(0 <= wait <= cap for wait, cap in zip(waits, [0.05, 0.1, 0.2], strict=True))
    assert stored_ids(store) == [f"r{i:04d}" for i in range(15)]


def test_retries_are_bounded_and_the_error_propagates(store: Flaky) -> None:
    waits: list[float] = []
    store.unavailable = 10
    with pytest.raises(StoreUnavailable):
        write(store, frame(5), retry_policy=no_sleep_policy(waits, attempts=3))
    assert len(waits) == 2
    assert stored_ids(store) == []


def test_a_lost_reply_is_retried_and_writes_nothing_twice(store: Flaky) -> None:
    store.lose_replies = 1
    report = write(store, frame(12), retry_policy=no_sleep_policy([]))
    # the first chunk committed but its reply was lost: the retry finds its rows present
    assert report == WriteReport(written=2, already_present=10)
    assert stored_ids(store) == [f"r{i:04d}" for i in range(12)]


def test_a_stray_present_row_costs_one_more_transaction(store: Flaky) -> None:
    write(store, frame(10).iloc[[7]])
    store.calls.clear()
    assert write(store, frame(10)) == WriteReport(written=9, already_present=1)
    assert store.calls == [("transact", 10), ("transact", 9)]
    assert stored_ids(store) == [f"r{i:04d}" for i in range(10)]


def test_a_mostly_present_chunk_goes_row_by_row_after_two_conflicts(store: Flaky) -> None:
    write(store, frame(10).iloc[[2, 5, 7]])
    store.calls.clear()
    assert write(store, frame(10)) == WriteReport(written=7, already_present=3)
    # each conflict names one present row; after the second the other 8 rows go one by one
    # (a fully present chunk costs 2 transactions + n creates, not n shrinking transactions)
    assert store.calls == [("transact", 10), ("transact", 9)] + [("create", 1)] * 8
    assert stored_ids(store) == [f"r{i:04d}" for i in range(10)]


def test_a_conflict_the_engine_cannot_place_falls_back_to_row_by_row(store: Flaky) -> None:
    write(store, frame(4).iloc[[1]])
    store.calls.clear()
    store.unplaced_conflicts = 1
    assert write(store, frame(4)) == WriteReport(written=3, already_present=1)
    assert store.calls == [("transact", 4)] + [("create", 1)] * 4


def test_rerun_writes_nothing(store: Flaky) -> None:
    write(store, frame(30))
    assert write(store, frame(30)) == WriteReport(written=0, already_present=30)
    assert len(stored_ids(store)) == 30


def test_different_data_under_a_present_key_is_never_overwritten(store: Flaky) -> None:
    write(store, frame(5))
    changed = frame(5)
    changed.loc[3, "n"] = 99
    with pytest.raises(FrameConflictError, match=r"row 3 \(index label 3\)") as caught:
        write(store, changed)
    assert caught.value.conflict.stored == {"id": "r0003", "n": 3}
    assert caught.value.conflict.data == {"id": "r0003", "n": 99}
    assert read_frame(store.inner, "p")["n"].tolist() == [0, 1, 2, 3, 4]

    report = write(store, changed, on_conflict="report")
    assert (report.written, report.already_present) == (0, 4)
    assert [(c.position, c.key) for c in report.conflicts] == [(3, Key("p", "r0003"))]
    assert read_frame(store.inner, "p")["n"].tolist() == [0, 1, 2, 3, 4]


def test_a_key_repeated_inside_the_frame(store: Flaky) -> None:
    same = pd.DataFrame({"id": ["a", "b", "a"], "n": [1, 2, 1]})
    assert write(store, same) == WriteReport(written=2, already_present=1)
    other = pd.DataFrame({"id": ["c", "c"], "n": [1, 2]})
    report = write(store, other, on_conflict="report")
    assert (report.written, report.already_present, len(report.conflicts)) == (1, 0, 1)
    assert report.conflicts[0].position == 1
    assert report.conflicts[0].stored == {"id": "c", "n": 1}


def test_ttl_is_passed_to_every_record(store: Flaky) -> None:
    write(store, frame(3), ttl=60)
    assert all(r.expires_at is not None for r in store.inner.query("p").records)


async def test_async_twin_has_the_same_semantics() -> None:
    store = open_async_store("sqlite:///:memory:?table=t")
    try:
        df = frame(25)
        first = await async_write_frame(store, df, partition="p", key_columns=["id"], chunk_rows=10)
        again = await async_write_frame(store, df, partition="p", key_columns=["id"])
        assert (first.written, again.already_present) == (25, 25)
        back = await async_read_frame(store, "p", page_size=7)
        assert back.to_dict("records") == df.to_dict("records")
    finally:
        await store.close()
