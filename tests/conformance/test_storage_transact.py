# Copyright 2026 stalwart contributors
"""transact(): all-or-nothing, per-item results, which item failed, the item limit."""

from __future__ import annotations

import pytest

from stalwart.storage import (
    Check,
    Create,
    Delete,
    Increment,
    InvalidRecord,
    Key,
    Replace,
    StorageError,
    TransactionConflict,
)

A = Key("t", "a")
B = Key("t", "b")
C = Key("t", "c")
D = Key("t", "d")
NEW = Key("t", "new")
ABSENT = Key("t", "absent")


async def snapshot(store, *keys):
    records = [await store.get(key) for key in keys]
    return [None if r is None else (r.data, r.version, r.expires_at) for r in records]


async def test_transact_applies_every_operation_kind(store, clock):
    await store.create(A, {"a": 1})
    await store.create(B, {"n": 1, "keep": "me"})
    await store.create(C, {"c": 1})
    await store.create(D, {"d": 1})
    results = await store.transact(
        [
            Create(NEW, {"x": 1}, ttl=60),
            Replace(A, {"a": 2}, 1),
            Delete(C, 1),
            Check(D, 1),
            Check(ABSENT, None),
            Increment(B, "n", 5),
            Increment(Key("t", "counter"), "n", 2, ttl=30),
            Delete(Key("t", "not-there")),
        ]
    )
    assert len(results) == 8
    new, replaced, deleted, check_d, check_absent, incremented, counter, delete_absent = results
    assert new is not None
    assert (new.key, new.data, new.version) == (NEW, {"x": 1}, 1)
    assert new.expires_at == pytest.approx(clock() + 60, abs=1e-3)
    assert replaced is not None
    assert (replaced.key, replaced.data, replaced.version, replaced.expires_at) == (
        A,
        {"a": 2},
        2,
        None,
    )
    assert deleted is None
    assert check_d is None
    assert check_absent is None
    assert incremented is not None
    assert (incremented.data, incremented.version) == ({"n": 6, "keep": "me"}, 2)
    assert counter is not None
    assert (counter.data, counter.version) == ({"n": 2}, 1)
    assert counter.expires_at == pytest.approx(clock() + 30, abs=1e-3)
    assert delete_absent is None
    assert await snapshot(store, A, B, C, D) == [
        ({"a": 2}, 2, None),
        ({"n": 6, "keep": "me"}, 2, None),
        None,
        ({"d": 1}, 1, None),
    ]
    fetched_new = await store.get(NEW)
    assert fetched_new is not None
    assert fetched_new.data == {"x": 1}


async def test_transact_replace_ttl_none_clears_expiry(store, clock):
    await store.create(A, {"a": 1}, ttl=60)
    await store.create(B, {"b": 1})
    replaced_a, replaced_b = await store.transact(
        [Replace(A, {"a": 2}, 1), Replace(B, {"b": 2}, 1, ttl=20)]
    )
    assert replaced_a is not None
    assert replaced_a.expires_at is None
    assert replaced_b is not None
    assert replaced_b.expires_at == pytest.approx(clock() + 20, abs=1e-3)
    assert await snapshot(store, A) == [({"a": 2}, 2, None)]


FAILING = {
    "create-over-live": Create(C, {"c": "new"}),
    "replace-wrong-version": Replace(C, {"c": "new"}, 2),
    "replace-absent": Replace(ABSENT, {"c": "new"}, 1),
    "delete-wrong-version": Delete(C, 3),
    "delete-absent-with-version": Delete(ABSENT, 1),
    "check-absent-but-live": Check(C, None),
    "check-wrong-version": Check(C, 2),
    "check-version-but-absent": Check(ABSENT, 1),
}


@pytest.mark.parametrize("name", list(FAILING))
async def test_failed_condition_names_the_item_and_writes_nothing(store, name):
    await store.create(A, {"a": 1})
    await store.create(B, {"n": 1})
    await store.create(C, {"c": 1})
    failing = FAILING[name]
    before = await snapshot(store, A, B, C, NEW, ABSENT)
    with pytest.raises(TransactionConflict) as caught:
        await store.transact(
            [
                Replace(A, {"a": "changed"}, 1),
                Increment(B, "n", 10),
                failing,
                Create(NEW, {"new": True}),
                Delete(D),
            ]
        )
    assert caught.value.index == 2
    assert caught.value.operation == failing
    assert isinstance(caught.value.reason, str)
    assert caught.value.reason
    current = caught.value.current
    if current is not None:  # optional: carried where the engine returns it
        expected_current = None if failing.key == ABSENT else ({"c": 1}, 1)
        assert expected_current == (current.data, current.version)
    assert await snapshot(store, A, B, C, NEW, ABSENT) == before


@pytest.mark.parametrize("position", ["first", "last"])
async def test_failing_item_index_at_either_end(store, position):
    await store.create(C, {"c": 1})
    ops = [Create(Key("t", f"k{i}"), {"i": i}) for i in range(5)]
    failing = Check(C, 7)
    ops = [failing, *ops] if position == "first" else [*ops, failing]
    with pytest.raises(TransactionConflict) as caught:
        await store.transact(ops)
    assert caught.value.index == (0 if position == "first" else 5)
    assert caught.value.operation == failing
    page = await store.query("t")
    assert [r.key for r in page.records] == [C]


async def test_delete_without_version_in_transaction_ignores_absence(store):
    assert await store.transact([Delete(ABSENT)]) == [None]
    await store.create(A, {"a": 1})
    assert await store.transact([Delete(A), Delete(ABSENT)]) == [None, None]
    assert await store.get(A) is None


async def test_transaction_item_limit(store):
    limit = store.max_transaction_items
    assert isinstance(limit, int)
    assert limit >= 25
    results = await store.transact(
        [Create(Key("fits", f"k{i:04d}"), {"i": i}) for i in range(limit)]
    )
    assert len(results) == limit
    assert all(r is not None and r.version == 1 for r in results)
    with pytest.raises(InvalidRecord):
        await store.transact([Create(Key("over", f"k{i:04d}"), {"i": i}) for i in range(limit + 1)])
    page = await store.query("over")
    assert page.records == []
    count = 0
    cursor = None
    while True:
        page = await store.query("fits", limit=1000, cursor=cursor)
        count += len(page.records)
        cursor = page.cursor
        if cursor is None:
            break
    assert count == limit


async def test_transaction_shape_is_validated(store):
    await store.create(A, {"a": 1})
    with pytest.raises(InvalidRecord):
        await store.transact([])
    with pytest.raises(InvalidRecord):
        await store.transact([Create(NEW, {}), Replace(NEW, {}, 1)])
    with pytest.raises(InvalidRecord):
        await store.transact([Replace(A, {"a": 2}, 1), Check(A, 1)])
    with pytest.raises(InvalidRecord):
        await store.transact([Create(NEW, {}), Create(Key(""), {})])
    with pytest.raises(InvalidRecord):
        await store.transact([Create(NEW, {}), "not an operation"])  # type: ignore[list-item]
    assert await snapshot(store, A, NEW) == [({"a": 1}, 1, None), None]


@pytest.mark.parametrize(
    "bad",
    [
        Create(NEW, {"x": float("nan")}),
        Create(NEW, {"x": {1, 2}}),
        Replace(A, {"x": float("inf")}, 1),
        Replace(A, {}, 0),
        Check(A, 0),
        Delete(A, -1),
        Increment(A, "a.b"),
        Increment(A, "n", float("nan")),
        Create(NEW, {}, ttl=0),
        Increment(NEW, "n", ttl=-1),
    ],
    ids=[
        "nan",
        "set",
        "inf",
        "version-0",
        "check-0",
        "delete-neg",
        "field",
        "amount",
        "ttl-0",
        "ttl-neg",
    ],
)
async def test_invalid_item_rejects_whole_transaction(store, bad):
    await store.create(A, {"a": 1})
    with pytest.raises(InvalidRecord):
        await store.transact([Create(Key("t", "first"), {"ok": True}), Increment(B, "n"), bad])
    assert await snapshot(store, A, B, NEW, Key("t", "first")) == [
        ({"a": 1}, 1, None),
        None,
        None,
        None,
    ]


async def test_oversize_item_rejects_whole_transaction(store):
    size = store.max_item_bytes
    with pytest.raises(InvalidRecord):
        await store.transact([Create(A, {"ok": 1}), Create(B, {"blob": "x" * size})])
    assert await snapshot(store, A, B) == [None, None]


async def test_non_numeric_increment_rejects_whole_transaction(store):
    await store.create(A, {"n": "text"})
    with pytest.raises((InvalidRecord, TransactionConflict)) as caught:
        await store.transact([Create(NEW, {}), Increment(A, "n")])
    if isinstance(caught.value, TransactionConflict):
        assert caught.value.index == 1
    assert await snapshot(store, A, NEW) == [({"n": "text"}, 1, None), None]


async def test_transaction_results_match_single_operations(store):
    """A record written by transact is indistinguishable from one written directly."""
    results = await store.transact([Create(A, {"a": [1, {"b": None}]}), Increment(B, "n", 2.5)])
    assert [(r.data, r.version) for r in results if r is not None] == [
        ({"a": [1, {"b": None}]}, 1),
        ({"n": 2.5}, 1),
    ]
    replaced = await store.replace(A, {"a": 2}, expected_version=1)
    assert replaced.version == 2
    incremented = await store.increment(B, "n", 1)
    assert (incremented.data, incremented.version) == ({"n": 3.5}, 2)
    with pytest.raises(StorageError):
        await store.create(A, {})
