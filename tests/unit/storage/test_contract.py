"""The shared validation every engine runs before any I/O."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from stalwart.storage import Check, Create, Delete, Increment, InvalidRecord, Key, Replace
from stalwart.storage._contract import (
    MAX_KEY_PART_CHARS,
    MAX_TTL_S,
    TransactionConflict,
    VersionConflict,
    encode_data,
    expiry_from_ttl,
    integer_sum_overflows,
    stored_copy,
    validate_amount,
    validate_field,
    validate_key,
    validate_operations,
    validate_version,
)


@pytest.mark.parametrize(
    "key",
    [
        Key(""),
        Key("p", "x" * (MAX_KEY_PART_CHARS + 1)),
        Key("x" * (MAX_KEY_PART_CHARS + 1)),
        Key("p\x00q"),
        Key(123, "s"),  # type: ignore[arg-type]
        ("p", "s"),
    ],
)
def test_bad_keys_are_rejected(key: object) -> None:
    with pytest.raises(InvalidRecord):
        validate_key(key)  # type: ignore[arg-type]


def test_good_key_passes_unchanged() -> None:
    key = Key("p", "x" * MAX_KEY_PART_CHARS)
    assert validate_key(key) is key


@pytest.mark.parametrize(
    "data",
    [
        {"a": {1, 2}},
        {"a": math.nan},
        {"a": math.inf},
        ["not", "an", "object"],
        "text",
        {"o": object()},
        {1: "int key"},
        {"a": {None: "null key"}},
        {"a": [{"b": {True: "bool key"}}]},
        {"a": {1.5: "float key"}},
        {"1": "b", 1: "a"},
        {"big": 2**63},
        {"small": [-(2**63) - 1]},
        {"deep": {"n": (1, 2**70)}},
    ],
)
def test_non_json_data_is_rejected(data: object) -> None:
    with pytest.raises(InvalidRecord):
        encode_data(data, max_bytes=1000)  # type: ignore[arg-type]


def test_encode_data_is_compact_and_bounded() -> None:
    assert encode_data({"a": 1, "b": "é"}, max_bytes=100) == '{"a":1,"b":"é"}'
    with pytest.raises(InvalidRecord, match="limit is 10"):
        encode_data({"a": "x" * 20}, max_bytes=10)


@pytest.mark.parametrize("name", ["", "a.b", "$set", "a[0]", "x" * 256, 5])
def test_bad_increment_fields(name: object) -> None:
    with pytest.raises(InvalidRecord):
        validate_field(name)  # type: ignore[arg-type]


def test_str_subclass_keys_and_64_bit_integers_are_accepted() -> None:
    key = type("K", (str,), {})("k")
    assert encode_data({key: [2**63 - 1, -(2**63)]}, max_bytes=100) == (
        '{"k":[9223372036854775807,-9223372036854775808]}'
    )


@pytest.mark.parametrize("amount", [True, math.nan, math.inf, "1", None, 2**63, -(2**63) - 1])
def test_bad_increment_amounts(amount: object) -> None:
    with pytest.raises(InvalidRecord):
        validate_amount(amount)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [0, -1, True, 1.0, "1", 2**63])
def test_bad_versions(version: object) -> None:
    with pytest.raises(InvalidRecord):
        validate_version(version)  # type: ignore[arg-type]


def test_ttl_becomes_absolute_expiry() -> None:
    assert expiry_from_ttl(None, 100.0) is None
    assert expiry_from_ttl(5, 100.0) == 105.0
    assert expiry_from_ttl(MAX_TTL_S, 0.0) == MAX_TTL_S == 100 * 365.25 * 86_400
    for bad in (0, -1, True, "5", math.nan, math.inf, -math.inf, MAX_TTL_S + 1, 10**400):
        with pytest.raises(InvalidRecord):
            expiry_from_ttl(bad, 100.0)  # type: ignore[arg-type]


def test_integer_sum_overflows_only_past_the_signed_64_bit_range() -> None:
    top = 2**63 - 1
    assert not integer_sum_overflows(top - 1, 1)
    assert integer_sum_overflows(top, 1)
    assert integer_sum_overflows(-(2**63), -1)
    assert not integer_sum_overflows(float(top), 1)  # a float counter is a float sum
    assert not integer_sum_overflows(top, 1.0)


def test_transaction_shape_is_checked() -> None:
    ops = [
        Create(Key("a"), {}),
        Replace(Key("b"), {}, 1),
        Delete(Key("c")),
        Check(Key("d"), None),
        Increment(Key("e"), "n"),
    ]
    validate_operations(ops, max_items=5)
    with pytest.raises(InvalidRecord, match="at most 4"):
        validate_operations(ops, max_items=4)
    with pytest.raises(InvalidRecord, match="at least one"):
        validate_operations([], max_items=4)
    with pytest.raises(InvalidRecord, match="once"):
        validate_operations([Delete(Key("a")), Check(Key("a"), 1)], max_items=4)


def test_error_messages_say_what_happened() -> None:
    conflict = VersionConflict(Key("p", "s"), 3, None)
    assert "expected version 3" in str(conflict)
    assert "absent" in str(conflict)
    failed = TransactionConflict(2, Delete(Key("p")), "version mismatch")
    assert "item 2" in str(failed)
    assert "Delete" in str(failed)


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": "x", "c": -0.0, "d": False, "e": None, "f": 2**63 - 1, "g": -(2**63)},
        {"a": (1, 2)},
        {"a": {"b": [1, {"c": None}]}},
        {"s": type("S", (str,), {})("sub")},
        {},
    ],
)
def test_stored_copy_equals_the_json_round_trip(data: dict[Any, Any]) -> None:
    encoded = encode_data(data, max_bytes=10_000)
    copied = stored_copy(data, encoded)
    parsed = json.loads(encoded)
    assert copied == parsed
    assert [type(v) for v in copied.values()] == [type(v) for v in parsed.values()]
    assert list(copied) == list(parsed)
    assert copied is not data


def test_stored_copy_of_data_nested_past_the_recursion_limit_is_the_parse() -> None:
    data: dict[str, Any] = {"v": None}
    # Past Python's recursion limit (1000), within what CPython 3.12's C encoder accepts.
    for _ in range(1200):
        data = {"v": data}
    encoded = encode_data(data, max_bytes=10**6)
    assert stored_copy(data, encoded) == json.loads(encoded)
