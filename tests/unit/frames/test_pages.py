"""write_pages: CSV and Parquet streamed page by page, into a file that appears only when done."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from stalwart.frames import file_format, write_pages

PAGES = [
    pd.DataFrame({"id": ["a", "b"], "cents": [1, 2], "meta": [{"k": 1}, None]}),
    pd.DataFrame({"id": ["c"], "cents": [3], "meta": [{"other": ["x", "é"]}]}),
]


def test_csv_header_once_and_nested_values_as_json(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    assert write_pages(PAGES, out) == 3
    assert out.read_text(encoding="utf-8").splitlines() == [
        "id,cents,meta",
        'a,1,"{""k"":1}"',
        "b,2,",
        'c,3,"{""other"":[""x"",""é""]}"',
    ]


def test_parquet_keeps_every_page_and_every_nested_key(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    assert write_pages(iter(PAGES), out) == 3
    assert pq.read_table(out).to_pylist() == [
        {"id": "a", "cents": 1, "meta": '{"k":1}'},
        {"id": "b", "cents": 2, "meta": None},
        {"id": "c", "cents": 3, "meta": '{"other":["x","é"]}'},
    ]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_later_page_missing_a_column_is_written_empty(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"t{suffix}"
    pages = [pd.DataFrame({"a": [1], "b": ["x"]}), pd.DataFrame({"a": [2]})]
    assert write_pages(pages, out) == 2
    back = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert back["a"].tolist() == [1, 2]
    assert back["b"].tolist()[0] == "x"
    assert pd.isna(back["b"].tolist()[1])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_new_column_on_a_later_page_is_refused(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"t{suffix}"
    with pytest.raises(ValueError, match=r"columns the first page did not: \['b'\]"):
        write_pages([pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [2], "b": [3]})], out)
    assert list(tmp_path.iterdir()) == []


def test_parquet_type_change_names_the_problem_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    with pytest.raises(ValueError, match="does not fit the Parquet schema"):
        write_pages([pd.DataFrame({"a": [1]}), pd.DataFrame({"a": ["x"]})], out)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_leaves_no_file_that_looks_complete(tmp_path: Path) -> None:
    def pages() -> Iterator[pd.DataFrame]:
        yield PAGES[0]
        raise RuntimeError("store went away")

    out = tmp_path / "t.parquet"
    out.write_text("previous export")
    with pytest.raises(RuntimeError):
        write_pages(pages(), out)
    assert out.read_text() == "previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_no_pages_gives_an_empty_readable_file(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"t{suffix}"
    assert write_pages([], out) == 0
    if suffix == ".parquet":
        assert pq.read_table(out).num_rows == 0
    else:
        assert out.read_text() == ""


def test_format_from_suffix_or_argument(tmp_path: Path) -> None:
    assert file_format("x.CSV") == "csv"
    assert file_format("x.pq") == "parquet"
    assert file_format("x.dat", "csv") == "csv"
    with pytest.raises(ValueError, match="cannot tell the format"):
        file_format("x.json")
    with pytest.raises(ValueError, match="format must be"):
        write_pages([], tmp_path / "x.csv", format="xlsx")  # type: ignore[arg-type]
