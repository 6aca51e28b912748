"""The MongoDB engine against a real server (secantusdb from the ``mongodb_srv`` fixture).

Tests that do not race run twice: with the server detected (secantusdb, so its workarounds
run) and with ``server="mongodb"`` forced, where secantusdb answers every uncontended command
as MongoDB does, so MongoDB's one-command paths run on a live server too. Concurrency tests run
detected only: a contended upsert is where secantusdb differs (see test_mongodb_secantusdb.py).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, MongoClient, monitoring

from conftest import unique_name
from servers import RunningServer, free_port
from stalwart.storage import (
    AlreadyExists,
    Check,
    Create,
    Increment,
    InvalidRecord,
    Key,
    Record,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
)
from stalwart.storage import _mongodb_plan as plans
from stalwart.storage._mongodb_plan import ServerChoice
from stalwart.storage.mongodb import (
    AsyncMongoStore,
    MongoStore,
    async_store_from_url,
    ensure_indexes,
    store_from_url,
)

FAIL_APP = "stalwart-failpoint-test"


class FakeClock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


class CommandLog(monitoring.CommandListener):
    """Counts the commands a client sends (one entry per round trip)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[str]:
        names, self.names = self.names, []
        return names


@pytest.fixture(scope="module")
def command_log() -> CommandLog:
    return CommandLog()


@pytest.fixture(scope="module")
def client(mongodb_srv: RunningServer, command_log: CommandLog) -> Iterator[MongoClient]:
    mongo: MongoClient = MongoClient(
        mongodb_srv.url,
        serverSelectionTimeoutMS=5000,
        timeoutMS=10000,
        event_listeners=[command_log],
    )
    yield mongo
    mongo.close()


@pytest.fixture
def collection(client: MongoClient, command_log: CommandLog):
    coll = client["stalwart_unit"][unique_name("c")]
    ensure_indexes(coll)
    command_log.take()
    return coll


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["auto", "mongodb"], ids=["detected", "forced-mongodb"])
def server(request: pytest.FixtureRequest) -> ServerChoice:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def store(collection, clock: FakeClock, server: ServerChoice) -> MongoStore:
    return MongoStore(collection, clock=clock, server=server)


@pytest.fixture
def detected_store(collection, clock: FakeClock) -> MongoStore:
    """A store that detects secantusdb, for the concurrency tests."""
    return MongoStore(collection, clock=clock)


def base_url(server: RunningServer) -> str:
    return server.url.split("/?")[0]


# --- indexes and document shape --------------------------------------------------------------


def test_url_store_creates_the_query_and_ttl_indexes(mongodb_srv: RunningServer) -> None:
    name = unique_name("u")
    store = store_from_url(
        f"{base_url(mongodb_srv)}/stalwart_unit?collection={name}&directConnection=true&create=true"
    )
    try:
        indexes = store.collection.index_information()
        assert indexes["stalwart_ttl"]["key"] == [("exp", 1)]
        assert indexes["stalwart_ttl"]["expireAfterSeconds"] == 0
        assert indexes["stalwart_partition_sort"]["key"] == [("_id.p", 1), ("_id.s", 1)]
        assert store.collection.name == name
    finally:
        store.close()


async def test_async_url_store_creates_indexes_on_first_use(mongodb_srv: RunningServer) -> None:
    name = unique_name("u")
    store = async_store_from_url(
        f"{base_url(mongodb_srv)}/stalwart_unit?collection={name}&directConnection=true&create=true"
    )
    try:
        assert await store.get(Key("p")) is None
        indexes = await store.collection.index_information()
        assert indexes["stalwart_ttl"]["expireAfterSeconds"] == 0
        assert "stalwart_partition_sort" in indexes
    finally:
        await store.close()


def test_document_shape(store: MongoStore, clock: FakeClock) -> None:
    store.create(Key("acct", "bal"), {"cents": 5, "tags": ["a"]}, ttl=60)
    store.increment(Key("acct", "bal"), "cents", 7)
    raw = store.collection.find_one({"_id": {"p": "acct", "s": "bal"}})
    assert raw is not None
    assert raw["d"] == {"cents": 12, "tags": ["a"]}
    assert type(raw["d"]["cents"]) is int
    assert raw["v"] == 2
    assert raw["e"] == pytest.approx(clock.now + 60)
    assert isinstance(raw["exp"], datetime)
    assert raw["exp"].timestamp() == pytest.approx(clock.now + 60, abs=0.002)
    assert isinstance(raw["w"], ObjectId)
    no_expiry = store.create(Key("acct", "other"), {})
    assert no_expiry.expires_at is None
    assert "exp" not in (store.collection.find_one({"_id": {"p": "acct", "s": "other"}}) or {})


def test_ttl_index_physically_removes_expired_records(store: MongoStore, clock: FakeClock) -> None:
    clock.now = time.time() - 100  # records written "100 s ago" with a 1 s TTL
    store.create(Key("p", "old"), {}, ttl=1)
    store.create(Key("p", "kept"), {})
    store.collection.database.client.admin.command({"secantusAdmin.pruneTtl": 1})
    ids = sorted(doc["_id"]["s"] for doc in store.collection.find({}))
    assert ids == ["kept"]


# --- round trips -----------------------------------------------------------------------------


def fails(error: type[Exception], call, *args, **kwargs) -> None:
    with pytest.raises(error):
        call(*args, **kwargs)


def test_each_single_record_operation_is_one_round_trip(
    store: MongoStore, server: ServerChoice, command_log: CommandLog
) -> None:
    store.create(Key("rt", "warm"), {})  # the client's first create may detect the server
    command_log.take()
    key = Key("rt", "k")
    # A counter's first increment: one upsert on MongoDB; update + insert on secantusdb.
    first_increment = ["findAndModify"] if server == "mongodb" else ["findAndModify", "insert"]
    steps = [
        (lambda: store.create(key, {"n": 1}), ["findAndModify"]),
        (lambda: fails(AlreadyExists, store.create, key, {}), ["findAndModify"]),
        (lambda: store.replace(key, {"n": 2}, expected_version=1), ["findAndModify"]),
        (
            lambda: fails(VersionConflict, store.replace, key, {}, expected_version=1),
            ["findAndModify"],
        ),
        (lambda: store.increment(key, "n"), ["findAndModify"]),
        (lambda: store.increment(Key("rt", "new"), "n"), first_increment),
        (lambda: store.get(key), ["find"]),
        (lambda: store.query("rt"), ["find"]),
        (lambda: store.delete(key, expected_version=3), ["findAndModify"]),
        (lambda: store.delete(key), ["findAndModify"]),
        # Documented exception: a conditional delete that misses reads the current record.
        (
            lambda: fails(VersionConflict, store.delete, key, expected_version=3),
            ["findAndModify", "find"],
        ),
    ]
    for step, expected in steps:
        step()
        assert command_log.take() == expected
    assert store.get(Key("rt", "new")).data == {"n": 1}  # type: ignore[union-attr]


def fresh_deployment_url(server: RunningServer) -> str:
    """The test server under a name no other client of this session uses: the detection
    cache is keyed by client equality, i.e. by seed list (one deployment, one answer)."""
    return f"mongodb://localhost:{server.port}/?directConnection=true"


def test_the_server_is_detected_once_per_client(mongodb_srv: RunningServer, collection) -> None:
    log = CommandLog()
    mongo: MongoClient = MongoClient(
        fresh_deployment_url(mongodb_srv), timeoutMS=10000, event_listeners=[log]
    )
    try:
        coll = mongo[collection.database.name][collection.name]
        first, second = MongoStore(coll), MongoStore(coll)
        first.get(Key("d", "k"))
        fails(VersionConflict, first.replace, Key("d", "k"), {}, expected_version=1)
        assert log.take() == ["find", "findAndModify"]  # get, replace, delete, query never ask
        first.create(Key("d", "k"), {})
        assert log.take() == ["buildInfo", "findAndModify"]
        second.create(Key("d", "j"), {})
        second.increment(Key("d", "c"), "n")
        assert log.take() == ["findAndModify", "findAndModify", "insert"]  # cached: secantusdb
        MongoStore(coll, server="mongodb").increment(Key("d", "c2"), "n")
        assert log.take() == ["findAndModify"]  # told, not detected
    finally:
        mongo.close()


async def test_the_async_store_detects_the_server_once_per_client(
    mongodb_srv: RunningServer, collection
) -> None:
    log = CommandLog()
    mongo: AsyncMongoClient = AsyncMongoClient(
        fresh_deployment_url(mongodb_srv), timeoutMS=10000, event_listeners=[log]
    )
    try:
        coll = mongo[collection.database.name][collection.name]
        await AsyncMongoStore(coll).increment(Key("ad", "c"), "n")
        await AsyncMongoStore(coll).increment(Key("ad", "c2"), "n")
        assert log.take() == ["buildInfo", "findAndModify", "insert", "findAndModify", "insert"]
        forced = AsyncMongoStore(coll, server="mongodb")
        assert (await forced.increment(Key("ad", "c3"), "n", 5)).data == {"n": 5}
        assert log.take() == ["findAndModify"]
    finally:
        await mongo.close()


def test_a_write_applied_twice_is_recognised_as_ours(
    detected_store: MongoStore, clock: FakeClock
) -> None:
    """The write token, without fail points: the same command run twice (what a server that
    re-executes a retried write does) leaves the document as the first run wrote it, and the
    decoder still sees its own write."""
    key, now = Key("twice", "k"), clock.now
    token = ObjectId()
    command = plans.create_command(key, {"n": 1}, None, now, token)
    for _ in range(2):
        after = detected_store.collection.find_one_and_update(
            command.filter, command.pipeline, upsert=True, return_document=True
        )
        assert after is not None
        outcome = plans.create_outcome(after, Record(key, {"n": 1}, 1, None), now, token)
        assert outcome == Record(key, {"n": 1}, 1, None)
    bump = plans.increment_command(
        key, "n", 10, expires_at=None, now=now, token=ObjectId(), upsert=True
    )
    for _ in range(2):
        after = detected_store.collection.find_one_and_update(
            bump.filter, bump.pipeline, upsert=True, return_document=True
        )
    assert detected_store.get(key).data == {"n": 11}  # type: ignore[union-attr]


# --- conflict paths and expiry ---------------------------------------------------------------


def test_conflicts_carry_the_current_record(store: MongoStore) -> None:
    key = Key("c", "k")
    first = store.create(key, {"a": 1})
    with pytest.raises(AlreadyExists) as exists:
        store.create(key, {"a": 2})
    assert exists.value.current == first
    with pytest.raises(VersionConflict) as conflict:
        store.replace(key, {}, expected_version=5)
    assert conflict.value.current == first
    with pytest.raises(VersionConflict) as conflict:
        store.delete(key, expected_version=5)
    assert conflict.value.current == first
    with pytest.raises(VersionConflict) as conflict:
        store.replace(Key("c", "absent"), {}, expected_version=1)
    assert conflict.value.current is None


def test_expired_records_are_absent_for_every_operation(
    store: MongoStore, clock: FakeClock
) -> None:
    key = Key("x", "k")
    store.create(key, {"n": 1}, ttl=10)
    clock.now += 10  # expires_at <= now: gone
    assert store.get(key) is None
    assert store.query("x").records == []
    with pytest.raises(VersionConflict) as conflict:
        store.replace(key, {}, expected_version=1)
    assert conflict.value.current is None
    assert store.delete(key) is False
    store.create(key, {"n": 1}, ttl=10)
    clock.now += 11
    counted = store.increment(key, "n", 5)
    assert (counted.version, counted.data, counted.expires_at) == (1, {"n": 5}, None)
    clock.now += 1
    recreated = store.create(Key("x", "j"), {}, ttl=1)
    clock.now += 1
    assert store.create(Key("x", "j"), {"again": True}).version == 1
    assert recreated.version == 1


def test_unstorable_data_is_invalid_record_and_writes_nothing(store: MongoStore) -> None:
    with pytest.raises(InvalidRecord):
        store.create(Key("bad", "int"), {"n": 2**70})
    with pytest.raises(InvalidRecord):
        store.create(Key("bad", "\ud800"), {})
    with pytest.raises(InvalidRecord):
        store.create(Key("bad", "big"), {"x": "y" * (store.max_item_bytes + 1)})
    assert store.collection.count_documents({}) == 0


def test_a_large_store_limit_still_maps_bson_overflow(collection) -> None:
    store = MongoStore(collection, max_item_bytes=15 * 1024 * 1024)
    payload = {f"k{i}": "x" * 1000 for i in range(16_000)}  # ~16 MB of BSON, < 15 MiB JSON
    with pytest.raises(InvalidRecord):
        store.create(Key("big"), payload)
    assert collection.count_documents({}) == 0


def test_data_keys_that_look_like_operators_are_stored_verbatim(store: MongoStore) -> None:
    data = {"$set": {"a.b": "$field"}, "": [{"$literal": 1}]}
    store.create(Key("ops"), data)
    assert store.get(Key("ops")).data == data  # type: ignore[union-attr]


def test_transaction_conflict_names_the_item_and_writes_nothing(store: MongoStore) -> None:
    store.create(Key("t", "a"), {"n": 1})
    with pytest.raises(TransactionConflict) as failed:
        store.transact([Create(Key("t", "new"), {}), Check(Key("t", "a"), 2)])
    assert failed.value.index == 1
    assert failed.value.current is not None
    assert failed.value.current.version == 1
    assert store.get(Key("t", "new")) is None
    with pytest.raises(InvalidRecord):
        store.transact(
            [Create(Key("t", "n2"), {}), Increment(Key("t", "a"), "n"), Create(Key("t", "a"), {})]
        )
    store.replace(Key("t", "a"), {"n": "text"}, expected_version=1)
    with pytest.raises(InvalidRecord):
        store.transact([Create(Key("t", "n3"), {}), Increment(Key("t", "a"), "n")])
    assert store.get(Key("t", "n3")) is None


def test_check_absent_leaves_only_an_invisible_tombstone(store: MongoStore) -> None:
    store.transact([Check(Key("tomb", "k"), None), Create(Key("tomb", "other"), {})])
    assert store.get(Key("tomb", "k")) is None
    assert [r.key.sort for r in store.query("tomb").records] == ["other"]
    assert store.create(Key("tomb", "k"), {}).version == 1


# --- retried writes --------------------------------------------------------------------------


RETRYABLE_AFTER_APPLYING_ONCE = {
    "configureFailPoint": "failCommand",
    "mode": {"times": 1},
    "data": {
        "failCommands": ["findAndModify"],
        "appName": FAIL_APP,
        "writeConcernError": {"code": 6, "errmsg": "injected"},
        "errorLabels": ["RetryableWriteError"],
    },
}
"""The next findAndModify of a FAIL_APP client is applied, then answered with a retryable
write-concern error, so pymongo sends it again."""


@pytest.mark.parametrize(("timeout_ms", "applied"), [(None, 1), (10_000, 2)])
def test_secantusdb_re_executes_a_retried_write_when_the_client_sets_a_timeout(
    mongodb_srv: RunningServer, client: MongoClient, timeout_ms: int | None, applied: int
) -> None:
    """pymongo retries a write answered with a RetryableWriteError after it was applied, with
    the same lsid and txnNumber; MongoDB answers the retry without applying it again.
    secantusdb does too, unless the client sets ``timeoutMS`` (stalwart's URL stores do): the
    retry then carries another ``maxTimeMS``, which secantusdb counts as a different write, and
    applies it a second time. The write token (``w``) is what keeps that harmless."""
    collection = client["stalwart_unit"][unique_name("q")]
    collection.insert_one({"_id": 1, "n": 0})
    probe: MongoClient = MongoClient(mongodb_srv.url, appname=FAIL_APP, timeoutMS=timeout_ms)
    client.admin.command(RETRYABLE_AFTER_APPLYING_ONCE)
    try:
        after = probe[collection.database.name][collection.name].find_one_and_update(
            {"_id": 1}, [{"$set": {"n": {"$add": ["$n", 1]}}}], return_document=True
        )
    finally:
        client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        probe.close()
    assert after == {"_id": 1, "n": applied}
    assert collection.find_one({"_id": 1}) == {"_id": 1, "n": applied}


def test_a_retried_write_is_not_misreported(
    mongodb_srv: RunningServer, client: MongoClient, collection, server: ServerChoice
) -> None:
    """pymongo retries a write whose reply carried a RetryableWriteError after it was applied.
    MongoDB deduplicates the retry; secantusdb, with this client's timeoutMS, applies it again
    (test_mongodb_secantusdb.py): the write token makes that second run a no-op which the
    decoder recognises, so the write is reported, and counted, once."""
    mongo: MongoClient = MongoClient(mongodb_srv.url, appname=FAIL_APP, timeoutMS=10000)
    store = MongoStore(mongo[collection.database.name][collection.name], server=server)
    fail_once = RETRYABLE_AFTER_APPLYING_ONCE
    try:
        client.admin.command(fail_once)
        assert store.create(Key("retry", "c"), {"n": 1}).version == 1
        client.admin.command(fail_once)
        counted = store.increment(Key("retry", "c"), "n", 10)
        assert (counted.version, counted.data) == (2, {"n": 11})
        client.admin.command(fail_once)
        assert store.replace(Key("retry", "c"), {"n": 0}, expected_version=2).version == 3
        assert store.get(Key("retry", "c")).data == {"n": 0}  # type: ignore[union-attr]
    finally:
        client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        mongo.close()


# --- unavailability --------------------------------------------------------------------------


def test_closed_port_is_store_unavailable() -> None:
    url = f"mongodb://127.0.0.1:{free_port()}/db?collection=c&directConnection=true&timeout=0.3"
    store = store_from_url(url)
    try:
        with pytest.raises(StoreUnavailable) as failed:
            store.get(Key("p"))
        assert failed.value.__cause__ is not None
        with pytest.raises(StoreUnavailable):
            store.transact([Create(Key("p"), {})])
    finally:
        store.close()
    with pytest.raises(StoreUnavailable):
        store_from_url(url + "&create=true")


async def test_closed_port_is_store_unavailable_async() -> None:
    store = async_store_from_url(
        f"mongodb://127.0.0.1:{free_port()}/db?collection=c"
        "&directConnection=true&timeout=0.3&create=true"
    )
    try:
        with pytest.raises(StoreUnavailable):
            await store.create(Key("p"), {})
        with pytest.raises(StoreUnavailable):
            await store.transact([Create(Key("p"), {})])
    finally:
        await store.close()


# pymongo leaves the sockets the server closed to the garbage collector (a ResourceWarning):
# collected here, inside this test, rather than in whichever test runs when the GC does.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dropped_connections_are_store_unavailable(
    mongodb_srv: RunningServer, client: MongoClient, collection
) -> None:
    mongo: MongoClient = MongoClient(
        mongodb_srv.url, appname=FAIL_APP, timeoutMS=3000, serverSelectionTimeoutMS=1000
    )
    store = MongoStore(mongo[collection.database.name][collection.name])
    store.create(Key("drop"), {})
    client.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {
                "failCommands": ["findAndModify", "find"],
                "appName": FAIL_APP,
                "closeConnection": True,
            },
        }
    )
    try:
        with pytest.raises(StoreUnavailable):
            store.increment(Key("drop"), "n")
        with pytest.raises(StoreUnavailable):
            store.get(Key("drop"))
    finally:
        client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    assert store.get(Key("drop")).version == 1  # type: ignore[union-attr]
    mongo.close()
    gc.collect()


def test_a_callers_client_survives_store_close(store: MongoStore) -> None:
    store.close()
    assert store.get(Key("still", "open")) is None


# --- concurrency -----------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_creates_have_one_winner(detected_store: MongoStore, round_: int) -> None:
    key = Key("race", str(round_))
    barrier = threading.Barrier(8)

    def attempt(i: int):
        barrier.wait()
        try:
            return detected_store.create(key, {"by": i})
        except AlreadyExists as exc:
            return exc

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    winners = [o for o in outcomes if not isinstance(o, AlreadyExists)]
    assert len(winners) == 1
    assert all(o.current == winners[0] for o in outcomes if isinstance(o, AlreadyExists))


def test_concurrent_increments_are_exact(detected_store: MongoStore) -> None:
    key = Key("count")

    def bump(_: int) -> None:
        for _ in range(25):
            detected_store.increment(key, "n")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(bump, range(8)))
    final = detected_store.get(key)
    assert final is not None
    assert (final.data, final.version) == ({"n": 200}, 200)


def test_concurrent_transactions_stay_all_or_nothing(detected_store: MongoStore) -> None:
    a, b = Key("tx", "a"), Key("tx", "b")
    barrier = threading.Barrier(4)

    def work(_: int) -> tuple[int, list[str]]:
        barrier.wait()
        done, reasons = 0, []
        for _ in range(8):
            try:
                detected_store.transact([Increment(a, "n"), Increment(b, "n")])
                done += 1
            except TransactionConflict as exc:
                reasons.append(exc.reason)
        return done, reasons

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    committed = sum(done for done, _ in results)
    assert committed > 0
    assert all("write conflict" in reason for _, reasons in results for reason in reasons)
    ra, rb = detected_store.get(a), detected_store.get(b)
    assert ra is not None
    assert rb is not None
    assert ra.data == rb.data == {"n": committed}


@pytest.mark.parametrize("round_", range(5))
def test_checks_prevent_write_skew(detected_store: MongoStore, round_: int) -> None:
    """T1 checks A absent and creates B; T2 checks B absent and creates A: both may not win."""
    a, b = Key("skew", f"a{round_}"), Key("skew", f"b{round_}")
    barrier = threading.Barrier(2)

    def run(check: Key, create: Key) -> bool:
        barrier.wait()
        try:
            detected_store.transact([Check(check, None), Create(create, {})])
        except (TransactionConflict, StoreUnavailable):
            return False
        return True

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(run, a, b)
        second = pool.submit(run, b, a)
        outcomes = [first.result(), second.result()]
    assert outcomes.count(True) <= 1
    assert (detected_store.get(a) is None) or (detected_store.get(b) is None)


async def test_async_concurrent_increments_and_transactions(
    mongodb_srv: RunningServer, collection
) -> None:
    mongo: AsyncMongoClient = AsyncMongoClient(mongodb_srv.url, timeoutMS=10000)
    store = AsyncMongoStore(mongo[collection.database.name][collection.name])
    try:
        key, other = Key("acount"), Key("acount", "other")

        async def bump() -> None:
            for _ in range(10):
                await store.increment(key, "n")

        await asyncio.gather(*(bump() for _ in range(10)))
        assert (await store.get(key)).data == {"n": 100}  # type: ignore[union-attr]

        async def both() -> bool:
            try:
                await store.transact([Increment(key, "m"), Increment(other, "m")])
            except TransactionConflict:
                return False
            return True

        committed = sum(await asyncio.gather(*(both() for _ in range(10))))
        assert committed > 0
        assert (await store.get(key)).data["m"] == committed  # type: ignore[union-attr]
        assert (await store.get(other)).data == {"m": committed}  # type: ignore[union-attr]
    finally:
        await store.close()
        await mongo.close()
