# Copyright 2026 stalwart contributors
"""The SQLite engine's pure half: bounds, cursors, statement building."""

from __future__ import annotations

import doctest
import importlib

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
from stalwart.storage._query import encode_cursor
from stalwart.storage._sqlite_sql import (
    StepKind,
    plan_query,
    prepare,
    statements,
    validate_table,
)

SQL = statements("records")


def test_query_plan_fetches_one_extra_row_and_picks_the_statement():
    plan = plan_query(
        SQL, "p", prefix="ab", limit=10, cursor=encode_cursor("p", "abc"), descending=True, now=5.0
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
    ["stalwart.storage.sqlite", "stalwart.storage._sqlite"],
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
