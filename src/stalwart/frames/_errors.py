"""Errors of :mod:`stalwart.frames`.

Exception tree::

    FrameError
    ├── FrameValueError     a row cannot be stored (value, key, size): nothing of its chunk written
    └── FrameConflictError  a row's key holds other data in the store (on_conflict="error")

Store errors (``StoreUnavailable`` once retries are spent, ``StoreConfigurationError``, ...)
propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stalwart.frames._write import RowConflict, WriteReport


class FrameError(Exception):
    """Root of the errors :mod:`stalwart.frames` raises itself."""


class FrameValueError(FrameError, ValueError):
    """A value, key or row of the frame cannot be stored; says which row and column.

    ``position`` is the row's 0-based position in the frame, ``label`` its index label,
    ``column`` the column (``None`` when the whole row is at fault, e.g. too large).
    """

    def __init__(
        self, reason: str, *, position: int, label: Hashable, column: str | None = None
    ) -> None:
        where = f"row {position} (index label {label!r})"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.position = position
        self.label = label
        self.column = column


class FrameConflictError(FrameError):
    """A row's key already holds different data; nothing was overwritten.

    ``conflict`` describes the row; ``report`` counts what this call wrote before stopping
    (rows of earlier chunks stay written: a re-run skips them).
    """

    def __init__(self, conflict: RowConflict, report: WriteReport) -> None:
        super().__init__(
            f"row {conflict.position} (index label {conflict.label!r}): {conflict.key} "
            "already holds different data; nothing was overwritten "
            "(pass on_conflict='report' to list such rows and keep going)"
        )
        self.conflict = conflict
        self.report = report
