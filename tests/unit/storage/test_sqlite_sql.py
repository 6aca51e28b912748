# Copyright 2026 stalwart contributors
"""The SQLite engine's pure half: bounds, cursors, statement building."""

from __future__ import annotations

import doctest
import importlib
import random

import pytest

from stalwart.storage import (
    Check,
    Create,
    Delete,
    Increment,
    InvalidRecord,
    Key,
    Replace,
    StoreConfigurationError,
)
from stalwart.storage._sqlite_sql import (
    StepKind,
    decode_cursor,
    encode_cursor,
    plan_query,
    prefix_upper_bound,
    prepare,
    statements,
    validate_table,
)

SQL = statements("records")


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        ("", None),
        ("a", "b"),
        ("ab", "ac"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff\U0010ffff", None),
        ("a\ud7ff", "a\ue000"),
        ("z\uffff", "z\U00010000"),
    ],
)
def test_prefix_upper_bound(prefix, bound):
    assert prefix_upper_bound(prefix) == bound


def test_prefix_range_matches_startswith_in_utf8_order():
    rng = random.Random(7)
    alphabet = [
        "a",
        "b",
        "\x7f",
        "\x80",
        "é",
        "\ud7ff",
        "\ue000",
        "\uffff",
        "\U00010000",
        "\U0010ffff",
    ]
    words = {"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(400)}
    for prefix in list(words)[:60]:
        high = prefix_upper_bound(prefix)
        for word in words:
            encoded = word.encode()
            in_range = encoded >= prefix.encode() and (high is None or encoded < high.encode())
            assert in_range == word.startswith(prefix), (prefix, word)


@pytest.mark.parametrize("sort", ["", "a", "é中😀", "x" * 1024])
def test_cursor_round_trip(sort):
    cursor = encode_cursor(sort)
    assert cursor.isascii()
    assert decode_cursor(cursor) == sort


@pytest.mark.parametrize("cursor", ["!!!", "a", "gA==", 5])
def test_foreign_cursor_is_invalid(cursor):
    with pytest.raises(InvalidRecord):
        decode_cursor(cursor)


def test_query_plan_fetches_one_extra_row_and_picks_the_statement():
    plan = plan_query(
        SQL, "p", prefix="ab", limit=10, cursor=encode_cursor("abc"), descending=True, now=5.0
    )
    assert plan.limit == 10
    assert plan.params == {
        "partition": "p",
        "low": "ab",
        "high": "ac",
        "now": 5.0,
        "limit": 11,
        "cursor": "abc",
    }
    assert "ORDER BY sort DESC" in plan.sql
    assert "sort < :cursor" in plan.sql
    unbounded = plan_query(SQL, "p", prefix="", limit=1, cursor=None, descending=False, now=0)
    assert ":high" not in unbounded.sql
    assert ":cursor" not in unbounded.sql


@pytest.mark.parametrize(
    ("operation", "kind"),
    [
        (Create(Key("p"), {}), StepKind.CREATE),
        (Replace(Key("p"), {}, 3), StepKind.REPLACE),
        (Delete(Key("p")), StepKind.DELETE),
        (Delete(Key("p"), 2), StepKind.DELETE_IF),
        (Check(Key("p"), None), StepKind.CHECK_ABSENT),
        (Check(Key("p"), 1), StepKind.CHECK_VERSION),
        (Increment(Key("p"), "n", 2), StepKind.INCREMENT),
    ],
)
def test_prepare_picks_one_statement_per_operation(operation, kind):
    step = prepare(operation, SQL, 100.0, 1000)
    assert step.kind is kind
    assert step.sql.count(";") == 0
    assert step.params["now"] == 100.0


def test_prepare_validates_before_anything_runs():
    with pytest.raises(InvalidRecord):
        prepare(Create(Key("p"), {"x": "y" * 100}), SQL, 0, 50)
    with pytest.raises(InvalidRecord):
        prepare(Check(Key("p"), 0), SQL, 0, 50)
    with pytest.raises(InvalidRecord):
        prepare("nope", SQL, 0, 50)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "1abc", "a-b", 'a"b', "a b", "x" * 64, None])
def test_table_names_must_be_identifiers(name):
    with pytest.raises(StoreConfigurationError, match="table name"):
        validate_table(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "module",
    ["stalwart.storage.sqlite", "stalwart.storage._sqlite", "stalwart.storage._sqlite_sql"],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0
    assert result.failed == 0


def test_public_module_exports_what_it_lists():
    sqlite = importlib.import_module("stalwart.storage.sqlite")
    assert sorted(sqlite.__all__) == sorted(
        name for name in vars(sqlite) if not name.startswith("_") and name != "annotations"
    )
