# Copyright 2026 stalwart contributors
"""The DynamoDB engine against a real moto server: conditions, ALL_OLD, TTL, round trips."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from aiobotocore.session import get_session
from botocore.config import Config

from servers import RunningServer, free_port
from stalwart.storage import (
    AlreadyExists,
    AsyncStore,
    Check,
    Create,
    Delete,
    Increment,
    InvalidRecord,
    Key,
    Record,
    Replace,
    StorageError,
    Store,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
)
from stalwart.storage.dynamodb import (
    AsyncDynamoDBStore,
    DynamoDBStore,
    async_create_table,
    async_store_from_url,
    create_table,
    store_from_url,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T0 = 1_800_000_000.0


class ManualClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def url(store_url_factory: Callable[[str], Callable[[], str]]) -> str:
    return store_url_factory("dynamodb")()


@pytest.fixture
def store(url: str, clock: ManualClock) -> Iterator[DynamoDBStore]:
    with store_from_url(url, clock=clock) as opened:
        yield opened


class CallCounter:
    """Counts DynamoDB API calls made through one client (botocore's before-call event)."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)

    def take(self) -> list[str]:
        names, self.names = self.names, []
        return names


@pytest.fixture
def calls(store: DynamoDBStore) -> CallCounter:
    return CallCounter(store.client)


def raw_item(store: DynamoDBStore, key: Key) -> dict[str, Any] | None:
    sort = key.sort or "\x00"
    reply = store.client.get_item(
        TableName=store.table,
        ConsistentRead=True,
        Key={"pk": {"S": key.partition}, "sk": {"S": sort}},
    )
    return reply.get("Item")


K = Key("acct-1", "balance")


def test_protocols(store: DynamoDBStore, url: str) -> None:
    assert isinstance(store, Store)
    assert isinstance(async_store_from_url(url), AsyncStore)
    assert store.max_transaction_items == 100


def test_create_get_round_trip_keeps_json_types(store: DynamoDBStore) -> None:
    data = {
        "int": 3,
        "float": 1.0,
        "neg": -2.5,
        "big": 2**63 - 1,
        "long": -(2**63),
        "huge_exp": 1e200,
        "zero_float": 0.0,
        "bool": True,
        "none": None,
        "text": "héllo",
        "empty": "",
        "list": [1, 2.0, {"a": None}],
        "nested": {"x": 1.5, "y": [True]},
        "": "empty name",
    }
    created = store.create(Key("p", ""), data)
    assert created == Record(Key("p", ""), data, 1, None)
    got = store.get(Key("p", ""))
    assert got == created
    assert got is not None
    for name, value in data.items():
        assert type(got.data[name]) is type(value), name


def test_create_conflict_returns_current_in_one_round_trip(
    store: DynamoDBStore, calls: CallCounter, clock: ManualClock
) -> None:
    first = store.create(K, {"cents": 5}, ttl=60)
    assert calls.take() == ["PutItem"]
    with pytest.raises(AlreadyExists) as caught:
        store.create(K, {"cents": 9})
    assert calls.take() == ["PutItem"]
    assert caught.value.current == first
    assert first.expires_at == T0 + 60
    clock.now += 60  # expires_at <= now: absent
    again = store.create(K, {"cents": 9})
    assert again == Record(K, {"cents": 9}, 1, None)


def test_stored_layout_and_ttl_attribute(store: DynamoDBStore) -> None:
    store.create(K, {"n": 1, "f": 2.5, "s": "x"}, ttl=10.25)
    item = raw_item(store, K)
    assert item is not None
    assert item["exp"] == {"N": str(int(T0) + 11)}  # ceil, integer seconds for DynamoDB TTL
    assert float(item["exp_at"]["N"]) == T0 + 10.25
    assert item["f:n"] == {"N": "1"}
    assert item["f:s"] == {"S": '"x"'}
    assert item["fl"] == {"SS": ["f"]}
    store.replace(K, {"n": 2}, expected_version=1)
    item = raw_item(store, K)
    assert item is not None
    assert item["exp"] == {"NULL": True}
    assert "fl" not in item


def test_replace(store: DynamoDBStore, calls: CallCounter, clock: ManualClock) -> None:
    store.create(K, {"cents": 1}, ttl=30)
    replaced = store.replace(K, {"cents": 2}, expected_version=1)
    assert replaced == Record(K, {"cents": 2}, 2, None)
    calls.take()
    with pytest.raises(VersionConflict) as caught:
        store.replace(K, {"cents": 3}, expected_version=1)
    assert calls.take() == ["PutItem"]
    assert caught.value.current == replaced
    with pytest.raises(VersionConflict) as missing:
        store.replace(Key("nobody"), {}, expected_version=1)
    assert missing.value.current is None
    store.replace(K, {"cents": 3}, expected_version=2, ttl=5)
    clock.now += 5
    with pytest.raises(VersionConflict) as expired:
        store.replace(K, {"cents": 4}, expected_version=3)
    assert expired.value.current is None  # the ALL_OLD item is expired: reported as absent


def test_delete(store: DynamoDBStore, calls: CallCounter, clock: ManualClock) -> None:
    assert store.delete(K) is False
    store.create(K, {"a": 1})
    with pytest.raises(VersionConflict) as caught:
        store.delete(K, expected_version=2)
    assert caught.value.current is not None
    assert caught.value.current.version == 1
    calls.take()
    assert store.delete(K, expected_version=1) is True
    assert calls.take() == ["DeleteItem"]
    assert store.get(K) is None
    store.create(K, {"a": 1}, ttl=1)
    clock.now += 1
    assert store.delete(K) is False  # expired: not a live record
    with pytest.raises(VersionConflict) as expired:
        store.delete(K, expected_version=1)
    assert expired.value.current is None


def test_increment(store: DynamoDBStore, calls: CallCounter, clock: ManualClock) -> None:
    first = store.increment(K, "hits", 2, ttl=100)
    assert calls.take() == ["UpdateItem"]
    assert first == Record(K, {"hits": 2}, 1, T0 + 100)
    second = store.increment(K, "hits")
    assert calls.take() == ["UpdateItem"]
    assert second == Record(K, {"hits": 3}, 2, T0 + 100)
    assert type(second.data["hits"]) is int
    other = store.increment(K, "misses", 1, ttl=5)  # existing record keeps its expiry
    assert other == Record(K, {"hits": 3, "misses": 1}, 3, T0 + 100)
    as_float = store.increment(K, "hits", 0.5)
    assert as_float.data["hits"] == 3.5
    back = store.increment(K, "hits", 1)
    assert back.data["hits"] == 4.5
    assert type(back.data["hits"]) is float
    whole = store.increment(Key("w"), "x", 0.5)
    whole = store.increment(Key("w"), "x", 0.5)
    assert whole.data == {"x": 1.0}
    assert type(whole.data["x"]) is float


def test_increment_never_expiring_record_stays_permanent(store: DynamoDBStore) -> None:
    store.create(K, {"n": 1})
    after = store.increment(K, "n", ttl=10)
    assert after.expires_at is None
    item = raw_item(store, K)
    assert item is not None
    assert item["exp"] == {"NULL": True}


def test_increment_rejects_non_numeric_field(store: DynamoDBStore, calls: CallCounter) -> None:
    store.create(K, {"name": "x", "flag": True})
    calls.take()
    for field in ("name", "flag"):
        with pytest.raises(InvalidRecord):
            store.increment(K, field)
    assert calls.take() == ["UpdateItem"] * 2
    assert store.get(K) == Record(K, {"name": "x", "flag": True}, 1, None)


def test_increment_resets_an_expired_record(
    store: DynamoDBStore, calls: CallCounter, clock: ManualClock
) -> None:
    store.create(K, {"n": 10, "other": "gone"}, ttl=1)
    clock.now += 2
    calls.take()
    fresh = store.increment(K, "n", 1, ttl=50)
    assert calls.take() == ["UpdateItem", "PutItem"]  # the documented rare second round trip
    assert fresh == Record(K, {"n": 1}, 1, clock.now + 50)
    assert store.get(K) == fresh


def test_query_pages_skip_expired_and_fill_the_limit(
    store: DynamoDBStore, clock: ManualClock
) -> None:
    for i in range(12):
        store.create(Key("q", f"item-{i:02d}"), {"i": i}, ttl=10 if i % 3 == 0 else None)
    store.create(Key("q", ""), {"root": True})
    store.create(Key("q", "other"), {})
    store.create(Key("q2", "item-00"), {})
    clock.now += 10
    live = [i for i in range(12) if i % 3]
    page = store.query("q", prefix="item-", limit=3)
    assert [r.data["i"] for r in page.records] == live[:3]
    seen = [r.data["i"] for r in page.records]
    while page.cursor is not None:
        page = store.query("q", prefix="item-", limit=3, cursor=page.cursor)
        assert len(page.records) == 3 or page.cursor is None
        seen += [r.data["i"] for r in page.records]
    assert seen == live
    everything = store.query("q", limit=1000)
    assert [r.key.sort for r in everything.records][:2] == ["", "item-01"]
    assert everything.cursor is None
    down = store.query("q", prefix="item-", limit=4, descending=True)
    assert [r.data["i"] for r in down.records] == live[::-1][:4]
    rest = store.query("q", prefix="item-", limit=100, descending=True, cursor=down.cursor)
    assert [r.data["i"] for r in rest.records] == live[::-1][4:]
    assert rest.cursor is None


def test_query_rejects_bad_arguments(store: DynamoDBStore) -> None:
    for kwargs in (
        {"limit": 0},
        {"limit": 1001},
        {"limit": True},
        {"cursor": "!!"},
        {"cursor": store.query("q", limit=1).cursor or "e30="},
    ):
        with pytest.raises(InvalidRecord):
            store.query("q", **kwargs)
    store.create(Key("a", "1"), {})
    store.create(Key("a", "2"), {})
    cursor = store.query("a", limit=1).cursor
    assert cursor is not None
    with pytest.raises(InvalidRecord, match="another query"):
        store.query("b", cursor=cursor)


def test_transact_results_and_conflicts(store: DynamoDBStore, calls: CallCounter) -> None:
    store.create(Key("t", "a"), {"v": 1})
    store.create(Key("t", "c"), {"n": 5})
    calls.take()
    results = store.transact(
        [
            Create(Key("t", "b"), {"v": 2}, ttl=30),
            Replace(Key("t", "a"), {"v": 3}, expected_version=1),
            Increment(Key("t", "c"), "n", 2),
            Increment(Key("t", "new"), "n", 1.5),
            Delete(Key("t", "absent")),
            Check(Key("t", "nothing"), None),
        ]
    )
    assert calls.take() == ["TransactGetItems", "TransactWriteItems"]
    assert results == [
        Record(Key("t", "b"), {"v": 2}, 1, T0 + 30),
        Record(Key("t", "a"), {"v": 3}, 2, None),
        Record(Key("t", "c"), {"n": 7}, 2, None),
        Record(Key("t", "new"), {"n": 1.5}, 1, None),
        None,
        None,
    ]
    for record in results:
        if record is not None:
            assert store.get(record.key) == record
    calls.take()
    with pytest.raises(TransactionConflict) as caught:
        store.transact([Delete(Key("t", "b")), Check(Key("t", "a"), 1)])
    assert calls.take() == ["TransactWriteItems"]
    assert caught.value.index == 1
    assert caught.value.current is not None
    assert caught.value.current.version == 2
    assert store.get(Key("t", "b")) is not None  # nothing written


def test_transact_limits(store: DynamoDBStore) -> None:
    ops = [Create(Key("many", str(i)), {}) for i in range(101)]
    with pytest.raises(InvalidRecord):
        store.transact(ops)
    assert len(store.transact(ops[:100])) == 100
    store.create(Key("x"), {"s": "text"})
    with pytest.raises(InvalidRecord):
        store.transact([Increment(Key("x"), "s")])


def test_oversize_data_is_invalid(store: DynamoDBStore) -> None:
    with pytest.raises(InvalidRecord):
        store.create(K, {"blob": "x" * 350_001})
    with pytest.raises(InvalidRecord):
        store.create(Key("€" * 700), {})
    with pytest.raises(InvalidRecord):
        store.create(Key("p", "é" * 513), {})
    assert store.query("acct-1").records == []


def test_create_table_enables_ttl_and_is_idempotent(moto_srv: RunningServer) -> None:
    client = boto3.client("dynamodb", endpoint_url=moto_srv.url, region_name="us-east-1")
    try:
        create_table(client, "explicit-table")
        create_table(client, "explicit-table")
        ttl = client.describe_time_to_live(TableName="explicit-table")
        assert ttl["TimeToLiveDescription"] == {
            "TimeToLiveStatus": "ENABLED",
            "AttributeName": "exp",
        }
        table = client.describe_table(TableName="explicit-table")["Table"]
        assert table["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    finally:
        client.close()


def test_missing_table_is_a_storage_error(moto_srv: RunningServer) -> None:
    with store_from_url(
        f"dynamodb://never-created?region=us-east-1&endpoint_url={moto_srv.url}"
    ) as store:
        with pytest.raises(StorageError, match="not found") as caught:
            store.get(K)
        assert not isinstance(caught.value, StoreUnavailable)


def closed_port_url() -> str:
    return (
        f"dynamodb://some-table?region=us-east-1&endpoint_url=http://127.0.0.1:{free_port()}"
        "&timeout=0.5&max_attempts=1"
    )


def test_unreachable_server_is_store_unavailable() -> None:
    with store_from_url(closed_port_url()) as store:
        with pytest.raises(StoreUnavailable):
            store.get(K)
        with pytest.raises(StoreUnavailable):
            store.increment(K, "n")


async def test_async_unreachable_server_is_store_unavailable() -> None:
    store = async_store_from_url(closed_port_url())
    try:
        with pytest.raises(StoreUnavailable):
            await store.create(K, {})
    finally:
        await store.close()


def test_unreachable_when_creating_table_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        store_from_url(closed_port_url() + "&create=true")


def test_a_callers_client_is_never_closed(moto_srv: RunningServer, url: str) -> None:
    owner = store_from_url(url)
    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_srv.url,
        region_name="us-east-1",
        config=Config(connect_timeout=2, read_timeout=5),
    )
    borrowed = DynamoDBStore(client, table=owner.table)
    borrowed.create(K, {"a": 1})
    borrowed.close()
    assert client.get_item(
        TableName=owner.table, Key={"pk": {"S": K.partition}, "sk": {"S": K.sort}}
    )["Item"]
    owner.close()
    client.close()


@pytest.mark.slow
def test_threads_increment_and_create_race(store: DynamoDBStore) -> None:
    threads, per_thread = 8, 15
    counter = Key("race", "counter")

    def bump(_: int) -> None:
        for _ in range(per_thread):
            store.increment(counter, "n")

    def claim(i: int) -> str:
        try:
            store.create(Key("race", "claim"), {"owner": i})
        except AlreadyExists as exc:
            return "lost" if exc.current is not None else "lost without current"
        return "won"

    for _ in range(3):
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(bump, range(threads)))
            outcomes = list(pool.map(claim, range(threads)))
        assert sorted(outcomes) == ["lost"] * (threads - 1) + ["won"]
        store.delete(Key("race", "claim"))
    final = store.get(counter)
    assert final is not None
    assert final.data == {"n": 3 * threads * per_thread}
    assert final.version == 3 * threads * per_thread


def test_threads_increment_inside_transactions(store: DynamoDBStore) -> None:
    counter = Key("race", "tx-counter")
    barrier = threading.Barrier(4)

    def bump(_: int) -> None:
        barrier.wait()
        for _ in range(5):
            store.transact([Increment(counter, "n", 1), Increment(Key("race", "b"), "m", 2)])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(bump, range(4)))
    final = store.get(counter)
    assert final is not None
    assert final.data == {"n": 20}
    other = store.get(Key("race", "b"))
    assert other is not None
    assert other.data == {"m": 40}


async def test_async_store_owns_and_closes_its_client(url: str, clock: ManualClock) -> None:
    store = async_store_from_url(url, clock=clock)
    with pytest.raises(StorageError):
        _ = store.client  # not opened yet: no I/O at construction
    created = await store.create(K, {"a": 1}, ttl=5)
    assert await store.get(K) == created
    client = store.client
    with pytest.raises(AlreadyExists) as caught:
        await store.create(K, {"a": 2})
    assert caught.value.current == created
    assert (await store.increment(K, "a", 2)).data == {"a": 3}
    results = await asyncio.gather(*(store.increment(K, "a") for _ in range(20)))
    assert sorted(r.version for r in results) == list(range(3, 23))
    assert (await store.query("acct-1")).records[0].data == {"a": 23}
    assert await store.transact([Check(K, 22)]) == [None]
    assert await store.delete(K, expected_version=22) is True
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.get(K)
    # The owned aiobotocore client was exited: aiobotocore marks its HTTP session unusable.
    assert client._endpoint.http_session._sessions is None


async def test_async_store_on_a_callers_client(moto_srv: RunningServer) -> None:
    session = get_session()
    async with session.create_client(
        "dynamodb", endpoint_url=moto_srv.url, region_name="us-east-1"
    ) as client:
        await async_create_table(client, "callers-table")
        await async_create_table(client, "callers-table")
        store = AsyncDynamoDBStore(client, table="callers-table")
        async with store:
            await store.create(K, {"a": 1})
        assert store.client is client
        reply = await client.get_item(
            TableName="callers-table", Key={"pk": {"S": K.partition}, "sk": {"S": K.sort}}
        )
        assert reply["Item"]["f:a"] == {"N": "1"}
