"""Writes a frame slowly into a store, to be SIGKILLed halfway (tests/conformance/test_frames.py).

:func:`write_slowly` runs in a process of its own (a forkserver child, so pandas is imported
once per session, not once per process); each transaction is followed by a short sleep, so
the parent can kill the process while it is writing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from stalwart.frames import write_frame
from stalwart.storage import Operation, Record, Store, open_store

CHUNK_ROWS = 10
PARTITION = "frames"


def kill_frame(rows: int) -> pd.DataFrame:
    """The frame the worker writes and the test resumes: deterministic for ``rows``."""
    return pd.DataFrame(
        {
            "id": [f"row{n:05d}" for n in range(rows)],
            "amount": [n * 7 for n in range(rows)],
            "note": [None if n % 3 else f"note {n}" for n in range(rows)],
        }
    )


class Wrapped:
    """A Store delegating everything to ``inner``; subclasses override the calls they change."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def max_transaction_items(self) -> int:
        return self.inner.max_transaction_items

    @property
    def max_item_bytes(self) -> int:
        return self.inner.max_item_bytes


class Slow(Wrapped):
    """Sleeps after each transaction so a kill lands mid-frame."""

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        results = self.inner.transact(operations)
        time.sleep(0.03)
        return results


def write_slowly(url: str, rows: int) -> None:
    store = Slow(open_store(url))
    write_frame(
        store,  # type: ignore[arg-type]
        kill_frame(rows),
        partition=PARTITION,
        key_columns=["id"],
        chunk_rows=CHUNK_ROWS,
    )
