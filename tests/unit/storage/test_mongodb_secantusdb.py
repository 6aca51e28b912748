"""What secantusdb (the MongoDB emulator the suite runs on) does differently, pinned on a live
server with plain pymongo calls, so an upgrade that changes it shows which workaround in
docs/storage/mongodb.md ("secantusdb") to revisit. (Its retried writes are pinned beside the
store's in test_mongodb_store.py, which has the fail point.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pymongo import MongoClient, ReturnDocument

from conftest import unique_name
from servers import RunningServer
from stalwart.storage import Key, StorageError
from stalwart.storage._mongodb_plan import server_from_build_info
from stalwart.storage.mongodb import MongoStore

RACERS = 6
RACE_BUDGET_S = 5.0


@pytest.fixture(scope="module")
def client(mongodb_srv: RunningServer) -> Iterator[MongoClient]:
    mongo: MongoClient = MongoClient(mongodb_srv.url, timeoutMS=10000, maxPoolSize=RACERS + 2)
    yield mongo
    mongo.close()


def race(run: Callable[[int, int], None], until: Callable[[], bool]) -> None:
    """Run ``run(round, i)`` in RACERS threads released together, round after round, until
    ``until()`` is true or the time budget is spent."""
    deadline = time.monotonic() + RACE_BUDGET_S
    round_ = 0
    while not until() and time.monotonic() < deadline:
        barrier = threading.Barrier(RACERS)

        def racer(i: int, round_: int = round_, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            run(round_, i)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        round_ += 1


def test_secantusdb_names_itself_in_build_info(client: MongoClient) -> None:
    reply = client.admin.command("buildInfo")
    assert reply["version"].startswith("8.")  # the MongoDB version it emulates
    assert "secantusVersion" in reply
    assert server_from_build_info(reply) == "secantusdb"


def test_secantusdb_loses_the_post_image_of_a_contended_upsert(client: MongoClient) -> None:
    """Several findAndModify upserts (new: true) on one absent _id: every pipeline is applied,
    but a loser of the insert race gets ``value: null`` back, where MongoDB returns the
    post-image. Forces create's read-back and increment's update + insert on secantusdb."""
    collection = client["stalwart_unit"][unique_name("q")]
    bump = [{"$set": {"n": {"$add": [{"$ifNull": ["$n", 0]}, 1]}}}]
    nulls: list[int] = []

    def upsert(round_: int, _: int) -> None:
        after = collection.find_one_and_update(
            {"_id": round_}, bump, upsert=True, return_document=ReturnDocument.AFTER
        )
        if after is None:
            nulls.append(round_)

    race(upsert, lambda: bool(nulls))
    assert nulls, "secantusdb now returns every upsert's post-image: revisit the workarounds"
    assert collection.find_one({"_id": nulls[0]}) == {"_id": nulls[0], "n": RACERS}


def test_mongodb_semantics_on_secantusdb_fail_loudly_in_a_race(client: MongoClient) -> None:
    """Told it talks to MongoDB, a store on secantusdb meets the lost post-image as an error
    naming the problem, never as a wrong result."""
    store = MongoStore(client["stalwart_unit"][unique_name("q")], server="mongodb")
    errors: list[StorageError] = []
    results: dict[int, list[float]] = {}

    def bump(round_: int, _: int) -> None:
        try:
            counted = store.increment(Key("race", str(round_)), "n")
        except StorageError as exc:
            errors.append(exc)
        else:
            results.setdefault(round_, []).append(counted.data["n"])  # type: ignore[arg-type]

    race(bump, lambda: bool(errors))
    assert errors, "secantusdb now returns every upsert's post-image: revisit the workarounds"
    assert "without the document it wrote" in str(errors[0])
    for values in results.values():
        assert len(values) == len(set(values))  # no two increments saw the same value
