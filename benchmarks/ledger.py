# Copyright 2026 stalwart contributors
"""Ledger benchmark: transfers per second through the HTTP API, per engine, in one run.

    uv run python benchmarks/ledger.py [--seconds 5] [--engines sqlite,redis,dynamodb,mongodb]

Per engine (SQLite in a file with ``synchronous=full``, Redis, DynamoDB on moto, MongoDB on
secantusdb): a real ``ledger serve`` process (one uvicorn worker) on that store, 100 accounts
made through the API, then ``POST /v1/transfers`` from 16 concurrent keep-alive clients (a
Python asyncio HTTP/1.1 generator in this process; the server is another process), each
request with a fresh ``Idempotency-Key``: first between random pairs of the 100 accounts
(spread), then all between the same 2 accounts (hot). Transfers per second count 201s only;
p50/p99 are the latencies of every request. Then the ledger's invariants are checked on the
final state (``ledger.invariants``).

Ceilings from the same run: the same load generator against a bare FastAPI ``POST`` route (no
store, no ledger: ``benchmarks/http.py --serve-web bare``), and on SQLite the durable-commit
ceiling: 16 threads, each committing single-row transactions with ``synchronous=full`` (WAL)
on the same disk; and, between the two, a bare FastAPI route whose only work is one durable
create through stalwart's SQLite store (``sqlite_one_commit_route_rps``: what any one-commit
write reaches through this HTTP stack with one worker).

The last line is one JSON object (see the issue for its shape).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _paths import ROOT  # first: sys.path and AWS env (see benchmarks/_paths.py)

# isort: split

import httpx

from _load import LoadResult, load_process, load_requests, served_process
from servers import free_port, mongodb_server, moto_server, redis_server

ENGINES = ("sqlite", "redis", "dynamodb", "mongodb")
ACCOUNTS = 100
CONNECTIONS = 16
TENANT = "bench"


def ledger_command() -> list[str]:
    return [str(Path(sys.executable).with_name("ledger"))]


def api_key(store_url: str) -> str:
    """A fresh key for the benchmark tenant (``ledger keys create``; the key is its last line)."""
    out = subprocess.run(
        [*ledger_command(), "keys", "create", "--tenant", TENANT, "--store", store_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1].strip()


@contextlib.contextmanager
def ledger_server(store_url: str) -> Iterator[int]:
    """``ledger serve`` on ``store_url``, its output (a JSON line per request) discarded."""
    port = free_port()
    argv = [*ledger_command(), "serve", "--store", store_url, "--port", str(port)]
    env = {**os.environ, "LEDGER_ENV": "development"}
    with served_process(argv, port, env=env, quiet=True, start_s=60):
        yield port


def make_accounts(port: int, key: str, run: str) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as api:
        ids = []
        for i in range(ACCOUNTS):
            reply = api.post(
                "/v1/accounts",
                json={"currency": "USD", "name": f"bench {i}", "external_id": f"{run}-{i}"},
            )
            reply.raise_for_status()
            ids.append(reply.json()["id"])
    return ids


def transfer_request(port: int, key: str, run: str, pairs: Any) -> Any:
    """``request(connection, n)`` for the load generator: a transfer between ``pairs(rng)``."""

    def request(index: int, n: int) -> bytes:
        rng = random.Random(f"{index}-{n}")
        debit, credit = pairs(rng, n)
        body = json.dumps(
            {
                "debit_account_id": debit,
                "credit_account_id": credit,
                "amount": 1,
                "currency": "USD",
            },
            separators=(",", ":"),
        ).encode()
        head = (
            "POST /v1/transfers HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\n"
            f"Idempotency-Key: {run}-{index}-{n}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    return request


def measured(result: LoadResult) -> dict[str, Any]:
    created = result.statuses.get(201, 0)
    total = sum(result.statuses.values())
    return {
        "transfers_per_s": round(result.requests_per_s * created / total, 1) if total else 0.0,
        "p50_ms": result.percentile_ms(0.50),
        "p99_ms": result.percentile_ms(0.99),
        "statuses": {str(status): n for status, n in sorted(result.statuses.items())},
    }


def engine_run(store_url: str, seconds: float) -> dict[str, Any]:
    key = api_key(store_url)
    run = uuid.uuid4().hex[:8]
    with ledger_server(store_url) as port:
        accounts = make_accounts(port, key, run)

        def spread(rng: random.Random, _n: int) -> tuple[str, str]:
            debit, credit = rng.sample(accounts, 2)
            return debit, credit

        def hot(_rng: random.Random, n: int) -> tuple[str, str]:
            return (accounts[0], accounts[1]) if n % 2 else (accounts[1], accounts[0])

        spread_result = asyncio.run(
            load_requests(
                port,
                seconds,
                transfer_request(port, key, f"{run}s", spread),
                connections=CONNECTIONS,
            )
        )
        hot_result = asyncio.run(
            load_requests(
                port, seconds, transfer_request(port, key, f"{run}h", hot), connections=CONNECTIONS
            )
        )
    spread_figures, hot_figures = measured(spread_result), measured(hot_result)
    violations = check_invariants(store_url)
    return {
        "transfers_per_s": spread_figures["transfers_per_s"],
        "p50_ms": spread_figures["p50_ms"],
        "p99_ms": spread_figures["p99_ms"],
        "hot_transfers_per_s": hot_figures["transfers_per_s"],
        "hot_p99_ms": hot_figures["p99_ms"],
        "invariants_ok": not violations,
        "statuses": spread_figures["statuses"],
        "hot_statuses": hot_figures["statuses"],
        "violations": violations[:5],
    }


def check_invariants(store_url: str) -> list[str]:
    """The ledger's invariants on the final state of the benchmark tenant."""
    from ledger.invariants import check_invariants as violations_of  # noqa: PLC0415

    from stalwart.storage import open_store  # noqa: PLC0415

    store = open_store(store_url)
    try:
        return violations_of(store, TENANT)
    finally:
        store.close()


def bare_rps(seconds: float) -> float:
    """The same generator against a bare FastAPI POST route: the HTTP stack's ceiling."""
    body = b'{"item":"tea","qty":1}'

    with load_process(str(ROOT / "benchmarks" / "http.py"), "--serve-web", "bare") as port:

        def request(_index: int, _n: int) -> bytes:
            return (
                "POST /orders HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body

        result = asyncio.run(load_requests(port, seconds, request, connections=CONNECTIONS))
    if set(result.statuses) != {201}:
        raise RuntimeError(f"the bare route answered {dict(result.statuses)}")
    return round(result.requests_per_s, 1)


def serve_commit_route(database: str, port: int) -> None:
    """``POST /commit``: a bare FastAPI route whose only work is one durable single-record
    create through stalwart's async SQLite store (``synchronous=full``) -- what any write that
    needs one commit can reach on this HTTP stack, disk and single worker."""
    import uvicorn  # noqa: PLC0415
    from fastapi import FastAPI  # noqa: PLC0415

    from stalwart.storage import Key, open_async_store  # noqa: PLC0415

    store = open_async_store(f"sqlite:///{database}?table=commits&synchronous=full")
    app = FastAPI()

    @app.post("/commit", status_code=201)
    async def commit() -> dict[str, str]:
        record_id = uuid.uuid4().hex
        await store.create(Key("commits", record_id), {"id": record_id})
        return {"id": record_id}

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def commit_route_rps(directory: Path, seconds: float) -> float:
    """The same generator against :func:`serve_commit_route` (its own process)."""
    database = str(directory / "commit-route.db")
    with load_process(__file__, "--serve-commit-route", database) as port:

        def request(_index: int, _n: int) -> bytes:
            return f"POST /commit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

        result = asyncio.run(load_requests(port, seconds, request, connections=CONNECTIONS))
    if set(result.statuses) != {201}:
        raise RuntimeError(f"the commit route answered {dict(result.statuses)}")
    return round(result.requests_per_s, 1)


def sqlite_durable_commits_per_s(directory: Path, seconds: float) -> float:
    """16 threads, each committing single-row transactions (WAL, ``synchronous=full``)."""
    path = directory / "durable.db"
    with contextlib.closing(sqlite3.connect(path)) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        setup.commit()
    commits = [0] * CONNECTIONS
    stop = threading.Event()

    def writer(index: int) -> None:
        with contextlib.closing(
            sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        ) as db:
            db.execute("PRAGMA synchronous=FULL")
            while not stop.is_set():
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO t (v) VALUES (?)", (f"{index}",))
                db.execute("COMMIT")
                commits[index] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(CONNECTIONS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return round(sum(commits) / (time.perf_counter() - started), 1)


def store_urls(stack: contextlib.ExitStack, tmp: Path, engines: list[str]) -> dict[str, str]:
    urls: dict[str, str] = {}
    if "sqlite" in engines:
        urls["sqlite"] = f"sqlite:///{tmp / 'ledger.db'}?table=ledger&synchronous=full"
    if "redis" in engines:
        urls["redis"] = f"{stack.enter_context(redis_server()).url}?prefix=bench"
    if "dynamodb" in engines:
        endpoint = stack.enter_context(moto_server()).url
        urls["dynamodb"] = (
            f"dynamodb://ledger-bench?region=us-east-1&endpoint_url={endpoint}&create=true"
        )
    if "mongodb" in engines:
        base = stack.enter_context(mongodb_server()).url.split("/?")[0]
        urls["mongodb"] = f"{base}/bench?collection=ledger&directConnection=true&create=true"
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    engines = [name for name in args.engines.split(",") if name]
    result: dict[str, Any] = {"engines": {}}
    details: dict[str, Any] = {
        "load_generator": "python asyncio HTTP/1.1, 16 keep-alive "
        "connections, in the benchmark process; ledger serve: 1 worker"
    }
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        urls = store_urls(stack, Path(tmp), engines)
        for engine in engines:
            try:
                entry = engine_run(urls[engine], args.seconds)
            except Exception as exc:  # one engine failing must not hide the others' figures
                entry = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            print(engine, json.dumps(entry), flush=True)
            details[engine] = {
                k: entry.pop(k)
                for k in ("statuses", "hot_statuses", "violations", "hot_p99_ms")
                if k in entry
            }
            result["engines"][engine] = entry
        result["bare_rps"] = bare_rps(args.seconds)
        result["sqlite_durable_commits_per_s"] = sqlite_durable_commits_per_s(
            Path(tmp), args.seconds
        )
        if "sqlite" in engines:
            result["sqlite_one_commit_route_rps"] = commit_route_rps(Path(tmp), args.seconds)
    print("details", json.dumps(details))
    print(json.dumps(result))


if __name__ == "__main__":
    if "--serve-commit-route" in sys.argv:
        serve_commit_route(sys.argv[sys.argv.index("--serve-commit-route") + 1], int(sys.argv[-1]))
    else:
        main()
