"""Read a partition into DataFrames, one query page at a time (bounded memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import pandas as pd

from stalwart.frames._write import default_retry_policy
from stalwart.resilience import RetryPolicy
from stalwart.storage import AsyncStore, Page, Record, Store

type DtypeBackend = Literal["numpy_nullable", "pyarrow"]

DEFAULT_PAGE_SIZE: Final = 1_000
"""Records per query page and per DataFrame (the contract's largest query limit)."""


def page_frame(
    records: Sequence[Record],
    *,
    first: int,
    columns: Sequence[str] | None,
    dtype_backend: DtypeBackend | None,
) -> pd.DataFrame:
    """One DataFrame of ``records``' data, indexed by position from ``first``.

    >>> page_frame([], first=0, columns=["a"], dtype_backend=None).columns.tolist()
    ['a']
    """
    frame = pd.DataFrame.from_records(
        [record.data for record in records],
        columns=None if columns is None else list(columns),
        index=pd.RangeIndex(first, first + len(records)),
    )
    if dtype_backend is not None:
        frame = frame.convert_dtypes(dtype_backend=dtype_backend)
    return frame


@dataclass(slots=True)
class _Paging:
    """Where a paged read is: the next cursor, the next row position, whether it is done."""

    columns: Sequence[str] | None
    dtype_backend: DtypeBackend | None
    first: int = 0
    cursor: str | None = None
    done: bool = False

    def frame_of(self, page: Page) -> pd.DataFrame | None:
        """The frame of ``page`` (``None`` for an empty page, unless the only one)."""
        frame = None
        if page.records or (self.first == 0 and page.cursor is None):
            frame = page_frame(
                page.records,
                first=self.first,
                columns=self.columns,
                dtype_backend=self.dtype_backend,
            )
        self.first += len(page.records)
        self.cursor = page.cursor
        self.done = page.cursor is None
        return frame


def _check_backend(dtype_backend: object) -> None:
    if dtype_backend not in (None, "numpy_nullable", "pyarrow"):
        raise ValueError(
            f"dtype_backend must be None, 'numpy_nullable' or 'pyarrow', got {dtype_backend!r}"
        )


def iter_frames(
    store: Store,
    partition: str,
    *,
    prefix: str = "",
    page_size: int = DEFAULT_PAGE_SIZE,
    dtype_backend: DtypeBackend | None = None,
    columns: Sequence[str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield one DataFrame per query page of ``partition`` (sort keys starting ``prefix``).

    Only one page of records is held at a time. Columns are the records' data fields (the
    union over the page, in first-seen order) unless ``columns`` fixes them (a missing field
    is missing). ``dtype_backend`` is passed to ``DataFrame.convert_dtypes``; ``None`` keeps
    pandas' default inference (an int column with a missing value becomes float64). The
    index is the row's position in the partition. There is always at least one frame (empty
    for an empty partition). ``StoreUnavailable`` is retried by ``retry_policy``.

    >>> from stalwart.storage import Key, open_store
    >>> store = open_store("sqlite:///:memory:?table=frames")
    >>> for n in range(3):
    ...     _ = store.create(Key("p", f"r{n}"), {"n": n})
    >>> [len(frame) for frame in iter_frames(store, "p", page_size=2)]
    [2, 1]
    """
    _check_backend(dtype_backend)
    query = (retry_policy or default_retry_policy())(store.query)
    paging = _Paging(columns, dtype_backend)
    while not paging.done:
        frame = paging.frame_of(
            query(partition, prefix=prefix, limit=page_size, cursor=paging.cursor)
        )
        if frame is not None:
            yield frame


async def async_iter_frames(
    store: AsyncStore,
    partition: str,
    *,
    prefix: str = "",
    page_size: int = DEFAULT_PAGE_SIZE,
    dtype_backend: DtypeBackend | None = None,
    columns: Sequence[str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> AsyncIterator[pd.DataFrame]:
    """The :class:`AsyncStore` twin of :func:`iter_frames`."""
    _check_backend(dtype_backend)
    query = (retry_policy or default_retry_policy())(store.query)
    paging = _Paging(columns, dtype_backend)
    while not paging.done:
        frame = paging.frame_of(
            await query(partition, prefix=prefix, limit=page_size, cursor=paging.cursor)
        )
        if frame is not None:
            yield frame


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames)


def read_frame(
    store: Store,
    partition: str,
    *,
    prefix: str = "",
    page_size: int = DEFAULT_PAGE_SIZE,
    dtype_backend: DtypeBackend | None = None,
    columns: Sequence[str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> pd.DataFrame:
    """The whole of ``partition`` (sort keys starting ``prefix``) as one DataFrame.

    The pages of :func:`iter_frames` concatenated; prefer that for large partitions.

    >>> import pandas as pd
    >>> from stalwart.storage import open_store
    >>> from stalwart.frames import write_frame
    >>> store = open_store("sqlite:///:memory:?table=frames")
    >>> _ = write_frame(store, pd.DataFrame({"id": ["a"], "n": [1]}), partition="p",
    ...                 key_columns=["id"])
    >>> read_frame(store, "p").to_dict("records")
    [{'id': 'a', 'n': 1}]
    """
    return _concat(
        list(
            iter_frames(
                store, partition, prefix=prefix, page_size=page_size,
                dtype_backend=dtype_backend, columns=columns, retry_policy=retry_policy,
            )
        )
    )  # fmt: skip


async def async_read_frame(
    store: AsyncStore,
    partition: str,
    *,
    prefix: str = "",
    page_size: int = DEFAULT_PAGE_SIZE,
    dtype_backend: DtypeBackend | None = None,
    columns: Sequence[str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> pd.DataFrame:
    """The :class:`AsyncStore` twin of :func:`read_frame`."""
    pages = async_iter_frames(
        store, partition, prefix=prefix, page_size=page_size,
        dtype_backend=dtype_backend, columns=columns, retry_policy=retry_policy,
    )  # fmt: skip
    return _concat([frame async for frame in pages])
