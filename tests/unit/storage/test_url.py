# Copyright 2026 stalwart contributors
"""URL mistakes are StoreConfigurationError (a ValueError) that say what is known."""

from __future__ import annotations

import pytest

from stalwart.storage import (
    InvalidRecord,
    StoreConfigurationError,
    StoreUnavailable,
    open_async_store,
    open_store,
)
from stalwart.storage._url import (
    flag,
    one_of,
    positive_number,
    split_url_options,
    url_options,
    whole_number,
)


@pytest.mark.parametrize("opener", [open_store, open_async_store])
@pytest.mark.parametrize("url", ["postgres://u:secret@db/app", "sqlite3:///a.db", "nothing"])
def test_an_unknown_scheme_is_a_configuration_error_listing_the_known_ones(opener, url):
    with pytest.raises(StoreConfigurationError) as caught:
        opener(url)
    message = str(caught.value)
    assert "known: dynamodb, mongodb, mongodb+srv, redis, rediss, sqlite" in message
    assert "secret" not in message  # the URL may hold a password: it is not repeated
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, InvalidRecord | StoreUnavailable)


def test_url_options_returns_known_options_and_rejects_the_rest():
    assert url_options("x://h/p?a=1&b=", ("a", "b", "c"), engine="x") == {"a": "1", "b": ""}
    with pytest.raises(
        StoreConfigurationError, match=r"unknown x URL option\(s\) 'd', 'e'; known: a, b"
    ):
        url_options("x://h/p?a=1&d=2&e=3&d=4", ("b", "a"), engine="x")
    with pytest.raises(StoreConfigurationError, match="'a' is given twice"):
        url_options("x://h/p?a=1&a=2", ("a",), engine="x")


def test_split_url_options_passes_the_others_through_in_order():
    ours, others = split_url_options("x://h/p?t=1&z=2&y=3&z=4", ("t",), engine="x")
    assert ours == {"t": "1"}
    assert others == [("z", "2"), ("y", "3"), ("z", "4")]


def test_value_parsers():
    assert positive_number("t", "0.5") == 0.5
    assert whole_number("n", "3", low=0, high=5) == 3
    assert flag("f", "YES") is True
    assert flag("f", "off") is False
    assert one_of("s", "FULL", ("normal", "full")) == "full"
    for bad in (
        lambda: positive_number("t", "0"),
        lambda: positive_number("t", "nan"),
        lambda: positive_number("t", "soon"),
        lambda: whole_number("n", "1.5"),
        lambda: whole_number("n", "6", high=5),
        lambda: whole_number("n", "0"),
        lambda: flag("f", "maybe"),
        lambda: one_of("s", "sometimes", ("normal",)),
    ):
        with pytest.raises(StoreConfigurationError):
            bad()
