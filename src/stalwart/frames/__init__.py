"""DataFrames in and out of any stalwart store, and streamed to CSV or Parquet files.

Needs the ``pandas`` extra (pandas and pyarrow). See ``docs/frames.md``.

>>> import pandas as pd, tempfile, pathlib
>>> from stalwart.frames import write_pages
>>> write_pages([pd.DataFrame({"a": [1]})], pathlib.Path(tempfile.mkdtemp()) / "a.parquet")
1
"""

from stalwart._extras import require_extra

require_extra("pandas", "pandas", feature="stalwart.frames")
require_extra("pyarrow", "pandas", feature="stalwart.frames")

from stalwart.frames._convert import KEY_SEPARATOR, row_sort_key  # noqa: E402
from stalwart.frames._errors import FrameConflictError, FrameError, FrameValueError  # noqa: E402
from stalwart.frames._pages import FileFormat, file_format, write_pages  # noqa: E402
from stalwart.frames._read import (  # noqa: E402
    DtypeBackend,
    async_iter_frames,
    async_read_frame,
    iter_frames,
    read_frame,
)
from stalwart.frames._write import (  # noqa: E402
    OnConflict,
    RowConflict,
    WriteReport,
    async_write_frame,
    default_retry_policy,
    write_frame,
)

__all__ = [
    "KEY_SEPARATOR",
    "DtypeBackend",
    "FileFormat",
    "FrameConflictError",
    "FrameError",
    "FrameValueError",
    "OnConflict",
    "RowConflict",
    "WriteReport",
    "async_iter_frames",
    "async_read_frame",
    "async_write_frame",
    "default_retry_policy",
    "file_format",
    "iter_frames",
    "read_frame",
    "row_sort_key",
    "write_frame",
    "write_pages",
]
