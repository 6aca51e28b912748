"""DataFrame values to stored JSON values, one documented rule per type (docs/frames.md).

=====================================  ==================================================
value                                  stored as
=====================================  ==================================================
str, numpy str                         str
bool, numpy bool                       bool
int, numpy int (signed 64-bit range)   int (outside the range: error)
float, numpy float                     float; ``inf``/``-inf``: error
None, NaN, pandas NA, NaT              null (the attribute is kept, on every engine)
Timestamp / datetime, timezone-aware   ISO 8601 UTC str, microseconds: ``...T03:04:05.000000Z``
naive Timestamp / datetime             error (localize it first: ``.dt.tz_localize("UTC")``)
date                                   ISO 8601 str ``YYYY-MM-DD``
Decimal                                str, exactly (``str(d)``); NaN: null; infinite: error
dict (str keys), list, tuple, ndarray  converted recursively (dict/list)
anything else                          error
=====================================  ==================================================

Errors are :class:`FrameValueError` naming the row (position and index label) and column.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Hashable, Sequence
from decimal import Decimal
from typing import Any, Final

import numpy as np
import pandas as pd

from stalwart.frames._errors import FrameValueError
from stalwart.storage import MAX_INTEGER, MIN_INTEGER

KEY_SEPARATOR: Final = "#"
"""Joins the key columns' values into a sort key; inside a value it is escaped as ``\\#``."""


class _Unstorable(Exception):
    """A value has no rule; carries the reason, located by the caller."""


def convert_column(
    values: Sequence[Any] | np.ndarray[Any, Any], labels: pd.Index, column: str, *, first: int = 0
) -> list[Any]:
    """The stored form of every value of one column, or the first error, located: ``labels``
    are the values' index labels, ``first`` the frame position of the first value.

    >>> convert_column([1, float("nan"), "x"], pd.RangeIndex(3), "c")
    [1, None, 'x']
    """
    try:
        return [convert_value(value) for value in values]
    except _Unstorable:
        pass
    for position, value in enumerate(values):  # find which row failed, only on failure
        try:
            convert_value(value)
        except _Unstorable as exc:
            raise FrameValueError(
                str(exc), position=first + position, label=labels[position], column=column
            ) from None
    raise AssertionError("unreachable: a value failed once and then passed")  # pragma: no cover


def convert_value(value: Any) -> Any:
    """One value's stored form (see the module table); :class:`_Unstorable` if it has none."""
    rule = _EXACT.get(value.__class__)
    if rule is not None:
        return rule(value)
    for kind, general_rule in _BY_KIND:
        if isinstance(value, kind):
            return general_rule(value)
    if value is pd.NA or value is pd.NaT:
        return None
    raise _Unstorable(f"{type(value).__name__} value {value!r} has no storage rule")


def _same(value: Any) -> Any:
    return value


def _missing(_value: Any) -> None:
    return None


def _integer(value: Any) -> int:
    number = int(value)
    if not MIN_INTEGER <= number <= MAX_INTEGER:
        raise _Unstorable(f"integer {number} is outside the signed 64-bit range")
    return number


def _float(value: Any) -> float | None:
    number = float(value)
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise _Unstorable(f"{number} is not a finite number (JSON and DynamoDB refuse it)")
    return number


def _timestamp(value: Any) -> str | None:
    if value is pd.NaT:  # pandas' NaT is a datetime
        return None
    if value.tzinfo is None:
        raise _Unstorable(
            f"naive timestamp {value} (no timezone): localize the column first, e.g. "
            "df[col] = df[col].dt.tz_localize('UTC')"
        )
    if isinstance(value, pd.Timestamp) and value.nanosecond:
        raise _Unstorable(f"timestamp {value} has nanoseconds; stored timestamps keep microseconds")
    utc: dt.datetime = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _date(value: dt.date) -> str:
    return value.isoformat()


def _decimal(value: Decimal) -> str | None:
    if value.is_nan():
        return None
    if value.is_infinite():
        raise _Unstorable(f"{value} is not a finite number")
    return str(value)


def _mapping(value: dict[Any, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise _Unstorable(f"nested dict key {name!r} is not a str")
        converted[name] = convert_value(item)
    return converted


def _sequence(value: Sequence[Any] | np.ndarray[Any, Any]) -> list[Any]:
    return [convert_value(item) for item in value]


_EXACT: Final[dict[type, Callable[[Any], Any]]] = {
    str: _same,
    bool: _same,
    int: _integer,
    float: _float,
    type(None): _missing,
    dict: _mapping,
    list: _sequence,
}
# Checked in order after the exact types: bool before int (bool is an int), datetime before date.
_BY_KIND: Final[tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...]] = (
    (str, str),
    ((bool, np.bool_), bool),
    ((int, np.integer), _integer),
    ((float, np.floating), _float),
    (dt.datetime, _timestamp),
    (np.datetime64, lambda value: _timestamp(pd.Timestamp(value))),
    (dt.date, _date),
    (Decimal, _decimal),
    (dict, _mapping),
    ((list, tuple, np.ndarray), _sequence),
)


def row_sort_key(values: Sequence[str | int]) -> str:
    """The sort key of a row whose key columns hold ``values`` (already converted).

    Each value is written as text (an int in decimal), ``\\`` and ``#`` inside it escaped
    with a backslash, and the parts joined with ``#``: distinct values never give the same
    key. Integers sort as text (``"10" < "9"``); zero-pad them first if order matters.

    >>> row_sort_key(["acct#1", 42])
    'acct\\\\#1#42'
    """
    return KEY_SEPARATOR.join(_key_part(value) for value in values)


def _key_part(value: str | int) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace(KEY_SEPARATOR, "\\" + KEY_SEPARATOR)


def key_value(value: Any, *, position: int, label: Hashable, column: str) -> str | int:
    """A converted key column value, if it can be part of a key."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    reason = (
        "a key column value is missing"
        if value is None
        else f"a key column value must be text, an integer, a timestamp or a Decimal, got {value!r}"
    )
    raise FrameValueError(reason, position=position, label=label, column=column)
