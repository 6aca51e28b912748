# Copyright 2026 stalwart contributors
"""Every InvalidRecord case is rejected before anything is written."""

from __future__ import annotations

import json

import pytest

from stalwart.storage import (
    MAX_INTEGER,
    MAX_TTL_S,
    MIN_INTEGER,
    Create,
    Increment,
    InvalidRecord,
    Key,
    Replace,
)

KEY = Key("valid", "key")

BAD_KEYS = {
    "empty-partition": Key(""),
    "empty-partition-with-sort": Key("", "s"),
    "long-partition": Key("p" * 1025),
    "long-sort": Key("valid", "s" * 1025),
    "nul-partition": Key("p\x00q"),
    "nul-sort": Key("valid", "s\x00"),
    "surrogate": Key("valid", "\ud800"),
    "not-a-key": ("valid", "key"),
    "int-partition": Key(7),  # type: ignore[arg-type]
}


def key_operations(key):
    return {
        "get": lambda s: s.get(key),
        "create": lambda s: s.create(key, {"a": 1}),
        "replace": lambda s: s.replace(key, {"a": 1}, expected_version=1),
        "delete": lambda s: s.delete(key),
        "delete-versioned": lambda s: s.delete(key, expected_version=1),
        "increment": lambda s: s.increment(key, "n"),
        "transact": lambda s: s.transact([Create(key, {"a": 1})]),
    }


@pytest.mark.parametrize("key_name", list(BAD_KEYS))
async def test_bad_keys_are_invalid_for_every_operation(store, key_name):
    key = BAD_KEYS[key_name]
    for op_name, operation in key_operations(key).items():
        with pytest.raises(InvalidRecord):
            await operation(store)
        # Nothing may be written under a truncated or mangled version of the key either.
        page = await store.query("valid")
        assert page.records == [], f"{op_name} wrote {page.records}"


@pytest.mark.parametrize(
    ("partition", "sort"),
    [("p" * 1024, "s" * 1024), ("é" * 1024, "é" * 512)],
    ids=["1024-ascii", "2048-and-1024-bytes"],
)
async def test_longest_keys_are_accepted(store, partition, sort):
    """1,024 characters per part on every engine; non-ASCII keys up to DynamoDB's byte limits
    (partition 2,048 bytes, sort 1,024 bytes of UTF-8)."""
    key = Key(partition, sort)
    created = await store.create(key, {"a": 1})
    assert created.key == key
    fetched = await store.get(key)
    assert fetched is not None
    assert fetched.key == key
    page = await store.query(partition, prefix=sort[:500])
    assert [r.key for r in page.records] == [key]


def _cyclic() -> dict[str, object]:
    data: dict[str, object] = {"n": 1}
    data["self"] = data
    return data


def _too_deep() -> dict[str, object]:
    data: dict[str, object] = {}
    for _ in range(100_000):
        data = {"d": data}
    return data


BAD_DATA = {
    "cycle": _cyclic(),
    "too-deep": _too_deep(),
    "set": {"s": {1, 2}},
    "nan": {"x": float("nan")},
    "inf": {"x": float("inf")},
    "minus-inf": {"x": [1, float("-inf")]},
    "bytes": {"b": b"raw"},
    "object": {"o": object()},
    "surrogate": {"x": "\udcff"},
    "list": ["not", "an", "object"],
    "string": "text",
    "none": None,
    # JSON would store these keys as "1", "null" and "true" (and the first two collide).
    "int-key": {1: "a"},
    "colliding-keys": {"1": "b", 1: "a"},
    "none-key": {"x": {None: 1}},
    "bool-key-in-list": {"x": [{True: 1}]},
    "integer-above-64-bit": {"n": MAX_INTEGER + 1},
    "integer-below-64-bit": {"x": [{"n": MIN_INTEGER - 1}]},
}


@pytest.mark.parametrize("name", list(BAD_DATA))
async def test_non_json_data_is_invalid_and_writes_nothing(store, name):
    data = BAD_DATA[name]
    with pytest.raises(InvalidRecord):
        await store.create(KEY, data)
    assert await store.get(KEY) is None
    await store.create(KEY, {"good": True})
    with pytest.raises(InvalidRecord):
        await store.replace(KEY, data, expected_version=1)
    with pytest.raises(InvalidRecord):
        await store.transact([Create(Key("valid", "other"), data)])
    fetched = await store.get(KEY)
    assert fetched is not None
    assert (fetched.data, fetched.version) == ({"good": True}, 1)
    assert await store.get(Key("valid", "other")) is None


def data_of_size(size, char="x"):
    """A JSON object whose compact UTF-8 encoding is exactly ``size`` bytes."""
    overhead = len(b'{"blob":""}')
    per_char = len(char.encode())
    count, rest = divmod(size - overhead, per_char)
    data = {"blob": char * count + "y" * rest}
    assert len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()) == size
    return data


async def test_data_at_the_engine_limit_is_stored(store):
    limit = store.max_item_bytes
    assert isinstance(limit, int)
    assert limit >= 64 * 1024
    data = data_of_size(limit)
    created = await store.create(KEY, data)
    assert created.version == 1
    fetched = await store.get(KEY)
    assert fetched is not None
    assert fetched.data == data


@pytest.mark.parametrize("char", ["x", "é", "😀"], ids=["ascii", "two-byte", "four-byte"])
async def test_data_over_the_engine_limit_is_invalid_and_writes_nothing(store, char):
    limit = store.max_item_bytes
    # Counted in UTF-8 bytes, not characters.
    data = data_of_size(limit + 1, char)
    with pytest.raises(InvalidRecord):
        await store.create(KEY, data)
    assert await store.get(KEY) is None
    await store.create(KEY, {"small": True})
    with pytest.raises(InvalidRecord):
        await store.replace(KEY, data, expected_version=1)
    fetched = await store.get(KEY)
    assert fetched is not None
    assert (fetched.data, fetched.version) == ({"small": True}, 1)


@pytest.mark.parametrize(
    "field",
    ["", "a.b", "$x", "a[0]", "b]", "nul\x00", "f" * 256, 5],
    ids=["empty", "dot", "dollar", "bracket", "close", "nul", "long", "int"],
)
async def test_bad_increment_field_is_invalid_and_writes_nothing(store, field):
    with pytest.raises(InvalidRecord):
        await store.increment(KEY, field)
    assert await store.get(KEY) is None
    await store.create(KEY, {"n": 1})
    with pytest.raises(InvalidRecord):
        await store.increment(KEY, field)
    fetched = await store.get(KEY)
    assert fetched is not None
    assert (fetched.data, fetched.version) == ({"n": 1}, 1)


@pytest.mark.parametrize(
    "amount",
    [float("nan"), float("inf"), "1", True, None, 2**70, MAX_INTEGER + 1, MIN_INTEGER - 1],
    ids=["nan", "inf", "str", "bool", "none", "2**70", "above-64-bit", "below-64-bit"],
)
async def test_bad_increment_amount_is_invalid_and_writes_nothing(store, amount):
    with pytest.raises(InvalidRecord):
        await store.increment(KEY, "n", amount)
    assert await store.get(KEY) is None
    await store.create(KEY, {"n": 1})
    with pytest.raises(InvalidRecord):
        await store.increment(KEY, "n", amount)
    fetched = await store.get(KEY)
    assert fetched is not None
    assert (fetched.data, fetched.version) == ({"n": 1}, 1)


@pytest.mark.parametrize(
    "version",
    [0, -1, True, "1", 1.0, None, MAX_INTEGER + 1],
    ids=["zero", "negative", "bool", "str", "float", "none", "2**63"],
)
async def test_bad_expected_version_is_invalid(store, version):
    await store.create(KEY, {"n": 1})
    with pytest.raises(InvalidRecord):
        await store.replace(KEY, {"n": 2}, expected_version=version)
    if version is not None:  # None is the valid "unconditional" delete
        with pytest.raises(InvalidRecord):
            await store.delete(KEY, expected_version=version)
    fetched = await store.get(KEY)
    assert fetched is not None
    assert (fetched.data, fetched.version) == ({"n": 1}, 1)


BAD_TTLS = {
    "zero": 0,
    "negative": -1,
    "nan": float("nan"),
    "inf": float("inf"),
    "minus-inf": float("-inf"),
    "over-100-years": MAX_TTL_S + 1,
    "huge": 1e300,
    "huge-int": 10**30,
    "bool": True,
    "str": "10",
}


@pytest.mark.parametrize("name", list(BAD_TTLS))
async def test_bad_ttl_is_invalid_and_writes_nothing(store, name):
    ttl = BAD_TTLS[name]
    other = Key("valid", "other")
    with pytest.raises(InvalidRecord):
        await store.create(KEY, {"a": 1}, ttl=ttl)
    with pytest.raises(InvalidRecord):
        await store.increment(KEY, "n", ttl=ttl)
    for operation in (Create(other, {"a": 1}, ttl=ttl), Increment(other, "n", ttl=ttl)):
        with pytest.raises(InvalidRecord):
            await store.transact([operation])
    assert await store.get(KEY) is None
    await store.create(KEY, {"n": 1})
    with pytest.raises(InvalidRecord):
        await store.replace(KEY, {"n": 2}, expected_version=1, ttl=ttl)
    with pytest.raises(InvalidRecord):
        await store.transact([Create(other, {"a": 1}), Replace(KEY, {"n": 2}, 1, ttl=ttl)])
    fetched = await store.get(KEY)
    assert fetched is not None
    assert (fetched.data, fetched.version, fetched.expires_at) == ({"n": 1}, 1, None)
    assert [r.key for r in (await store.query("valid")).records] == [KEY]


async def test_the_longest_ttl_is_accepted(store, clock):
    created = await store.create(KEY, {"a": 1}, ttl=MAX_TTL_S)
    assert created.expires_at == pytest.approx(clock() + MAX_TTL_S)
    counter = await store.increment(Key("valid", "counter"), "n", ttl=MAX_TTL_S)
    assert counter.expires_at == pytest.approx(clock() + MAX_TTL_S)
    clock.advance(MAX_TTL_S - 60)
    assert len((await store.query("valid")).records) == 2


async def test_integer_counters_stay_in_the_signed_64_bit_range(store):
    counter = await store.increment(KEY, "n", MAX_INTEGER - 1)
    assert counter.data == {"n": MAX_INTEGER - 1}
    counter = await store.increment(KEY, "n", 1)
    assert (counter.data, counter.version) == ({"n": MAX_INTEGER}, 2)
    other = Key("valid", "other")
    with pytest.raises(InvalidRecord):
        await store.increment(KEY, "n", 1)
    with pytest.raises(InvalidRecord):
        await store.transact([Create(other, {"a": 1}), Increment(KEY, "n", 1)])
    fetched = await store.get(KEY)
    assert fetched is not None
    assert (fetched.data, fetched.version) == ({"n": MAX_INTEGER}, 2)
    assert isinstance(fetched.data["n"], int)  # not a float
    assert await store.get(other) is None
    # A float amount makes it a float counter, as below the limit.
    assert (await store.increment(KEY, "n", 1.0)).data == {"n": float(MAX_INTEGER) + 1.0}

    low = Key("valid", "low")
    await store.create(low, {"n": MIN_INTEGER + 1, "keep": "me"})
    assert (await store.increment(low, "n", -1)).data == {"n": MIN_INTEGER, "keep": "me"}
    with pytest.raises(InvalidRecord):
        await store.increment(low, "n", -1)
    fetched = await store.get(low)
    assert fetched is not None
    assert (fetched.data, fetched.version) == ({"n": MIN_INTEGER, "keep": "me"}, 2)
