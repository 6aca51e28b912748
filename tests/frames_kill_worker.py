"""Writes a frame slowly into a store, to be SIGKILLed halfway (tests/conformance/test_frames.py).

Usage: python frames_kill_worker.py URL ROWS. Each transaction is followed by a short sleep,
so the parent can kill the process while it is writing.
"""

from __future__ import annotations

import sys
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


class Slow:
    """Delegates to ``inner``; sleeps after each transaction so a kill lands mid-frame."""

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

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        results = self.inner.transact(operations)
        time.sleep(0.03)
        return results


if __name__ == "__main__":
    url, rows = sys.argv[1], int(sys.argv[2])
    store = Slow(open_store(url))
    write_frame(
        store, kill_frame(rows), partition=PARTITION, key_columns=["id"], chunk_rows=CHUNK_ROWS
    )  # type: ignore[arg-type]
