# Copyright 2026 stalwart contributors
"""query(): partition isolation, codepoint order, prefixes, limits, cursor paging."""

from __future__ import annotations

import pytest

from stalwart.storage import InvalidRecord, Key

# Code point order (== UTF-8 byte order). U+FF21 sorts before U+1F600 here, but after it in
# UTF-16 order, which catches engines comparing UTF-16 code units.
SORTS = [
    "",
    "0",
    "A",
    "B",
    "a",
    "a b",
    "aa",
    "ab",
    "b",
    "z",
    "~",
    "é",
    "中",
    "\uff21",
    "\U0001f600",
    "\uffff",
]


async def all_pages(store, partition, *, limit, **kwargs):
    pages = []
    cursor = None
    while True:
        page = await store.query(partition, limit=limit, cursor=cursor, **kwargs)
        pages.append(page)
        assert len(page.records) <= limit
        if page.cursor is None:
            return pages
        cursor = page.cursor
        assert len(pages) < 1000, "cursor never ends"


def sorts_of(pages):
    return [record.key.sort for page in pages for record in page.records]


async def create_all(store, partition, sorts, **kwargs):
    for sort in sorts:
        await store.create(Key(partition, sort), {"sort": sort}, **kwargs)


async def test_query_orders_by_sort_key_code_points(store):
    await create_all(store, "p", reversed(SORTS))
    page = await store.query("p", limit=1000)
    assert [r.key.sort for r in page.records] == sorted(SORTS)
    assert page.cursor is None
    descending = await store.query("p", limit=1000, descending=True)
    assert [r.key.sort for r in descending.records] == sorted(SORTS, reverse=True)
    assert descending.cursor is None


async def test_query_returns_whole_records(store, clock):
    await store.create(Key("p", "a"), {"n": 1}, ttl=60)
    await store.create(Key("p", "b"), {"n": 2})
    await store.replace(Key("p", "b"), {"n": 3}, expected_version=1)
    await store.increment(Key("p", "c"), "n")
    page = await store.query("p")
    a, b, c = page.records
    assert (a.key, a.data, a.version) == (Key("p", "a"), {"n": 1}, 1)
    assert a.expires_at == pytest.approx(clock() + 60, abs=1e-3)
    assert (b.key, b.data, b.version, b.expires_at) == (Key("p", "b"), {"n": 3}, 2, None)
    assert (c.key, c.data, c.version, c.expires_at) == (Key("p", "c"), {"n": 1}, 1, None)


async def test_query_never_leaks_other_partitions(store):
    for partition, sort in [
        ("p", "x:y"),
        ("p:x", "y"),
        ("p2", "a"),
        ("pp", "a"),
        ("P", "a"),
        ("p", "a"),
        ("q", "p"),
        ("p x", "a"),
        ("p\\", "a"),
        ("p*", "a"),
        ("p%", "a"),
        ("p.", "a"),
    ]:
        await store.create(Key(partition, sort), {"partition": partition})
    page = await store.query("p")
    assert [(r.key.partition, r.key.sort) for r in page.records] == [("p", "a"), ("p", "x:y")]
    page = await store.query("p:x")
    assert [r.key.sort for r in page.records] == ["y"]
    for partition in ("p*", "p%", "p.", "p\\"):
        page = await store.query(partition)
        assert [r.key.partition for r in page.records] == [partition]
    empty = await store.query("nobody")
    assert empty.records == []
    assert empty.cursor is None


PREFIX_SORTS = [
    "a",
    "aa",
    "ab",
    "a%b",
    "a_b",
    "axb",
    "a.b",
    "a*",
    "a[",
    "a]",
    "a\\",
    "a^",
    "a?",
    "a(",
    "a$",
    "a\U0001f600",
    "a\U0001f600z",
    "a\uffff",
    "a\uffffz",
    "b",
    "A",
    "ba",
    "",
    "%",
]


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "a",
        "a%",
        "a_",
        "a.",
        "a*",
        "a[",
        "a\\",
        "a?",
        "a^",
        "a(",
        "a$",
        "aa",
        "zz",
        "a\U0001f600",
        "a\uffff",
        "%",
    ],
)
async def test_query_prefix_is_literal(store, prefix):
    await create_all(store, "p", PREFIX_SORTS)
    expected = sorted(s for s in PREFIX_SORTS if s.startswith(prefix))
    pages = await all_pages(store, "p", prefix=prefix, limit=1000)
    assert sorts_of(pages) == expected
    pages = await all_pages(store, "p", prefix=prefix, limit=3, descending=True)
    assert sorts_of(pages) == expected[::-1]


async def test_query_pages_with_cursor(store):
    sorts = [f"k{i:02d}" for i in range(25)]
    await create_all(store, "p", sorts)
    pages = await all_pages(store, "p", limit=10)
    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert sorts_of(pages) == sorts
    assert all(isinstance(p.cursor, str) for p in pages[:-1])
    pages = await all_pages(store, "p", limit=10, descending=True)
    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert sorts_of(pages) == sorts[::-1]
    pages = await all_pages(store, "p", limit=1)
    assert sorts_of(pages) == sorts


async def test_query_last_full_page_has_no_cursor(store):
    sorts = [f"k{i:02d}" for i in range(20)]
    await create_all(store, "p", sorts)
    pages = await all_pages(store, "p", limit=10)
    assert [len(p.records) for p in pages] == [10, 10]
    pages = await all_pages(store, "p", limit=20, descending=True)
    assert [len(p.records) for p in pages] == [20]
    assert pages[0].cursor is None


async def test_query_pages_with_prefix(store):
    sorts = [f"a{i:02d}" for i in range(12)] + [f"b{i:02d}" for i in range(12)] + ["a", "c"]
    await create_all(store, "p", sorts)
    pages = await all_pages(store, "p", prefix="b", limit=5)
    assert [len(p.records) for p in pages] == [5, 5, 2]
    assert sorts_of(pages) == [f"b{i:02d}" for i in range(12)]
    pages = await all_pages(store, "p", prefix="a", limit=5, descending=True)
    assert sorts_of(pages) == sorted([f"a{i:02d}" for i in range(12)] + ["a"], reverse=True)


async def test_query_cursor_survives_deletion_and_insertion(store):
    sorts = [f"k{i:02d}" for i in range(12)]
    await create_all(store, "p", sorts)
    first = await store.query("p", limit=5)
    assert [r.key.sort for r in first.records] == sorts[:5]
    await store.delete(Key("p", "k04"))
    await store.delete(Key("p", "k05"))
    await store.create(Key("p", "k04x"), {})
    await store.create(Key("p", "k00x"), {})
    second = await store.query("p", limit=5, cursor=first.cursor)
    assert [r.key.sort for r in second.records] == ["k04x", "k06", "k07", "k08", "k09"]


async def test_query_skips_expired_records_across_pages(store, clock):
    sorts = [f"k{i:02d}" for i in range(30)]
    for i, sort in enumerate(sorts):
        await store.create(Key("p", sort), {"i": i}, ttl=10 if i % 3 == 0 else None)
    clock.advance(11)
    live = [s for i, s in enumerate(sorts) if i % 3 != 0]
    for descending in (False, True):
        pages = await all_pages(store, "p", limit=7, descending=descending)
        assert sorts_of(pages) == (live[::-1] if descending else live)
        # Every engine fills each page but the last, skipping expired records (DynamoDB's
        # Limit applies before its filter, so that engine keeps reading until a page is full).
        assert [len(p.records) for p in pages[:-1]] == [7] * (len(pages) - 1)


@pytest.mark.parametrize("limit", [0, -1, 1001, 10**6])
async def test_query_limit_out_of_range_is_invalid(store, limit):
    with pytest.raises(InvalidRecord):
        await store.query("p", limit=limit)


async def test_query_limit_bounds_are_accepted(store):
    await create_all(store, "p", ["a", "b"])
    one = await store.query("p", limit=1)
    assert [r.key.sort for r in one.records] == ["a"]
    assert one.cursor is not None
    most = await store.query("p", limit=1000)
    assert [r.key.sort for r in most.records] == ["a", "b"]


@pytest.mark.parametrize("partition", ["", "x" * 1025, "nul\x00"], ids=["empty", "long", "nul"])
async def test_query_invalid_partition_is_invalid(store, partition):
    with pytest.raises(InvalidRecord):
        await store.query(partition)


@pytest.mark.parametrize("cursor", ["", "!!!", "gA==", "e30=", "WyJwIl0="], ids=repr)
async def test_a_cursor_the_store_did_not_issue_is_invalid(store, cursor):
    await create_all(store, "p", ["a", "b"])
    with pytest.raises(InvalidRecord):
        await store.query("p", cursor=cursor)


async def test_a_cursor_of_another_partition_is_invalid(store):
    """Every engine refuses to resume partition q from p's cursor, rather than silently
    paging q from p's position."""
    await create_all(store, "p", ["a", "b"])
    await create_all(store, "q", ["a", "b"])
    cursor = (await store.query("p", limit=1)).cursor
    assert cursor is not None
    with pytest.raises(InvalidRecord, match="another query"):
        await store.query("q", cursor=cursor)
    page = await store.query("p", cursor=cursor)
    assert [r.key.sort for r in page.records] == ["b"]
