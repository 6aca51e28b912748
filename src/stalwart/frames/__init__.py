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

from stalwart.frames._pages import FileFormat, file_format, write_pages  # noqa: E402

__all__ = ["FileFormat", "file_format", "write_pages"]
