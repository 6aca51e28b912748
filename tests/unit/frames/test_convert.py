"""One test per conversion rule of docs/frames.md, and errors that name the row and column."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stalwart.frames import FrameValueError, iter_frames, row_sort_key, write_frame
from stalwart.frames._convert import convert_column
from stalwart.storage import Key, open_store


def stored(values: list[Any], dtype: Any = None) -> list[Any]:
    """Write one column through write_frame on SQLite and read the records back."""
    store = open_store("sqlite:///:memory:?table=t")
    frame = pd.DataFrame({"id": range(len(values)), "v": pd.Series(values, dtype=dtype)})
    write_frame(store, frame, partition="p", key_columns=["id"])
    return [store.get(Key("p", str(n))).data["v"] for n in range(len(values))]  # type: ignore[union-attr]


def test_numpy_ints_floats_bools_become_python_values() -> None:
    assert stored([np.int8(1), np.int64(-(2**63)), np.uint32(7)], object) == [1, -(2**63), 7]
    values = stored([np.float32(1.5), np.float64(2.25)], object)
    assert values == [1.5, 2.25]
    assert [type(v) for v in values] == [float, float]
    assert stored([np.bool_(True), np.bool_(False)], object) == [True, False]
    assert stored([1, 2], "int64") == [1, 2]
    assert stored([True, False], "bool") == [True, False]


def test_missing_values_are_stored_as_null_in_every_dtype() -> None:
    assert stored([1.5, np.nan]) == [1.5, None]
    assert stored([1, None], "Int64") == [1, None]
    assert stored([True, None], "boolean") == [True, None]
    assert stored(["x", None], "string") == ["x", None]
    assert stored(["x", None]) == ["x", None]
    assert stored([pd.Timestamp("2026-01-01", tz="UTC"), pd.NaT]) == [
        "2026-01-01T00:00:00.000000Z",
        None,
    ]
    assert stored([None, pd.NA, pd.NaT, float("nan"), Decimal("NaN")], object) == [None] * 5
    assert stored([1.5, None], "float64[pyarrow]") == [1.5, None]


def test_aware_timestamps_become_iso_utc_with_microseconds() -> None:
    paris = pd.Timestamp("2026-03-01T10:00:00.25", tz="Europe/Paris")
    assert stored([paris]) == ["2026-03-01T09:00:00.250000Z"]
    aware = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert stored([aware], object) == ["2026-03-01T15:00:00.000000Z"]


def test_dates_become_iso_dates() -> None:
    assert stored([dt.date(2026, 3, 1)], object) == ["2026-03-01"]


def test_decimals_are_stored_exactly_as_text() -> None:
    assert stored([Decimal("1.10"), Decimal(-3), Decimal("1E+2")], object) == [
        "1.10",
        "-3",
        "1E+2",
    ]


def test_nested_values_are_converted_recursively() -> None:
    nested = {"a": [np.int64(1), np.nan, {"t": pd.Timestamp("2026-01-01", tz="UTC")}], "b": (1,)}
    assert stored([nested, np.array([1.5, 2.0])], object) == [
        {"a": [1, None, {"t": "2026-01-01T00:00:00.000000Z"}], "b": [1]},
        [1.5, 2.0],
    ]


def error_for(frame: pd.DataFrame, *, written: int = 0) -> FrameValueError:
    """The error writing ``frame``; only the ``written`` rows before its block were stored."""
    store = open_store("sqlite:///:memory:?table=t")
    with pytest.raises(FrameValueError) as caught:
        write_frame(store, frame, partition="p", key_columns=["id"])
    stored_rows = sum(len(page) for page in iter_frames(store, "p"))
    assert stored_rows == written, "nothing of the failing block may be written"
    return caught.value


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (float("inf"), "not a finite number"),
        (np.float32("-inf"), "not a finite number"),
        (Decimal("Infinity"), "not a finite number"),
        (np.uint64(2**63), "outside the signed 64-bit range"),
        (2**70, "outside the signed 64-bit range"),
        (pd.Timestamp("2026-01-01"), "naive timestamp"),
        (dt.datetime(2026, 1, 1), "naive timestamp"),  # noqa: DTZ001 - the naive value under test
        (np.datetime64("2026-01-01"), "naive timestamp"),
        (pd.Timestamp("2026-01-01T00:00:00.000000001", tz="UTC"), "nanoseconds"),
        (b"bytes", "bytes value b'bytes' has no storage rule"),
        (pd.Timedelta(1, "s"), "Timedelta value"),
        (pd.Period("2026-01"), "Period value"),
        ({1: "x"}, "nested dict key 1 is not a str"),
        ([1, float("inf")], "not a finite number"),
        (object(), "has no storage rule"),
    ],
)
def test_unstorable_values_name_row_label_and_column(bad: Any, reason: str) -> None:
    frame = pd.DataFrame({"id": [1, 2, 3], "v": [0, 0, 0]}, index=["x", "y", "z"]).astype(
        {"v": object}
    )
    frame.at["z", "v"] = bad  # noqa: PD008 - sets one cell even to a list; .loc would spread it
    error = error_for(frame)
    assert (error.position, error.label, error.column) == (2, "z", "v")
    assert reason in str(error)
    assert str(error).startswith("row 2 (index label 'z'), column 'v': ")


def test_error_position_counts_from_the_frame_start_past_the_first_block() -> None:
    values = np.zeros(6_000)
    values[5_500] = np.inf
    # the first block (5,000 rows, validated together) was written before the second failed
    error = error_for(pd.DataFrame({"id": range(6_000), "v": values}), written=5_000)
    assert (error.position, error.label, error.column) == (5_500, 5_500, "v")


def test_infinite_float_column_names_the_first_bad_row() -> None:
    error = error_for(pd.DataFrame({"id": [1, 2], "v": [1.0, -np.inf]}))
    assert (error.position, error.column) == (1, "v")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "key column value is missing"),
        (1.5, "must be text, an integer, a timestamp or a Decimal"),
        (True, "must be text, an integer"),
        ("x" * 2000, "its key is invalid"),
        ("nul\x00", "its key is invalid"),
    ],
)
def test_bad_key_values_name_the_row(key: Any, reason: str) -> None:
    frame = pd.DataFrame({"id": pd.Series(["a", key], dtype=object), "v": [1, 2]})
    error = error_for(frame)
    assert (error.position, error.label) == (1, 1)
    assert reason in str(error)


def test_row_over_the_engine_item_limit_names_the_row() -> None:
    store = open_store("sqlite:///:memory:?table=t&max_item_bytes=100")
    frame = pd.DataFrame({"id": ["a", "b", "c"], "v": ["x", "y" * 200, "z"]})
    with pytest.raises(FrameValueError, match=r"row 1 \(index label 1\): data is \d+ bytes"):
        write_frame(store, frame, partition="p", key_columns=["id"])
    assert store.query("p").records == []


def test_sort_keys_escape_the_separator_so_distinct_values_never_collide() -> None:
    assert row_sort_key(["a#b", "c"]) != row_sort_key(["a", "b#c"])
    assert row_sort_key(["a\\", "#"]) != row_sort_key(["a\\#", ""])
    assert row_sort_key(["a\\#", ""]) == "a\\\\\\##"
    assert row_sort_key([7, "x"]) == "7#x"


def test_key_columns_may_be_timestamps_and_decimals() -> None:
    store = open_store("sqlite:///:memory:?table=t")
    frame = pd.DataFrame(
        {"day": [pd.Timestamp("2026-01-01", tz="UTC")], "amount": [Decimal("1.5")], "v": [1]}
    )
    write_frame(store, frame, partition="p", key_columns=["day", "amount"])
    assert store.get(Key("p", "2026-01-01T00:00:00.000000Z#1.5")) is not None


def test_convert_column_is_positional() -> None:
    assert convert_column(np.array([1, 2]), pd.Index(["a", "b"]), "c", first=10) == [1, 2]
    with pytest.raises(FrameValueError) as caught:
        convert_column([1, b"x"], pd.Index(["a", "b"]), "c", first=10)
    assert (caught.value.position, caught.value.label) == (11, "b")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"key_columns": []}, ValueError, "non-empty sequence"),
        ({"key_columns": "id"}, ValueError, "non-empty sequence"),
        ({"key_columns": ["nope"]}, ValueError, r"\['nope'\] are not columns"),
        ({"key_columns": ["id"], "chunk_rows": 0}, ValueError, "chunk_rows must be"),
        ({"key_columns": ["id"], "chunk_rows": 101}, ValueError, "chunk_rows must be"),
        ({"key_columns": ["id"], "on_conflict": "overwrite"}, ValueError, "on_conflict must"),
    ],
)
def test_bad_arguments_are_refused_before_any_write(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    store = open_store("sqlite:///:memory:?table=t")
    with pytest.raises(error, match=match):
        write_frame(store, pd.DataFrame({"id": [1]}), partition="p", **kwargs)


def test_column_names_must_be_unique_str() -> None:
    store = open_store("sqlite:///:memory:?table=t")
    with pytest.raises(TypeError, match="column names must be str"):
        write_frame(store, pd.DataFrame({0: [1]}), partition="p", key_columns=[0])  # type: ignore[list-item]
    frame = pd.DataFrame([[1, 2]], columns=["id", "id"])
    with pytest.raises(ValueError, match="column names repeat"):
        write_frame(store, frame, partition="p", key_columns=["id"])
