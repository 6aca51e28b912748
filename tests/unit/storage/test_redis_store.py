# Copyright 2026 stalwart contributors
"""The Redis engine against a real redis-server: script semantics, layout, expiry, errors.

Most tests run twice, on :class:`RedisStore` (called from a worker thread) and on
:class:`AsyncRedisStore`, through the small ``both`` adapter below.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from stalwart.idempotency import Idempotency, IdempotencyPolicy, Lease, Replay
from stalwart.storage import (
    AlreadyExists,
    AsyncStore,
    Check,
    Create,
    Delete,
    Increment,
    InvalidRecord,
    Key,
    Replace,
    StorageError,
    Store,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
    open_async_store,
    open_store,
)
from stalwart.storage._redis_codec import (
    Layout,
    create_call,
    delete_call,
    increment_call,
    replace_call,
    single,
    transact_call,
)
from stalwart.storage._redis_scripts import REPLAY_WINDOW_S, SCRIPTS
from stalwart.storage.redis import (
    AsyncRedisStore,
    RedisStore,
    async_store_from_url,
    client_may_resend,
    partition_key,
    store_from_url,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from servers import RunningServer


def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Both:
    """Calls a sync store on a thread or awaits an async one, so each test is written once."""

    def __init__(self, store: RedisStore | AsyncRedisStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if isinstance(self.store, RedisStore):
                return await asyncio.to_thread(method, *args, **kwargs)
            return await method(*args, **kwargs)

        return call


async def run_call(store: Both, call: Any) -> Any:
    """Send a prepared call (again): what a client's resend after a lost reply does."""
    raw = store.store
    if isinstance(raw, RedisStore):
        return await asyncio.to_thread(raw._executor.run, single(call))
    return await raw._executor.run(single(call))


@pytest.fixture
def admin(redis_srv: RunningServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_srv.url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sync", "async"])
async def store(request, redis_srv: RunningServer, clock: FakeClock) -> AsyncIterator[Both]:
    url = f"{redis_srv.url}?prefix={unique_name()}"
    if request.param == "sync":
        sync_store = store_from_url(url, clock=clock)
        assert isinstance(sync_store, RedisStore)
        yield Both(sync_store)
        sync_store.close()
    else:
        async_store = async_store_from_url(url, clock=clock)
        assert isinstance(async_store, AsyncRedisStore)
        yield Both(async_store)
        await async_store.close()


def command_calls(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {name: value["calls"] for name, value in stats.items() if name != "cmdstat_info"}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


# ---------------------------------------------------------------------------------------------
# Round trips and layout
# ---------------------------------------------------------------------------------------------


def count_commands(store: RedisStore | AsyncRedisStore) -> list[str]:
    """Record every command the store sends (one command = one round trip here)."""
    sent: list[str] = []
    wire = store.transport
    assert wire is not None, "a plain client is served by the store's own transport"
    original = wire.call

    def name(packed: bytes) -> str:
        return packed.split(b"\r\n", 3)[2].decode()

    if isinstance(store, RedisStore):

        def counting(packed: bytes) -> Any:
            sent.append(name(packed))
            return original(packed)

    else:

        async def counting(packed: bytes) -> Any:
            sent.append(name(packed))
            return await original(packed)

    wire.call = counting  # type: ignore[method-assign]
    return sent


async def test_every_single_record_operation_is_one_round_trip(store: Both, admin):
    for source in SCRIPTS.values():
        admin.script_load(source)
    sent = count_commands(store.store)
    key = Key("p", "a")
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("create", lambda: store.create(key, {"n": 1})),
        ("create-conflict", lambda: store.create(key, {"n": 2})),
        ("get", lambda: store.get(key)),
        ("replace", lambda: store.replace(key, {"n": 3}, expected_version=1)),
        ("replace-conflict", lambda: store.replace(key, {"n": 3}, expected_version=1)),
        ("increment", lambda: store.increment(key, "n")),
        ("delete-conflict", lambda: store.delete(key, expected_version=1)),
        ("delete", lambda: store.delete(key)),
        ("query", lambda: store.query("p")),
        ("transact", lambda: store.transact([Create(key, {}), Check(Key("p", "b"), None)])),
    ]
    for name, step in steps:
        sent.clear()
        with contextlib.suppress(AlreadyExists, VersionConflict):
            await step()
        assert sent == (["HMGET"] if name == "get" else ["EVALSHA"]), (name, sent)


async def test_conflicts_carry_the_current_record(store: Both):
    key = Key("p", "a")
    first = await store.create(key, {"n": 1}, ttl=60)
    with pytest.raises(AlreadyExists) as exists:
        await store.create(key, {"n": 2})
    assert exists.value.current == first
    with pytest.raises(VersionConflict) as conflict:
        await store.replace(key, {"n": 2}, expected_version=5)
    assert conflict.value.current == first
    with pytest.raises(VersionConflict) as absent:
        await store.replace(Key("p", "nope"), {}, expected_version=1)
    assert absent.value.current is None


async def test_key_layout_uses_one_hash_tag_per_partition(store: Both, admin):
    prefix = store.store.prefix
    await store.create(Key("acct:{7}", "b/1"), {"x": 1})
    tag = partition_key(prefix, "acct:{7}")
    assert tag == "{" + prefix + ":acct%3A%7B7%7D}"
    record_key, index_key = f"{tag}r:b/1".encode(), f"{tag}i".encode()
    assert set(admin.keys(f"{{{prefix}:*")) == {record_key, index_key}
    assert admin.type(record_key) == b"hash"
    fields = admin.hgetall(record_key)
    assert fields[b"d"] == b'{"x":1}'
    assert fields[b"v"] == b"1"
    assert fields[b"e"] == b""
    assert set(fields) == {b"d", b"v", b"e"}
    assert admin.zrange(index_key, 0, -1, withscores=True) == [(b"b/1", 0.0)]
    assert redis.crc.key_slot(record_key) == redis.crc.key_slot(index_key)


# ---------------------------------------------------------------------------------------------
# Expiry: logical (store clock) and physical (Redis PEXPIRE)
# ---------------------------------------------------------------------------------------------


async def test_physical_expiry_follows_the_record(store: Both, admin, clock: FakeClock):
    key = Key("p", "a")
    redis_key = f"{partition_key(store.store.prefix, 'p')}r:a"
    created = await store.create(key, {"n": 1}, ttl=30)
    assert created.expires_at == pytest.approx(clock.now + 30)
    assert 30_000 < admin.pttl(redis_key) <= 31_000
    await store.increment(key, "n")
    assert 29_000 < admin.pttl(redis_key) <= 31_000, "increment keeps the expiry"
    replaced = await store.replace(key, {"n": 5}, expected_version=2)
    assert replaced.expires_at is None
    assert admin.pttl(redis_key) == -1, "replace without ttl removes the expiry"
    await store.replace(key, {"n": 6}, expected_version=3, ttl=5)
    assert 5_000 < admin.pttl(redis_key) <= 6_000
    await store.increment(Key("p", "c"), "n", ttl=7)
    assert 7_000 < admin.pttl(f"{partition_key(store.store.prefix, 'p')}r:c") <= 8_000
    await store.transact([Create(Key("p", "t"), {}, ttl=9)])
    assert 9_000 < admin.pttl(f"{partition_key(store.store.prefix, 'p')}r:t") <= 10_000


async def test_records_expired_by_the_clock_are_absent_everywhere(store: Both, clock):
    key = Key("p", "a")
    await store.create(key, {"n": 1}, ttl=10)
    await store.create(Key("p", "live"), {"n": 1})
    clock.now += 10  # expires_at <= now: absent
    assert await store.get(key) is None
    assert [r.key.sort for r in (await store.query("p")).records] == ["live"]
    with pytest.raises(VersionConflict) as conflict:
        await store.replace(key, {}, expected_version=1)
    assert conflict.value.current is None
    assert await store.delete(key) is False
    with pytest.raises(VersionConflict):
        await store.delete(key, expected_version=1)
    with pytest.raises(TransactionConflict) as failed:
        await store.transact([Check(key, 1)])
    assert failed.value.current is None
    await store.transact([Check(key, None)])
    counted = await store.increment(key, "n", 5)
    assert (counted.data, counted.version, counted.expires_at) == ({"n": 5}, 1, None)
    clock.now += 100
    await store.delete(key)
    recreated = await store.create(key, {"again": True}, ttl=1)
    assert recreated.version == 1
    clock.now += 1
    assert (await store.create(key, {"third": True})).data == {"third": True}


async def test_query_drops_index_members_whose_record_redis_removed(store: Both, admin):
    for sort in "abc":
        await store.create(Key("p", sort), {})
    tag = partition_key(store.store.prefix, "p")
    admin.delete(f"{tag}r:b")  # what Redis does when PEXPIRE fires
    page = await store.query("p")
    assert [r.key.sort for r in page.records] == ["a", "c"]
    assert admin.zrange(f"{tag}i", 0, -1) == [b"a", b"c"]


async def test_delete_removes_the_index_member(store: Both, admin):
    await store.create(Key("p", "a"), {})
    assert await store.delete(Key("p", "a")) is True
    assert admin.exists(f"{partition_key(store.store.prefix, 'p')}i") == 0


# ---------------------------------------------------------------------------------------------
# The partition index expires with its records (no leak of index keys)
# ---------------------------------------------------------------------------------------------


def index_and_record_pttl(admin: redis.Redis, prefix: str, partition: str, sort: str):
    """``(index PTTL, record PTTL)``; the index is read first, so a sound index TTL is >=."""
    tag = partition_key(prefix, partition)
    return admin.pttl(f"{tag}i"), admin.pttl(f"{tag}r:{sort}")


async def test_index_ttl_covers_the_longest_record_ttl(store: Both, admin):
    prefix = store.store.prefix
    await store.create(Key("p", "a"), {}, ttl=30)
    index, record = index_and_record_pttl(admin, prefix, "p", "a")
    assert 30_000 < record <= index <= 31_000
    await store.create(Key("p", "b"), {}, ttl=60)
    index, record = index_and_record_pttl(admin, prefix, "p", "b")
    assert 60_000 < record <= index <= 61_000, "a longer record TTL extends the index"
    await store.create(Key("p", "c"), {}, ttl=5)
    await store.replace(Key("p", "b"), {}, expected_version=1, ttl=1)
    index, _ = index_and_record_pttl(admin, prefix, "p", "b")
    assert 59_000 < index <= 61_000, "shorter record TTLs never shrink the index TTL"
    assert [r.key.sort for r in (await store.query("p")).records] == ["a", "b", "c"]


async def test_a_persistent_record_makes_the_index_persistent(store: Both, admin):
    prefix = store.store.prefix
    await store.create(Key("p", "ttl"), {}, ttl=30)
    await store.create(Key("p", "kept"), {})
    assert index_and_record_pttl(admin, prefix, "p", "kept") == (-1, -1)
    await store.create(Key("p", "later"), {}, ttl=90)
    index, _ = index_and_record_pttl(admin, prefix, "p", "later")
    assert index == -1, "a TTL'd record must not give an index holding a persistent one a TTL"
    assert [r.key.sort for r in (await store.query("p")).records] == ["kept", "later", "ttl"]
    # replace without ttl makes a TTL'd record persistent, and the index with it
    await store.create(Key("q", "a"), {}, ttl=30)
    await store.replace(Key("q", "a"), {}, expected_version=1)
    assert index_and_record_pttl(admin, prefix, "q", "a") == (-1, -1)


async def test_the_sole_member_turning_ttl_gives_the_persistent_index_its_ttl(store: Both, admin):
    prefix = store.store.prefix
    await store.create(Key("p", "a"), {})
    await store.replace(Key("p", "a"), {}, expected_version=1, ttl=20)
    index, record = index_and_record_pttl(admin, prefix, "p", "a")
    assert 20_000 < record <= index <= 21_000


async def test_index_key_disappears_once_its_ttl_records_expire(store: Both, admin):
    # Real short TTLs: Redis removes each record 1 s (grace) after its logical expiry, and the
    # index key with the last of them - the idempotency layer's one-record partitions leave
    # nothing behind.
    prefix = store.store.prefix
    await store.create(Key("p", "a"), {}, ttl=0.05)
    await store.increment(Key("p", "b"), "n", ttl=0.3)
    await store.transact([Create(Key("p", "c"), {}, ttl=0.2), Create(Key("q", "a"), {}, ttl=0.1)])
    await store.replace(Key("p", "a"), {"x": 1}, expected_version=1, ttl=0.1)
    assert len(admin.keys(f"{{{prefix}:*")) == 6
    for _ in range(50):  # up to 5 s; the last record goes about 1.3 s after its write
        if not admin.keys(f"{{{prefix}:*"):
            break
        await asyncio.sleep(0.1)
    assert admin.keys(f"{{{prefix}:*") == []


def test_idempotency_keys_leave_nothing_behind_in_redis(redis_srv, admin):
    # The leak this layout fixes: one partition per idempotency key, one TTL'd record each.
    prefix = unique_name()
    store = store_from_url(f"{redis_srv.url}?prefix={prefix}")
    try:
        layer = Idempotency(store, IdempotencyPolicy(retention=0.3, lease=0.2))
        for n in range(3):
            lease = layer.claim(layer.key("orders", f"client-{n}"))
            assert isinstance(lease, Lease)
            layer.complete(lease, {"order": n})
        released = layer.claim(layer.key("orders", "released"))
        assert isinstance(released, Lease)
        layer.release(released)
        assert isinstance(layer.claim(layer.key("orders", "client-0")), Replay)
        assert len(admin.keys(f"{{{prefix}:*")) == 6, "3 records + their 3 indexes"
        for _ in range(50):  # each key goes about 1.3 s after its last write
            if not admin.keys(f"{{{prefix}:*"):
                break
            time.sleep(0.1)
        assert admin.keys(f"{{{prefix}:*") == []
    finally:
        store.close()


async def test_deleting_the_last_member_removes_the_index_key(store: Both, admin):
    index_key = f"{partition_key(store.store.prefix, 'p')}i"
    await store.create(Key("p", "a"), {}, ttl=30)
    await store.create(Key("p", "b"), {})
    assert await store.delete(Key("p", "a")) is True
    assert admin.exists(index_key) == 1
    assert await store.delete(Key("p", "b"), expected_version=1) is True
    assert admin.exists(index_key) == 0, "Redis deletes a sorted set once it is empty"
    await store.create(Key("p", "c"), {}, ttl=30)
    await store.transact([Delete(Key("p", "c"))])
    assert admin.exists(index_key) == 0


async def test_query_dropping_the_last_dangling_member_removes_the_index_key(store: Both, admin):
    tag = partition_key(store.store.prefix, "p")
    await store.create(Key("p", "a"), {})
    admin.delete(f"{tag}r:a")
    assert (await store.query("p")).records == []
    assert admin.exists(f"{tag}i") == 0


async def test_increment_fits_the_index_like_create(store: Both, admin):
    prefix = store.store.prefix
    tag = partition_key(prefix, "p")
    await store.increment(Key("p", "a"), "n", ttl=40)
    index, record = index_and_record_pttl(admin, prefix, "p", "a")
    assert 40_000 < record <= index <= 41_000
    await store.increment(Key("p", "a"), "n")
    index, record = index_and_record_pttl(admin, prefix, "p", "a")
    assert 39_000 < record <= index <= 41_000, "incrementing a live record keeps both TTLs"
    await store.increment(Key("p", "kept"), "n")
    assert admin.pttl(f"{tag}i") == -1
    # An index that lost a live record's member (evicted, deleted by hand) is rebuilt with a
    # TTL covering that record, or persistent for a persistent record.
    await store.increment(Key("q", "a"), "n", ttl=50)
    qtag = partition_key(prefix, "q")
    admin.delete(f"{qtag}i")
    await store.increment(Key("q", "a"), "n")
    index, record = index_and_record_pttl(admin, prefix, "q", "a")
    assert 49_000 < record <= index <= 51_000
    admin.delete(f"{tag}i")
    await store.increment(Key("p", "kept"), "n")
    assert admin.pttl(f"{tag}i") == -1
    # "a" went with the hand-deleted index; only records written since are listed again
    assert [r.key.sort for r in (await store.query("p")).records] == ["kept"]


async def test_transaction_items_fit_their_indexes(store: Both, admin):
    prefix = store.store.prefix
    await store.transact(
        [
            Create(Key("p", "a"), {}, ttl=9),
            Create(Key("p", "b"), {}, ttl=20),
            Increment(Key("q", "a"), "n", ttl=5),
            Create(Key("r", "a"), {}, ttl=30),
            Create(Key("r", "b"), {}),
        ]
    )
    index, record = index_and_record_pttl(admin, prefix, "p", "b")
    assert 20_000 < record <= index <= 21_000
    index, record = index_and_record_pttl(admin, prefix, "q", "a")
    assert 5_000 < record <= index <= 6_000
    assert index_and_record_pttl(admin, prefix, "r", "b") == (-1, -1)
    await store.transact([Replace(Key("q", "a"), {}, expected_version=1, ttl=60)])
    index, record = index_and_record_pttl(admin, prefix, "q", "a")
    assert 60_000 < record <= index <= 61_000
    qtag = partition_key(prefix, "q")
    admin.delete(f"{qtag}i")
    await store.transact([Increment(Key("q", "a"), "n")])
    index, record = index_and_record_pttl(admin, prefix, "q", "a")
    assert 59_000 < record <= index <= 61_000


def upgrade_recipe() -> tuple[str, str]:
    """The Lua and Python blocks of the upgrade recipe in docs/storage/redis.md."""
    doc = (Path(__file__).resolve().parents[3] / "docs/storage/redis.md").read_text()
    section = doc[doc.index("**Upgrading from a version without index expiry:**") :]
    lua = re.search(r"```lua\n(.*?)```", section, flags=re.DOTALL)
    python = re.search(r"```python(?: fragment)?\n(.*?)```", section, flags=re.DOTALL)
    assert lua is not None
    assert python is not None
    return lua.group(1), python.group(1)


def test_documented_upgrade_recipe_repairs_leaked_indexes(redis_srv, admin):
    prefix = unique_name()
    store = store_from_url(f"{redis_srv.url}?prefix={prefix}")
    try:

        def tag(partition: str) -> str:
            return partition_key(prefix, partition)

        # What older versions left behind: persistent indexes listing records Redis removed.
        admin.zadd(f"{tag('gone')}i", {"a": 0, "b": 0})
        store.create(Key("ttl", "live"), {}, ttl=30)
        admin.persist(f"{tag('ttl')}i")
        admin.zadd(f"{tag('ttl')}i", {"gone": 0})
        store.create(Key("kept", "live"), {})
        admin.zadd(f"{tag('kept')}i", {"gone": 0})
        store.create(Key("fitted", "x}i"), {}, ttl=60)  # a record key ending in "}i"
        admin.zadd(f"{tag('fitted')}i", {"old": 0})
        fitted_ttl = admin.pttl(f"{tag('fitted')}i")
        lua, python = upgrade_recipe()
        # runs the documented recipe against this test's prefix
        exec(
            python.replace('"{ledger:*}i"', f'"{{{prefix}:*}}i"'),
            {"client": admin, "PRUNE_LUA": lua},
        )
        assert admin.exists(f"{tag('gone')}i") == 0
        assert admin.zrange(f"{tag('ttl')}i", 0, -1) == [b"live"]
        assert 30_000 < admin.pttl(f"{tag('ttl')}i") <= admin.pttl(f"{tag('ttl')}r:live") + 5
        assert admin.zrange(f"{tag('kept')}i", 0, -1) == [b"live"]
        assert admin.pttl(f"{tag('kept')}i") == -1
        assert admin.zcard(f"{tag('fitted')}i") == 2, "an index with a TTL is left alone"
        assert fitted_ttl - 1_000 < admin.pttl(f"{tag('fitted')}i") <= fitted_ttl
        assert admin.type(f"{tag('fitted')}r:x}}i") == b"hash"
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# Query
# ---------------------------------------------------------------------------------------------


async def test_query_pages_by_code_point_order(store: Both, clock):
    sorts = ["a", "a/1", "a/2", "a\u00ff", "a\u0100", "a\U0001d11e", "b", "é", "ab"]
    for sort in sorts:
        await store.create(Key("p", sort), {"s": sort})
    await store.create(Key("p", "a/expired"), {}, ttl=1)
    await store.create(Key("other", "a"), {})
    clock.now += 2
    for descending in (False, True):
        for limit in (1, 2, 3, 9, 10):
            seen: list[str] = []
            cursor = None
            while True:
                page = await store.query("p", limit=limit, cursor=cursor, descending=descending)
                assert len(page.records) == limit or page.cursor is None
                seen += [r.key.sort for r in page.records]
                cursor = page.cursor
                if cursor is None:
                    break
            assert seen == sorted(sorts, reverse=descending), (descending, limit)
    page = await store.query("p", prefix="a/", limit=5)
    assert [r.key.sort for r in page.records] == ["a/1", "a/2"]
    assert page.cursor is None
    page = await store.query("p", prefix="a", limit=2, descending=True)
    assert [r.key.sort for r in page.records] == ["a\U0001d11e", "a\u0100"]
    assert [r.data["s"] for r in page.records] == ["a\U0001d11e", "a\u0100"]


async def test_exactly_limit_records_give_no_cursor(store: Both):
    for sort in "abc":
        await store.create(Key("p", sort), {})
    page = await store.query("p", limit=3)
    assert len(page.records) == 3
    assert page.cursor is None
    page = await store.query("p", limit=2)
    assert page.cursor is not None
    rest = await store.query("p", limit=2, cursor=page.cursor)
    assert [r.key.sort for r in rest.records] == ["c"]
    assert rest.cursor is None


# ---------------------------------------------------------------------------------------------
# Increment: JSON surgery in Lua must not disturb anything else
# ---------------------------------------------------------------------------------------------


async def test_increment_touches_only_the_top_level_field(store: Both):
    key = Key("p", "a")
    data = {
        "nested": {"n": 100, "s": 'x"}n'},
        "list": [],
        "empty": {},
        "big": 9223372036854775807,
        "float": 0.1,
        'q"uote': 1,
        "s": '"n":5,',
        "n": 1,
        "tail": [{"n": [1, {"n": 2}]}],
    }
    await store.create(key, data)
    record = await store.increment(key, "n", 2)
    assert record.data == {**data, "n": 3}
    assert record.version == 2
    record = await store.increment(key, 'q"uote', 1)
    assert record.data['q"uote'] == 2
    record = await store.increment(key, "ünï\n", 1)
    assert record.data["ünï\n"] == 1
    assert list(record.data)[-1] == "ünï\n", "a new field is appended like dict assignment"
    assert await store.get(key) == record


@pytest.mark.parametrize(
    ("start", "by", "expected"),
    [
        (1, 2, 3),
        (1, 1.0, 2.0),
        (1.5, 1, 2.5),
        (0.1, 0.2, 0.1 + 0.2),
        (-5, 3, -2),
        (9007199254740990, 1, 9007199254740991),
        (1e300, 1e300, 2e300),
        (0, -0.0, 0.0),
        (2.5e-8, 1, 1 + 2.5e-8),
    ],
)
async def test_increment_arithmetic_matches_python(store: Both, start, by, expected):
    key = Key("p", "n")
    await store.create(key, {"n": start})
    record = await store.increment(key, "n", by)
    assert record.data["n"] == expected
    assert type(record.data["n"]) is type(expected)


async def test_increment_starts_missing_field_and_record(store: Both):
    created = await store.increment(Key("p", "new"), "n", 2.5, ttl=50)
    assert (created.data, created.version) == ({"n": 2.5}, 1)
    assert created.expires_at is not None
    await store.create(Key("p", "empty"), {})
    assert (await store.increment(Key("p", "empty"), "n")).data == {"n": 1}


@pytest.mark.parametrize("value", ["1", True, None, [1], {"n": 1}])
async def test_non_numeric_field_is_invalid_and_unwritten(store: Both, value):
    key = Key("p", "a")
    await store.create(key, {"n": value})
    with pytest.raises(InvalidRecord):
        await store.increment(key, "n")
    with pytest.raises(InvalidRecord):
        await store.transact([Create(Key("p", "b"), {}), Increment(key, "n")])
    record = await store.get(key)
    assert record is not None
    assert (record.data, record.version) == ({"n": value}, 1)
    assert await store.get(Key("p", "b")) is None


async def test_increment_overflowing_to_infinity_is_invalid(store: Both):
    await store.create(Key("p", "a"), {"n": 1.7e308})
    with pytest.raises(InvalidRecord):
        await store.increment(Key("p", "a"), "n", 1.7e308)


# ---------------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------------


async def test_transaction_applies_all_and_returns_records(store: Both):
    await store.create(Key("p", "r"), {"v": 1})
    await store.create(Key("p", "d"), {})
    results = await store.transact(
        [
            Create(Key("p", "c"), {"c": 1}, ttl=5),
            Replace(Key("p", "r"), {"v": 2}, expected_version=1),
            Delete(Key("p", "d"), expected_version=1),
            Delete(Key("p", "never")),
            Check(Key("p", "missing"), None),
            Increment(Key("q", "i"), "n", 3),
        ]
    )
    assert [r.version if r else None for r in results] == [1, 2, None, None, None, 1]
    assert results[0] is not None
    assert results[0].expires_at is not None
    assert results[1] is not None
    assert results[1].data == {"v": 2}
    assert results[5] is not None
    assert results[5].data == {"n": 3}
    assert await store.get(Key("p", "d")) is None
    assert [r.key.sort for r in (await store.query("p")).records] == ["c", "r"]


@pytest.mark.parametrize(
    ("operation", "reason", "has_current"),
    [
        (Create(Key("p", "x"), {}), "already exists", True),
        (Replace(Key("p", "x"), {}, expected_version=2), "expected version 2, found 1", True),
        (Replace(Key("p", "gone"), {}, expected_version=1), "no live record", False),
        (Delete(Key("p", "x"), expected_version=3), "expected version 3", True),
        (Check(Key("p", "x"), None), "already exists", True),
        (Check(Key("p", "gone"), 1), "no live record", False),
    ],
)
async def test_transaction_conflict_names_the_item_and_writes_nothing(
    store: Both, operation, reason, has_current
):
    existing = await store.create(Key("p", "x"), {"x": 1})
    with pytest.raises(TransactionConflict) as failed:
        await store.transact(
            [Create(Key("p", "new"), {}), Increment(Key("p", "ctr"), "n"), operation]
        )
    assert failed.value.index == 2
    assert failed.value.operation == operation
    assert reason in failed.value.reason
    assert failed.value.current == (existing if has_current else None)
    assert await store.get(Key("p", "new")) is None
    assert await store.get(Key("p", "ctr")) is None
    assert await store.get(Key("p", "x")) == existing


async def test_cluster_option_rejects_cross_partition_transactions(redis_srv):
    client = redis.Redis.from_url(redis_srv.url)
    try:
        store = RedisStore(client, prefix=unique_name(), cluster=True)
        with pytest.raises(InvalidRecord):
            store.transact([Create(Key("a"), {}), Create(Key("b"), {})])
        assert store.get(Key("a")) is None
        assert len(store.transact([Create(Key("a", "1"), {}), Create(Key("a", "2"), {})])) == 2
        store.close()
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# Scripts: NOSCRIPT recovery and replays of the same call
# ---------------------------------------------------------------------------------------------


async def test_noscript_after_script_flush_recovers_without_double_apply(store: Both, admin):
    key = Key("p", "a")
    await store.increment(key, "n")
    for expected in (2, 3):
        admin.script_flush()
        before = command_calls(admin)
        record = await store.increment(key, "n")
        assert (record.data, record.version) == ({"n": expected}, expected)
        calls = delta(before, command_calls(admin))
        assert calls.get("cmdstat_evalsha") == 2, calls  # NOSCRIPT, then the real run
        assert calls.get("cmdstat_script|load", calls.get("cmdstat_script")) == 1, calls
    admin.script_flush()
    await store.transact([Increment(key, "n")])
    assert (await store.get(key)).data == {"n": 4}  # type: ignore[union-attr]


async def test_a_replayed_call_is_recognised_not_applied_twice(store: Both, clock):
    """What redis-py's own retry does after a lost reply: send the identical script again."""
    raw = store.store
    layout = Layout(raw.prefix)
    key = Key("p", "a")
    await store.create(key, {"n": 0})

    async def twice(call):
        return [await run_call(store, call), await run_call(store, call)]

    first, again = await twice(increment_call(layout, key, "n", 5, ttl=None, now=clock()))
    assert first == again
    assert first.data == {"n": 5}
    assert (await store.get(key)).data == {"n": 5}  # type: ignore[union-attr]

    first, again = await twice(
        replace_call(layout, key, {"n": 9}, expected_version=2, ttl=None, now=clock())
    )
    assert first == again
    assert first.version == 3

    call = transact_call(
        layout,
        [Increment(key, "n", 1), Create(Key("p", "b"), {"b": 1})],
        now=clock(),
        single_slot=False,
    )
    first, again = await twice(call)
    assert first == again
    assert (await store.get(key)).data == {"n": 10}  # type: ignore[union-attr]


async def test_a_resend_after_other_writes_returns_the_first_outcome(store: Both, clock):
    """A resend that reaches Redis after other callers wrote the record (or deleted it) must
    not apply again, and gets the first run's reply -- not AlreadyExists/VersionConflict of
    its own write, nor a later state."""
    raw = store.store
    layout = Layout(raw.prefix)
    other = Both(type(raw)(raw.client, prefix=raw.prefix, clock=clock))
    counter, doc, fresh = Key("p", "counter"), Key("p", "doc"), Key("p", "fresh")

    increment = increment_call(layout, counter, "n", 5, ttl=None, now=clock())
    first = await run_call(store, increment)
    await other.increment(counter, "n", 1)
    assert await run_call(store, increment) == first  # n == 5 at version 1, not a later state
    assert (await store.get(counter)).data == {"n": 6}  # type: ignore[union-attr]

    create = create_call(layout, doc, {"by": "first"}, ttl=None, now=clock())
    assert (await run_call(store, create)).version == 1
    await other.replace(doc, {"by": "other"}, expected_version=1)
    assert (await run_call(store, create)).data == {"by": "first"}  # not AlreadyExists
    await other.delete(doc)
    assert (await run_call(store, create)).version == 1  # and not created again
    assert await store.get(doc) is None

    await store.create(doc, {"v": 1})
    replace = replace_call(layout, doc, {"v": 2}, expected_version=1, ttl=None, now=clock())
    assert (await run_call(store, replace)).version == 2
    await other.replace(doc, {"v": 3}, expected_version=2)
    assert (await run_call(store, replace)).version == 2  # not VersionConflict of its own write
    assert (await store.get(doc)).data == {"v": 3}  # type: ignore[union-attr]

    delete = delete_call(layout, doc, expected_version=None, now=clock())
    assert await run_call(store, delete) is True
    await other.create(doc, {"again": True})
    assert await run_call(store, delete) is True  # the first run's answer...
    assert (await store.get(doc)).data == {"again": True}  # type: ignore[union-attr] # ...once

    transact = transact_call(
        layout,
        [Increment(counter, "n", 10), Create(fresh, {"f": 1}), Delete(doc)],
        now=clock(),
        single_slot=False,
    )
    first_results = await run_call(store, transact)
    await other.increment(counter, "n", 100)
    await other.create(doc, {"third": True})
    assert await run_call(store, transact) == first_results
    assert (await store.get(counter)).data == {"n": 116}  # type: ignore[union-attr]
    assert (await store.get(doc)).data == {"third": True}  # type: ignore[union-attr]
    await other.close()


async def test_outcomes_are_remembered_only_when_the_client_resends(redis_srv, admin):
    prefix = unique_name()
    never = store_from_url(f"{redis_srv.url}?prefix={prefix}")  # retries=0: nothing to remember
    resends = store_from_url(f"{redis_srv.url}?prefix={prefix}&retries=2")
    try:
        never.create(Key("p", "a"), {})
        never.increment(Key("p", "a"), "n")
        tag = partition_key(prefix, "p")
        assert not admin.keys(f"{tag}w:*")
        resends.increment(Key("p", "a"), "n")
        resends.transact([Increment(Key("p", "a"), "n")])
        markers = admin.keys(f"{tag}w:*")
        assert len(markers) == 2
        assert all(0 < admin.pttl(marker) <= REPLAY_WINDOW_S * 1000 for marker in markers)
        with pytest.raises(AlreadyExists):
            resends.create(Key("p", "a"), {})  # a conflict writes nothing, remembers nothing
        assert len(admin.keys(f"{tag}w:*")) == 2
    finally:
        never.close()
        resends.close()


def test_which_clients_may_resend():
    assert client_may_resend(redis.Redis())  # redis-py retries by default
    assert client_may_resend(redis.asyncio.Redis())
    assert not client_may_resend(redis.Redis(retry=Retry(NoBackoff(), 0)))
    assert not client_may_resend(redis.asyncio.Redis(retry=AsyncRetry(NoBackoff(), 0)))
    assert client_may_resend(redis.Redis(retry=Retry(NoBackoff(), 1)))
    no_retry_pool = redis.ConnectionPool()
    assert not client_may_resend(redis.Redis(connection_pool=no_retry_pool))
    with_errors = redis.ConnectionPool(retry_on_error=[redis.TimeoutError])
    assert client_may_resend(redis.Redis(connection_pool=with_errors))


# ---------------------------------------------------------------------------------------------
# Errors and client ownership
# ---------------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sync_store_unavailable_on_closed_port():
    store = open_store(f"redis://127.0.0.1:{closed_port()}/0?prefix=x&socket_connect_timeout=1")
    try:
        started = time.monotonic()
        for operation in (
            lambda: store.get(Key("p")),
            lambda: store.create(Key("p"), {}),
            lambda: store.query("p"),
            lambda: store.transact([Check(Key("p"), None)]),
        ):
            with pytest.raises(StoreUnavailable) as raised:
                operation()
            assert isinstance(raised.value.__cause__, redis.ConnectionError)
        assert time.monotonic() - started < 5
    finally:
        store.close()


async def test_async_store_unavailable_on_closed_port():
    store = open_async_store(f"redis://127.0.0.1:{closed_port()}/0?prefix=x")
    try:
        with pytest.raises(StoreUnavailable):
            await store.increment(Key("p"), "n")
        with pytest.raises(StoreUnavailable):
            await store.get(Key("p"))
    finally:
        await store.close()


def test_read_timeout_is_store_unavailable(redis_srv, admin):
    """A server stuck in a long script: our short socket timeout fires (redis-py raises)."""
    store = store_from_url(f"{redis_srv.url}?prefix={unique_name()}&timeout=0.2")
    store.get(Key("p"))  # connect first, so only the read can time out
    busy = "local t = redis.call('TIME') repeat until redis.call('TIME')[1] - t[1] >= 2"
    blocker = threading.Thread(target=admin.eval, args=(busy, 0))
    blocker.start()
    try:
        deadline = time.monotonic() + 1.5
        with pytest.raises(StoreUnavailable) as raised:  # noqa: PT012 - wait for the script
            while time.monotonic() < deadline:
                store.get(Key("p"))
                time.sleep(0.02)
        assert isinstance(raised.value.__cause__, redis.TimeoutError)
    finally:
        blocker.join()
        store.close()


def test_foreign_value_at_a_record_key_is_a_storage_error(redis_srv, admin):
    store = store_from_url(f"{redis_srv.url}?prefix={unique_name()}")
    try:
        admin.set(f"{partition_key(store.prefix, 'p')}r:a", "not a hash")  # type: ignore[attr-defined]
        with pytest.raises(StorageError) as raised:
            store.create(Key("p", "a"), {})
        assert not isinstance(raised.value, StoreUnavailable | InvalidRecord)
    finally:
        store.close()


async def test_caller_clients_are_not_closed_and_decode_responses_works(redis_srv):
    client = redis.Redis.from_url(redis_srv.url, decode_responses=True)
    store = RedisStore(client, prefix=unique_name())
    record = store.create(Key("p", "é"), {"n": 1}, ttl=30)
    assert store.get(Key("p", "é")) == record
    assert store.increment(Key("p", "é"), "n").data == {"n": 2}
    assert [r.key.sort for r in store.query("p").records] == ["é"]
    store.close()
    assert client.ping() is True
    client.close()

    async_client = redis.asyncio.Redis.from_url(redis_srv.url)
    async_store = AsyncRedisStore(async_client, prefix=unique_name())
    await async_store.create(Key("p"), {})
    await async_store.close()
    assert await async_client.ping() is True
    await async_client.aclose()


async def test_run_script_maps_errors_like_the_store(store: Both):
    raw = store.store
    key = partition_key(raw.prefix, "p") + "n"
    bump = raw.client.register_script("return redis.call('INCR', KEYS[1])")
    invalid = raw.client.register_script("return redis.error_reply('STALWART_INVALID nope')")
    assert await store.run_script(bump, [key]) == 1
    with pytest.raises(InvalidRecord, match="nope"):
        await store.run_script(invalid)


def test_url_built_clients_have_explicit_timeouts_and_no_hidden_retries(redis_srv):
    store = store_from_url(f"{redis_srv.url}?prefix=x&socket_connect_timeout=1.5&timeout=3")
    assert isinstance(store, RedisStore)
    kwargs = store.client.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == 1.5
    assert kwargs["socket_timeout"] == 3
    assert kwargs["health_check_interval"] == 30
    assert kwargs["retry"].get_retries() == 0
    store.close()


# ---------------------------------------------------------------------------------------------
# Concurrency (real threads / tasks)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
async def test_concurrent_increments_and_creates(store: Both, round_):
    key = Key("p", f"ctr{round_}")
    await asyncio.gather(*(store.increment(key, "n") for _ in range(60)))
    record = await store.get(key)
    assert record is not None
    assert (record.data, record.version) == ({"n": 60}, 60)

    outcomes = await asyncio.gather(
        *(store.create(Key("p", f"one{round_}"), {"i": i}) for i in range(20)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, AlreadyExists)]
    assert len(winners) == 1
    assert len(losers) == 19
    assert all(loser.current == winners[0] for loser in losers)


# ---------------------------------------------------------------------------------------------
# A reply lost on the wire: redis-py's own retry resends the script
# ---------------------------------------------------------------------------------------------


class ReplyCuttingProxy:
    """TCP proxy to Redis that can swallow the next server reply and drop the connection.

    That is the dangerous case for non-idempotent scripts: the server applied the write, the
    client saw a ConnectionError, and redis-py's retry sends the very same EVALSHA again.
    """

    def __init__(self, port: int) -> None:
        self._upstream = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.cut_next_reply = threading.Event()
        self.replies_cut = 0
        self.connections = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            self.connections += 1
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.cut_next_reply.is_set():
                    self.cut_next_reply.clear()
                    self.replies_cut += 1
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_redis_py_retry_after_a_lost_reply_does_not_double_apply(redis_srv, admin, mode):
    for source in SCRIPTS.values():
        admin.script_load(source)
    proxy = ReplyCuttingProxy(redis_srv.port)
    url = f"redis://127.0.0.1:{proxy.port}/0?prefix={unique_name()}&retries=1"
    raw = store_from_url(url) if mode == "sync" else async_store_from_url(url)
    store = Both(raw)  # type: ignore[arg-type]
    try:
        counter, doc = Key("p", "ctr"), Key("p", "doc")
        await store.create(counter, {"n": 0})
        await store.create(doc, {"v": 0})

        proxy.cut_next_reply.set()
        record = await store.increment(counter, "n", 1)
        assert proxy.replies_cut == 1
        assert (record.data, record.version) == ({"n": 1}, 2)
        assert (await store.get(counter)).data == {"n": 1}  # type: ignore[union-attr]

        proxy.cut_next_reply.set()
        created = await store.create(Key("p", "new"), {"x": 1})
        assert created.version == 1  # not AlreadyExists of its own write

        proxy.cut_next_reply.set()
        replaced = await store.replace(doc, {"v": 1}, expected_version=1)
        assert replaced.version == 2  # not VersionConflict with its own write

        proxy.cut_next_reply.set()
        results = await store.transact([Increment(counter, "n", 10), Delete(doc)])
        assert results[0] is not None
        assert results[0].data == {"n": 11}
        assert (await store.get(counter)).data == {"n": 11}  # type: ignore[union-attr]
        assert proxy.replies_cut == 4
        assert proxy.connections >= 5
    finally:
        await store.close()
        proxy.close()


async def test_public_surface(redis_srv):
    import stalwart.storage.redis as engine  # noqa: PLC0415

    assert sorted(engine.__all__) == sorted(
        [
            "MAX_ITEM_BYTES",
            "MAX_TRANSACTION_ITEMS",
            "AsyncRedisStore",
            "RedisStore",
            "async_store_from_url",
            "partition_key",
            "store_from_url",
            "translate_error",
        ]
    )
    sync_store = store_from_url(f"{redis_srv.url}?prefix=x")
    async_store = async_store_from_url(f"{redis_srv.url}?prefix=x")
    assert isinstance(sync_store, Store)
    assert isinstance(async_store, AsyncStore)
    assert (sync_store.max_transaction_items, sync_store.max_item_bytes) == (100, 512 * 1024)
    sync_store.close()
    await async_store.close()


async def test_corrupt_record_is_a_storage_error_not_a_json_error(store: Both, admin):
    await store.create(Key("p", "a"), {})
    admin.hset(f"{partition_key(store.store.prefix, 'p')}r:a", "d", "{not json")
    with pytest.raises(StorageError) as raised:
        await store.get(Key("p", "a"))
    assert type(raised.value) is StorageError
