# Copyright 2026 stalwart contributors
"""Single-record operations: get, create, replace, delete, increment."""

from __future__ import annotations

from enum import IntEnum, StrEnum

import pytest

from stalwart.storage import (
    AlreadyExists,
    Create,
    InvalidRecord,
    Key,
    Replace,
    StorageError,
    VersionConflict,
)

DOC = {
    "name": "Zoë 中文 😀",
    "n": 42,
    "big": 2**53,
    "negative": -7,
    "half": 1.5,
    "precise": 0.1 + 0.2,
    "yes": True,
    "no": False,
    "nothing": None,
    "list": [1, "two", {"three": 3.25}, []],
    "nested": {"a": {"b": {"c": "deep"}}},
    "empty": {},
    'quote"key': "back\\slash",
}


async def test_get_absent_returns_none(store):
    assert await store.get(Key("nobody")) is None
    assert await store.get(Key("nobody", "sort")) is None


async def test_create_returns_version_1_and_round_trips_data(store):
    key = Key("acct-1", "profile")
    created = await store.create(key, DOC)
    assert created.key == key
    assert created.version == 1
    assert created.data == DOC
    assert created.expires_at is None
    fetched = await store.get(key)
    assert fetched is not None
    assert fetched.key == key
    assert fetched.data == DOC
    assert fetched.version == 1
    assert fetched.expires_at is None
    assert isinstance(fetched.data["big"], int)
    assert isinstance(fetched.data["precise"], float)


async def test_create_with_ttl_sets_expiry(store, clock):
    key = Key("acct-1", "session")
    created = await store.create(key, {"a": 1}, ttl=60)
    assert created.expires_at == pytest.approx(clock() + 60, abs=1e-3)
    fetched = await store.get(key)
    assert fetched is not None
    assert fetched.expires_at == pytest.approx(clock() + 60, abs=1e-3)


async def test_sort_keys_are_independent_and_default_to_empty(store):
    await store.create(Key("p"), {"which": "empty sort"})
    await store.create(Key("p", "a"), {"which": "a"})
    await store.create(Key("q", "a"), {"which": "q/a"})
    empty = await store.get(Key("p", ""))
    assert empty is not None
    assert empty.data == {"which": "empty sort"}
    a = await store.get(Key("p", "a"))
    assert a is not None
    assert a.data == {"which": "a"}
    qa = await store.get(Key("q", "a"))
    assert qa is not None
    assert qa.data == {"which": "q/a"}


async def test_create_over_live_record_raises_already_exists_with_current(store):
    key = Key("acct-1")
    await store.create(key, {"a": 1})
    await store.replace(key, {"a": 2}, expected_version=1)
    with pytest.raises(AlreadyExists) as caught:
        await store.create(key, {"a": 3})
    assert caught.value.key == key
    current = caught.value.current
    assert current is not None
    assert current.key == key
    assert current.version == 2
    assert current.data == {"a": 2}
    unchanged = await store.get(key)
    assert unchanged is not None
    assert (unchanged.version, unchanged.data) == (2, {"a": 2})


async def test_replace_bumps_version_each_time(store):
    key = Key("acct-1")
    await store.create(key, {"n": 0})
    for version in range(1, 6):
        replaced = await store.replace(key, {"n": version}, expected_version=version)
        assert replaced.key == key
        assert replaced.version == version + 1
        assert replaced.data == {"n": version}
        assert replaced.expires_at is None
    fetched = await store.get(key)
    assert fetched is not None
    assert (fetched.version, fetched.data) == (6, {"n": 5})


async def test_replace_with_wrong_version_raises_with_current(store):
    key = Key("acct-1")
    await store.create(key, {"n": 0})
    await store.replace(key, {"n": 1}, expected_version=1)
    for stale in (1, 3, 100):
        with pytest.raises(VersionConflict) as caught:
            await store.replace(key, {"n": 99}, expected_version=stale)
        assert caught.value.key == key
        assert caught.value.expected_version == stale
        current = caught.value.current
        assert current is not None
        assert (current.key, current.version, current.data) == (key, 2, {"n": 1})
    fetched = await store.get(key)
    assert fetched is not None
    assert (fetched.version, fetched.data) == (2, {"n": 1})


async def test_replace_absent_raises_with_no_current(store):
    key = Key("acct-1")
    with pytest.raises(VersionConflict) as caught:
        await store.replace(key, {"n": 1}, expected_version=1)
    assert caught.value.current is None
    assert caught.value.expected_version == 1
    assert await store.get(key) is None


async def test_replace_ttl_none_clears_expiry_and_ttl_sets_it(store, clock):
    key = Key("acct-1")
    await store.create(key, {"n": 0}, ttl=60)
    cleared = await store.replace(key, {"n": 1}, expected_version=1)
    assert cleared.expires_at is None
    fetched = await store.get(key)
    assert fetched is not None
    assert fetched.expires_at is None
    with_ttl = await store.replace(key, {"n": 2}, expected_version=2, ttl=30)
    assert with_ttl.expires_at == pytest.approx(clock() + 30, abs=1e-3)
    fetched = await store.get(key)
    assert fetched is not None
    assert fetched.expires_at == pytest.approx(clock() + 30, abs=1e-3)


async def test_delete_without_version(store):
    key = Key("acct-1", "x")
    await store.create(key, {"n": 0})
    assert await store.delete(key) is True
    assert await store.get(key) is None
    assert await store.delete(key) is False
    assert await store.delete(Key("never", "there")) is False


async def test_delete_with_version(store):
    key = Key("acct-1")
    await store.create(key, {"n": 0})
    await store.replace(key, {"n": 1}, expected_version=1)
    with pytest.raises(VersionConflict) as caught:
        await store.delete(key, expected_version=1)
    assert caught.value.expected_version == 1
    current = caught.value.current
    assert current is not None
    assert (current.version, current.data) == (2, {"n": 1})
    assert await store.get(key) is not None
    assert await store.delete(key, expected_version=2) is True
    assert await store.get(key) is None
    with pytest.raises(VersionConflict) as absent:
        await store.delete(key, expected_version=2)
    assert absent.value.current is None


async def test_delete_then_create_restarts_at_version_1(store):
    key = Key("acct-1")
    await store.create(key, {"n": 0})
    await store.replace(key, {"n": 1}, expected_version=1)
    assert await store.delete(key)
    again = await store.create(key, {"fresh": True})
    assert (again.version, again.data) == (1, {"fresh": True})


async def test_increment_creates_missing_record(store, clock):
    key = Key("counters", "hits")
    record = await store.increment(key, "hits", 5)
    assert record.key == key
    assert record.data == {"hits": 5}
    assert record.version == 1
    assert record.expires_at is None
    assert type(record.data["hits"]) is int
    with_ttl = await store.increment(Key("counters", "ttl"), "hits", ttl=30)
    assert with_ttl.data == {"hits": 1}
    assert with_ttl.expires_at == pytest.approx(clock() + 30, abs=1e-3)
    fetched = await store.get(key)
    assert fetched is not None
    assert (fetched.data, fetched.version) == ({"hits": 5}, 1)


async def test_increment_existing_record_keeps_other_fields_and_expiry(store, clock):
    key = Key("counters", "mixed")
    created = await store.create(key, {"n": 1, "other": "kept", "nested": {"n": 7}}, ttl=100)
    clock.advance(10)
    record = await store.increment(key, "n", 2, ttl=5)
    assert record.data == {"n": 3, "other": "kept", "nested": {"n": 7}}
    assert record.version == 2
    assert created.expires_at is not None
    assert record.expires_at == pytest.approx(created.expires_at, abs=1e-3)
    record = await store.increment(key, "fresh")
    assert record.data == {"n": 3, "other": "kept", "nested": {"n": 7}, "fresh": 1}
    assert record.version == 3
    fetched = await store.get(key)
    assert fetched is not None
    assert (fetched.data, fetched.version) == (record.data, 3)
    assert fetched.expires_at == pytest.approx(created.expires_at, abs=1e-3)


async def test_increment_number_types(store):
    key = Key("counters", "types")
    await store.create(key, {"i": 10, "f": 1.5})
    record = await store.increment(key, "i", -3)
    assert record.data["i"] == 7
    assert type(record.data["i"]) is int
    record = await store.increment(key, "f", 0.25)
    assert record.data["f"] == pytest.approx(1.75)
    assert isinstance(record.data["f"], float)
    record = await store.increment(key, "i", 0.5)
    assert record.data["i"] == pytest.approx(7.5)
    fetched = await store.get(key)
    assert fetched is not None
    assert fetched.data["i"] == pytest.approx(7.5)
    assert fetched.data["f"] == pytest.approx(1.75)
    assert fetched.version == 4


@pytest.mark.parametrize(
    "value", ["text", True, None, [1], {"a": 1}], ids=["str", "bool", "null", "list", "object"]
)
async def test_increment_non_numeric_field_is_invalid_and_writes_nothing(store, value):
    key = Key("counters", "bad")
    await store.create(key, {"n": value, "other": 1})
    with pytest.raises(InvalidRecord):
        await store.increment(key, "n", 1)
    fetched = await store.get(key)
    assert fetched is not None
    assert (fetched.data, fetched.version) == ({"n": value, "other": 1}, 1)


async def test_increment_bumps_version_so_a_stale_replace_conflicts(store):
    key = Key("counters", "guarded")
    read = await store.create(key, {"n": 0, "label": "a"})
    await store.increment(key, "n")
    with pytest.raises(VersionConflict) as caught:
        await store.replace(key, {**read.data, "label": "b"}, expected_version=read.version)
    current = caught.value.current
    assert current is not None
    assert (current.version, current.data) == (2, {"n": 1, "label": "a"})


async def test_errors_share_one_root(store):
    key = Key("acct-1")
    await store.create(key, {})
    with pytest.raises(StorageError):
        await store.create(key, {})
    with pytest.raises(StorageError):
        await store.replace(key, {}, expected_version=9)


async def test_two_clients_on_one_table_see_each_other(store, open_facade):
    other = open_facade(store.url)
    try:
        key = Key("shared", "doc")
        await store.create(key, {"by": "first"})
        seen = await other.get(key)
        assert seen is not None
        assert seen.data == {"by": "first"}
        await other.replace(key, {"by": "second"}, expected_version=1)
        with pytest.raises(VersionConflict) as caught:
            await store.replace(key, {"by": "first again"}, expected_version=1)
        assert caught.value.current is not None
        assert caught.value.current.data == {"by": "second"}
        with pytest.raises(AlreadyExists):
            await other.create(key, {})
    finally:
        await other.close()


async def test_stores_on_different_tables_are_isolated(store, open_facade, store_url_factory):
    other = open_facade(store_url_factory(store.row)())
    try:
        key = Key("shared", "doc")
        await store.create(key, {"by": "first"})
        assert await other.get(key) is None
        assert (await other.query("shared")).records == []
        assert await other.delete(key) is False
        created = await other.create(key, {"by": "other"})
        assert created.version == 1
        mine = await store.get(key)
        assert mine is not None
        assert mine.data == {"by": "first"}
    finally:
        await other.close()


class Color(StrEnum):
    RED = "red"


class Size(IntEnum):
    BIG = 3


@pytest.mark.parametrize(
    ("data", "stored"),
    [
        # Flat dicts of plain scalars (the shallow-copy path) and everything else (a parse).
        ({"a": 1, "b": "x", "c": 1.5, "d": True, "e": None}, None),
        ({"color": Color.RED, "size": Size.BIG}, {"color": "red", "size": 3}),
        ({"pair": (1, 2)}, {"pair": [1, 2]}),
        ({"nested": {"t": (3,)}}, {"nested": {"t": [3]}}),
    ],
    ids=["flat-scalars", "enums", "tuple", "nested-tuple"],
)
async def test_written_data_is_returned_as_a_read_returns_it(store, data, stored):
    expected = data if stored is None else stored
    created = await store.create(Key("norm", "c"), data)
    replaced = await store.replace(Key("norm", "c"), data, expected_version=1)
    fetched = await store.get(Key("norm", "c"))
    assert fetched is not None
    # A transact returns its written records the same way.
    in_transact = await store.transact(
        [Create(Key("norm", "t"), data), Replace(Key("norm", "c"), data, expected_version=2)]
    )
    assert None not in in_transact
    for record in (created, replaced, fetched, *in_transact):
        assert record is not None
        assert record.data == expected
        # Exact types as well: an enum member must come back as the plain value.
        assert [type(v) for v in record.data.values()] == [type(v) for v in expected.values()]


async def test_returned_data_is_a_copy_of_the_callers_dict(store):
    data: dict[str, object] = {"n": 1, "s": "x"}
    created = await store.create(Key("copy", "c"), data)
    data["n"] = 2
    data["extra"] = True
    assert created.data == {"n": 1, "s": "x"}
    replaced = await store.replace(Key("copy", "c"), data, expected_version=1)
    data["n"] = 3
    assert replaced.data == {"n": 2, "s": "x", "extra": True}
    nested: dict[str, object] = {"inner": {"n": 1}}
    written = await store.transact(
        [Create(Key("copy", "t"), nested), Replace(Key("copy", "c"), nested, expected_version=2)]
    )
    nested["inner"]["n"] = 2  # type: ignore[index]
    assert [record.data for record in written if record is not None] == [{"inner": {"n": 1}}] * 2
