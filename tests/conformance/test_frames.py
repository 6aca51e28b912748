# Copyright 2026 stalwart contributors
"""stalwart.frames on every engine, sync and async: round trip of every value rule, missing
values, dtype backends, paging, exactly-once on a re-run and on a run resumed after its writer
process was SIGKILLed halfway."""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pymongo
import pytest

from frames_kill_worker import CHUNK_ROWS, PARTITION, kill_frame, write_slowly
from servers import own_mongodb_server
from stalwart.frames import (
    FrameConflictError,
    WriteReport,
    async_iter_frames,
    async_read_frame,
    async_write_frame,
    iter_frames,
    read_frame,
    write_frame,
)
from stalwart.storage import Key, open_store


async def write(store: Any, frame: pd.DataFrame, **kwargs: Any) -> WriteReport:
    kwargs = {"partition": PARTITION, "key_columns": ["id"], **kwargs}
    if store.mode == "sync":
        return await asyncio.to_thread(write_frame, store.raw, frame, **kwargs)  # type: ignore[arg-type]
    return await async_write_frame(store.raw, frame, **kwargs)  # type: ignore[arg-type]


async def read(store: Any, **kwargs: Any) -> pd.DataFrame:
    if store.mode == "sync":
        return await asyncio.to_thread(read_frame, store.raw, PARTITION, **kwargs)  # type: ignore[arg-type]
    return await async_read_frame(store.raw, PARTITION, **kwargs)  # type: ignore[arg-type]


async def pages(store: Any, **kwargs: Any) -> list[pd.DataFrame]:
    if store.mode == "sync":
        return await asyncio.to_thread(lambda: list(iter_frames(store.raw, PARTITION, **kwargs)))  # type: ignore[arg-type]
    return [page async for page in async_iter_frames(store.raw, PARTITION, **kwargs)]  # type: ignore[arg-type]


def every_type() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["r0", "r1", "r2", "r3", "r4"],
            "text": ["a", "é ☃", None, "", "x#y\\z"],
            "count": np.array([1, -(2**63), 2**63 - 1, 0, 7], dtype="int64"),
            "ratio": [0.1, np.nan, 1e300, -2.5e-300, 2.5],
            "flag": np.array([True, False, True, False, True]),
            "maybe": pd.array([1, None, 3, None, 5], dtype="Int64"),
            "at": pd.to_datetime(
                [
                    "2026-01-02T03:04:05.123456Z",
                    None,
                    "2026-06-30T23:59:59+02:00",
                    None,
                    "1970-01-01T00:00:00Z",
                ],
                utc=True,
                format="ISO8601",
            ),
            "price": [
                Decimal("1.10"),
                Decimal("-0.000001"),
                None,
                Decimal("12345678901234567890.5"),
                Decimal(7),
            ],
            "meta": [{"a": 1, "b": [1, "x", None]}, None, {}, [], {"n": {"m": np.int64(2)}}],
        }
    )


EXPECTED = [  # the records every engine must hold: the documented rules applied
    {"id": "r0", "text": "a", "count": 1, "ratio": 0.1, "flag": True, "maybe": 1,
     "at": "2026-01-02T03:04:05.123456Z", "price": "1.10", "meta": {"a": 1, "b": [1, "x", None]}},
    {"id": "r1", "text": "é ☃", "count": -(2**63), "ratio": None, "flag": False, "maybe": None,
     "at": None, "price": "-0.000001", "meta": None},
    {"id": "r2", "text": None, "count": 2**63 - 1, "ratio": 1e300, "flag": True, "maybe": 3,
     "at": "2026-06-30T21:59:59.000000Z", "price": None, "meta": {}},
    {"id": "r3", "text": "", "count": 0, "ratio": -2.5e-300, "flag": False, "maybe": None,
     "at": None, "price": "12345678901234567890.5", "meta": []},
    {"id": "r4", "text": "x#y\\z", "count": 7, "ratio": 2.5, "flag": True, "maybe": 5,
     "at": "1970-01-01T00:00:00.000000Z", "price": "7", "meta": {"n": {"m": 2}}},
]  # fmt: skip


def plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with every missing value (NaN, NA, None) as None."""
    return [
        {name: None if _is_missing(value) else value for name, value in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def _is_missing(value: object) -> bool:
    return not isinstance(value, dict | list) and bool(pd.isna(value))


async def test_frames_round_trip_every_value_rule(store: Any) -> None:
    report = await write(store, every_type())
    assert report == WriteReport(written=5, already_present=0)
    # missing values are stored as null, the attribute kept, on every engine
    for expected in EXPECTED:
        record = await store.get(Key(PARTITION, expected["id"]))
        assert record is not None
        assert record.data == expected
        assert record.version == 1
    back = await read(store)
    assert plain_records(back) == EXPECTED
    assert back.index.tolist() == [0, 1, 2, 3, 4]
    assert back["count"].dtype == "int64"


@pytest.mark.parametrize(
    ("backend", "dtypes"),
    [
        ("numpy_nullable", {"count": "Int64", "maybe": "Int64", "flag": "boolean",
                            "ratio": "Float64", "text": "string"}),
        ("pyarrow", {"count": "int64[pyarrow]", "maybe": "int64[pyarrow]",
                     "flag": "bool[pyarrow]", "ratio": "double[pyarrow]"}),
    ],
)  # fmt: skip
async def test_frames_dtype_backends(store: Any, backend: str, dtypes: dict[str, str]) -> None:
    await write(store, every_type())
    back = await read(store, dtype_backend=backend)
    assert {name: str(back[name].dtype) for name in dtypes} == dtypes
    assert plain_records(back) == EXPECTED


async def test_frames_pages_columns_and_prefix(store: Any) -> None:
    frame = pd.DataFrame({"id": [f"a{n:02d}" for n in range(25)] + ["b00"], "n": range(26)})
    await write(store, frame)
    got = await pages(store, page_size=10, prefix="a", columns=["n", "missing"])
    assert [len(page) for page in got] == [10, 10, 5]
    assert [page.index[0] for page in got] == [0, 10, 20]
    assert all(page.columns.tolist() == ["n", "missing"] for page in got)
    assert pd.concat(got)["n"].tolist() == list(range(25))
    empty = await pages(store, prefix="zzz", columns=["n"])
    assert [(len(page), page.columns.tolist()) for page in empty] == [(0, ["n"])]


async def test_frames_rerun_writes_nothing_twice(store: Any) -> None:
    frame = pd.DataFrame({"id": [f"k{n:03d}" for n in range(70)], "n": range(70)})
    assert await write(store, frame, chunk_rows=25) == WriteReport(written=70, already_present=0)
    again = await write(store, frame, chunk_rows=25)
    assert again == WriteReport(written=0, already_present=70)
    assert len(await read(store)) == 70
    for key in ("k000", "k033", "k069"):
        record = await store.get(Key(PARTITION, key))
        assert record is not None
        assert record.version == 1


async def test_frames_partial_overlap_and_conflicts(store: Any) -> None:
    frame = pd.DataFrame({"id": [f"k{n:02d}" for n in range(30)], "n": range(30)})
    await write(store, frame.iloc[[0, 5, 17, 29]])
    changed = frame.copy()
    changed.loc[17, "n"] = -1
    with pytest.raises(FrameConflictError) as caught:
        await write(store, changed)
    assert caught.value.conflict.key == Key(PARTITION, "k17")
    report = await write(store, changed, on_conflict="report")
    # rows 0..16 were written by the failed call above (its chunk was settled row by row up
    # to the conflict), so this run writes the rest; nothing is written twice or overwritten
    assert report.written + report.already_present + len(report.conflicts) == 30
    assert [c.position for c in report.conflicts] == [17]
    record = await store.get(Key(PARTITION, "k17"))
    assert record is not None
    assert (record.data["n"], record.version) == (17, 1)
    assert len(await read(store)) == 30


# Writers are forkserver children: pandas and the engines are imported once, in the server,
# not once per writer (a fresh interpreter spends seconds importing them).
WRITERS = multiprocessing.get_context("forkserver")
WRITERS.set_forkserver_preload(
    ["frames_kill_worker", "stalwart.storage.redis", "stalwart.storage.dynamodb",
     "stalwart.storage.mongodb"]
)  # fmt: skip


@pytest.mark.parametrize("engine", ["sqlite", "redis", "dynamodb", "mongodb"])
def test_frames_resumed_after_the_writer_was_killed(engine: str, store_url_factory: Any) -> None:
    """A real writer process is SIGKILLed mid-frame; the next run writes every row once.

    Once per engine, not per mode (the re-run semantics of both modes are in
    test_frames_rerun_writes_nothing_twice).
    """
    rows = 120
    if engine != "mongodb":
        _write_kill_and_resume(store_url_factory(engine)(), rows)
        return
    # a server of its own, as end_orphaned_transactions ends every session on it
    with own_mongodb_server() as mongo:
        base = mongo.url.split("/?")[0]
        url = f"{base}/stalwart_test?collection=frames&directConnection=true&create=true"
        _write_kill_and_resume(url, rows, after_kill=lambda: end_orphaned_transactions(mongo.url))


def _write_kill_and_resume(
    url: str, rows: int, *, after_kill: Callable[[], None] | None = None
) -> None:
    store = open_store(url)
    try:
        writer = WRITERS.Process(target=write_slowly, args=(url, rows), daemon=True)
        writer.start()
        deadline = time.monotonic() + 30
        while _count(store) < rows // 4:
            assert writer.exitcode is None, "the writer ended before it could be killed"
            assert time.monotonic() < deadline, "the writer wrote nothing in 30 s"
            time.sleep(0.02)
        writer.kill()
        writer.join(timeout=10)
        assert writer.exitcode == -signal.SIGKILL
        if after_kill is not None:
            after_kill()
        before = _count(store)
        assert 0 < before < rows
        assert before % CHUNK_ROWS == 0, "a chunk is one transaction: all of it or none"
        # the same command again (same chunking as the killed run)
        report = write_frame(
            store, kill_frame(rows), partition=PARTITION, key_columns=["id"], chunk_rows=CHUNK_ROWS
        )
        assert report == WriteReport(written=rows - before, already_present=before)
        assert plain_records(read_frame(store, PARTITION)) == plain_records(kill_frame(rows))
        for n in (0, before - 1, before, rows - 1):
            record = store.get(Key(PARTITION, f"row{n:05d}"))
            assert record is not None
            assert record.version == 1
    finally:
        store.close()


def end_orphaned_transactions(server_url: str) -> None:
    """What docs/frames.md tells a MongoDB operator to do before resuming at once: a writer
    killed between a chunk's statements and its commit leaves that transaction, and its write
    locks on the chunk's rows, on the server until transactionLifetimeLimitSeconds (60 s);
    the resumed run would wait on those rows and time out (seen in CI)."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(server_url, timeoutMS=10_000)
    try:
        client.admin.command({"killAllSessions": []})
    finally:
        client.close()


def _count(store: Any) -> int:
    return len(store.query(PARTITION, limit=1000).records)
