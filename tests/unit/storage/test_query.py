"""What every engine's query shares: argument checks, cursors and prefix bounds."""

from __future__ import annotations

import doctest
import importlib
import random

import pytest

from stalwart.storage import InvalidRecord
from stalwart.storage._query import (
    MAX_QUERY_LIMIT,
    check_query,
    decode_cursor,
    encode_cursor,
    prefix_upper_bound,
)


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        ("", None),
        ("a", "b"),
        ("ab", "ac"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff", None),
        ("\U0010ffff\U0010ffff", None),
        ("a\ud7ff", "a\ue000"),  # skips the surrogate block
        ("z\uffff", "z\U00010000"),
    ],
)
def test_prefix_upper_bound(prefix, bound):
    assert prefix_upper_bound(prefix) == bound


def test_prefix_range_matches_startswith_in_utf8_order():
    """Engines compare sort keys by UTF-8 bytes: [prefix, bound) holds exactly the strings
    that start with the prefix."""
    rng = random.Random(7)
    alphabet = ["a", "b", "\x7f", "\x80", "é", "\ud7ff", "\ue000", "\uffff", "\U00010000"]
    alphabet.append("\U0010ffff")
    words = {"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(400)}
    for prefix in list(words)[:60]:
        high = prefix_upper_bound(prefix)
        for word in words:
            encoded = word.encode()
            in_range = encoded >= prefix.encode() and (high is None or encoded < high.encode())
            assert in_range == word.startswith(prefix), (prefix, word)


@pytest.mark.parametrize("sort", ["", "a", "é中😀", "a b+c/d=", "x\x00y", "x" * 1024])
def test_cursor_round_trips(sort):
    cursor = encode_cursor("p", sort)
    assert cursor.isascii()
    assert decode_cursor(cursor, "p") == sort


@pytest.mark.parametrize("cursor", ["", "!!!", "***", "%%", "/w==", "gA==", "e30=", "YQ", 5, None])
def test_a_cursor_we_did_not_issue_is_invalid(cursor):
    with pytest.raises(InvalidRecord):
        decode_cursor(cursor, "p")


def test_a_cursor_of_another_partition_is_invalid():
    with pytest.raises(InvalidRecord, match="another query"):
        decode_cursor(encode_cursor("p", "k1"), "q")


@pytest.mark.parametrize("limit", [0, -1, MAX_QUERY_LIMIT + 1, True, 2.0, "10"])
def test_limit_out_of_range_is_invalid(limit):
    with pytest.raises(InvalidRecord, match="limit"):
        check_query("p", "", limit)


@pytest.mark.parametrize(("partition", "prefix"), [("", ""), ("p", "a\x00"), ("p", "x" * 1025)])
def test_bad_partition_or_prefix_is_invalid(partition, prefix):
    with pytest.raises(InvalidRecord):
        check_query(partition, prefix, 10)


def test_limits_at_the_bounds_are_accepted():
    check_query("p", "", 1)
    check_query("p", "a", MAX_QUERY_LIMIT)


def test_docstring_examples_run():
    result = doctest.testmod(importlib.import_module("stalwart.storage._query"))
    assert result.attempted > 0
    assert result.failed == 0
