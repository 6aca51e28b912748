# Copyright 2026 stalwart contributors
"""Property test of the Lua JSON splice behind increment, against a real redis-server.

For arbitrary JSON documents (nested containers, escapes, non-ASCII, numbers of every shape)
the stored data after ``increment`` must equal what Python computes: the one top-level field
changed, everything else untouched.
"""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.storage import InvalidRecord, Key
from stalwart.storage.redis import RedisStore, store_from_url

if TYPE_CHECKING:
    from collections.abc import Iterator

    from servers import RunningServer

MIN_INTEGER, MAX_INTEGER = -(2**63), 2**63 - 1

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
field_names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=".$[]\x00"), min_size=1, max_size=6
)
numbers = st.one_of(
    st.integers(MIN_INTEGER, MAX_INTEGER),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
documents = st.dictionaries(st.one_of(text, field_names), values, max_size=6)


def python_increment(data: dict[str, Any], field: str, by: float) -> dict[str, Any] | None:
    """The contract's semantics; ``None`` where the engine must raise InvalidRecord."""
    current = data.get(field, 0)
    if isinstance(current, bool) or not isinstance(current, int | float):
        return None
    result = current + by
    if isinstance(result, float) and not math.isfinite(result):
        return None
    if isinstance(result, int) and not MIN_INTEGER <= result <= MAX_INTEGER:
        return None
    return {**data, field: result}


@pytest.fixture(scope="module")
def store(redis_srv: RunningServer) -> Iterator[RedisStore]:
    opened = store_from_url(f"{redis_srv.url}?prefix=prop{uuid.uuid4().hex[:8]}")
    assert isinstance(opened, RedisStore)
    yield opened
    opened.close()


def valid_field(name: str) -> bool:
    return bool(name) and len(name) <= 255 and not any(ch in name for ch in ".$\x00[]")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=documents,
    new_field=field_names,
    by=st.one_of(st.integers(MIN_INTEGER, MAX_INTEGER), st.floats(-1e6, 1e6)),
    pick=st.data(),
)
def test_increment_matches_python(store: RedisStore, data, new_field, by, pick):
    existing = sorted(name for name in data if valid_field(name))
    field = pick.draw(st.sampled_from([*existing, new_field]), label="field")
    key = Key("prop", uuid.uuid4().hex)
    store.create(key, data)
    expected = python_increment(data, field, by)
    if expected is None:
        with pytest.raises(InvalidRecord):
            store.increment(key, field, by)
        record = store.get(key)
        assert record is not None
        assert (record.data, record.version) == (data, 1)
        return
    record = store.increment(key, field, by)
    assert record.data == expected
    assert type(record.data[field]) is type(expected[field])
    assert list(record.data) == list(expected)
    assert store.get(key) == record
    store.delete(key)
