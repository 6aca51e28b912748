"""Stream DataFrame pages to one CSV or Parquet file, one page in memory at a time."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd

from stalwart._extras import require_extra

type FileFormat = Literal["csv", "parquet"]

_SUFFIXES: Final[dict[str, FileFormat]] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: str | os.PathLike[str], format: FileFormat | None = None) -> FileFormat:  # noqa: A002 - the name users expect, as in pandas' readers
    """The format of ``path``: ``format`` if given, else from its suffix.

    >>> file_format("out/transfers.parquet")
    'parquet'
    """
    if format is not None:
        if format not in ("csv", "parquet"):
            raise ValueError(f"format must be 'csv' or 'parquet', got {format!r}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"cannot tell the format of {os.fspath(path)!r} from its suffix "
            f"(known: {', '.join(sorted(_SUFFIXES))}); pass format='csv' or format='parquet'"
        )
    return _SUFFIXES[suffix]


def write_pages(
    frames: Iterable[pd.DataFrame],
    path: str | os.PathLike[str],
    *,
    format: FileFormat | None = None,  # noqa: A002 - the name users expect, as in pandas' readers
) -> int:
    """Write ``frames`` one after another into one CSV or Parquet file; return the row count.

    Only one page is in memory at a time (plus the writer's buffers), so an export's memory
    stays bounded whatever its size: feed it :func:`iter_frames`. The first page fixes the
    columns (CSV header, Parquet schema); a later page may lack some of them (they are written
    empty) but may not add new ones. Index labels are not written. Nested values (dicts and
    lists, such as a record's ``metadata``) are written as compact JSON text in both formats:
    an Arrow struct would fix its fields from the first page and drop a later page's new keys
    silently, and CSV would get Python's repr. The file is written under
    ``<path>.partial`` and renamed to ``path`` at the end, so an interrupted export never
    leaves a file that looks complete.

    >>> import pandas as pd, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "pages.csv"
    >>> write_pages([pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3]})], out)
    3
    >>> out.read_text()
    'a\\n1\\n2\\n3\\n'
    """
    chosen = file_format(path, format)
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        write = _write_csv if chosen == "csv" else _write_parquet
        rows = write(frames, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return rows


def _aligned(frame: pd.DataFrame, columns: list[str] | None) -> pd.DataFrame:
    """``frame`` with the first page's ``columns`` (missing ones empty; new ones refused)
    and its nested values as JSON text."""
    frame = _nested_as_json(frame)
    if columns is None:
        return frame
    extra = [name for name in frame.columns if name not in columns]
    if extra:
        raise ValueError(
            f"a later page has columns the first page did not: {extra}; "
            "pass the same columns on every page (read_frame's columns= fixes them)"
        )
    return frame.reindex(columns=columns)


def _nested_as_json(frame: pd.DataFrame) -> pd.DataFrame:
    nested = [
        name
        for name in frame.columns
        if frame[name].dtype == object and frame[name].map(_is_nested).any()
    ]
    if not nested:
        return frame
    return frame.assign(**{str(name): frame[name].map(_json_text) for name in nested})


def _is_nested(value: object) -> bool:
    return isinstance(value, dict | list)


def _json_text(value: object) -> object:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def _write_csv(frames: Iterable[pd.DataFrame], partial: Path) -> int:
    rows = 0
    columns: list[str] | None = None
    with partial.open("w", newline="", encoding="utf-8") as out:
        for frame in frames:
            page = _aligned(frame, columns)
            page.to_csv(out, header=columns is None, index=False)
            columns = [str(name) for name in page.columns] if columns is None else columns
            rows += len(page)
    return rows


def _write_parquet(frames: Iterable[pd.DataFrame], partial: Path) -> int:
    pa = require_extra("pyarrow", "pandas", feature="stalwart.frames")
    pq = require_extra("pyarrow.parquet", "pandas", feature="stalwart.frames")
    rows = 0
    columns: list[str] | None = None
    writer: Any = None
    try:
        for frame in frames:
            page = _aligned(frame, columns)
            if writer is None:
                table = pa.Table.from_pandas(page, preserve_index=False)
                writer = pq.ParquetWriter(partial, table.schema)
                columns = [str(name) for name in page.columns]
            else:
                table = _to_schema(pa, page, writer.schema)
            writer.write_table(table)
            rows += len(page)
        if writer is None:  # no page at all: a valid file with no columns
            writer = pq.ParquetWriter(partial, pa.schema([]))
    finally:
        if writer is not None:
            writer.close()
    return rows


def _to_schema(pa: Any, page: pd.DataFrame, schema: Any) -> Any:
    """``page`` as an Arrow table of the file's ``schema``, or a ValueError naming the column."""
    try:
        return pa.Table.from_pandas(page, schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ValueError(
            f"a later page does not fit the Parquet schema the first page fixed ({exc}); "
            "give every page the same column types (read_frame's dtype_backend='pyarrow' "
            "and columns= keep them stable)"
        ) from exc
