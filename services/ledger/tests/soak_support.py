"""A sustained-load run of the real ledger, as one function: the CI soak test
(``test_api_soak.py``, 20 s of load) and ``benchmarks/faults.py`` (minutes) run the same code.

:func:`run_soak` starts a redis-server of its own, ``ledger serve --workers 2`` on it (a real
subprocess: a uvicorn supervisor and two worker processes), makes accounts through the API,
then loads it from this process (an asyncio HTTP/1.1 generator over keep-alive connections)
with a mix per connection, ten requests in a cycle:

- 5 transfers between random accounts, each with a fresh ``Idempotency-Key``,
- 1 retry of the previous transfer with the same key and body (a replay),
- 2 balance reads, 1 account read, 1 list of the latest transfers of an account.

Requests are counted in fixed windows by the time they complete: requests per second, the
99th-percentile latency and the workers' CPU time per request per window. Each worker's
resident memory (``VmRSS`` of the uvicorn worker processes, not the supervisor) is read after
a warm-up and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from api_support import ledger_serve, make_key

from servers import own_redis_server

WORKERS = 2
CONNECTIONS = 16
ACCOUNTS = 50
WARM_UP_S = 5.0
CYCLE = ("transfer",) * 5 + ("replay", "balance", "balance", "account", "list")
"""The requests of one connection, in order, over and over (the replay repeats the transfer
just before it)."""
MIB = 1024 * 1024


@dataclass
class Window:
    """What completed within one window of the run."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    cpu_s: float = 0.0
    """CPU time (user + system) the workers spent in the window."""

    def requests(self) -> int:
        return sum(self.statuses.values())

    def rps(self, length_s: float) -> float:
        return round(self.requests() / length_s, 1)

    def cpu_ms_per_request(self) -> float:
        return round(self.cpu_s * 1000 / max(1, self.requests()), 3)

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_s)
        if not ordered:
            return 0.0
        return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2)


def run_soak(seconds: float, *, window_s: float | None = None) -> dict[str, float]:
    """Load ``ledger serve --workers 2`` on Redis for ``seconds`` (after a warm-up); the
    throughput and p99 of the first and the last window, and the largest growth of a worker's
    RSS between the end of the warm-up and the end of the run.

    ``window_s`` defaults to a minute when the run holds two of them, else to half the run:
    ``rps_first_minute`` is the first window's throughput, whatever its length (``window_s``
    in the result says which). Also in the result: the number of windows, requests, 5xx and
    other non-2xx answers, and how many workers uvicorn replaced during the run (a worker that
    died, e.g. of memory, would hide its growth).

    >>> run_soak(120)  # doctest: +SKIP
    {'rps_first_minute': 812.4, 'rps_last_minute': 805.0, 'rss_growth_mib': 3.1, ...}
    """
    window = window_s if window_s is not None else (60.0 if seconds >= 120 else seconds / 2)
    count = max(1, int(seconds // window))
    with own_redis_server() as redis, tempfile.TemporaryDirectory() as tmp:
        store_url = f"{redis.url}?prefix=soak"
        key = make_key(store_url, "soak")
        with serving_ledger(store_url, Path(tmp)) as served:
            request = mixed_requests(served.port, key, make_accounts(served.base, key))
            workers = served.workers()

            def cpu_s() -> float:
                return sum(cpu_seconds(pid) for pid in workers)

            asyncio.run(load(served.port, request, cpu_s, window=WARM_UP_S, count=1))
            rss_start = {pid: rss_bytes(pid) for pid in workers}
            windows = asyncio.run(load(served.port, request, cpu_s, window=window, count=count))
            survivors = set(workers) & set(served.workers())
            rss_end = {pid: rss_bytes(pid) for pid in survivors}
    statuses = sum((w.statuses for w in windows), Counter[int]())
    first, last = windows[0], windows[-1]
    growth = max((rss_end[pid] - rss_start[pid] for pid in survivors), default=math.nan)
    return {
        "rps_first_minute": first.rps(window),
        "rps_last_minute": last.rps(window),
        "rss_growth_mib": round(growth / MIB, 1),
        "p99_first_ms": first.p99_ms(),
        "p99_last_ms": last.p99_ms(),
        "cpu_ms_per_request_first": first.cpu_ms_per_request(),
        "cpu_ms_per_request_last": last.cpu_ms_per_request(),
        "rps_lowest_window": min(w.rps(window) for w in windows),
        "window_s": window,
        "windows": len(windows),
        "requests": sum(statuses.values()),
        "server_errors": sum(n for status, n in statuses.items() if status >= 500),
        "other_errors": sum(n for status, n in statuses.items() if 300 <= status < 500),
        "workers_replaced": len(workers) - len(survivors),
    }


@dataclass(frozen=True)
class ServedLedger:
    """A running ``ledger serve`` (the uvicorn supervisor's pid) on ``port``."""

    supervisor: int
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The pids of the uvicorn worker processes: the supervisor's children started by
        multiprocessing's spawn (not, say, a resource tracker)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                command = (stat.parent / "cmdline").read_bytes()
                if parent == self.supervisor and b"spawn_main" in command:
                    found.append(int(stat.parent.name))
        return sorted(found)


@contextlib.contextmanager
def serving_ledger(store_url: str, directory: Path) -> Iterator[ServedLedger]:
    """``ledger serve --workers 2`` on ``store_url`` (its log lines go to a file in
    ``directory``), once both workers have loaded the app (a worker still importing it would
    count its imports as growth)."""
    log = directory / "ledger.log"
    args = ("--workers", str(WORKERS), "--store", store_url)
    with ledger_serve(*args, cwd=directory, log=log) as running:
        served = ServedLedger(running.proc.pid, int(running.base.rsplit(":", 1)[1]))
        started = running.wait_for(r"Started server process \[(\d+)\]", count=WORKERS, timeout_s=60)
        if not started or len(served.workers()) != WORKERS:
            raise RuntimeError(f"ledger serve did not start its workers:\n{running.text()}")
        yield served


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``); 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """A process's resident set size (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def make_accounts(base: str, key: str) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as api:
        made = [
            api.post("/v1/accounts", json={"currency": "USD", "name": f"soak {i}"})
            for i in range(ACCOUNTS)
        ]
    for response in made:
        response.raise_for_status()
    return [response.json()["id"] for response in made]


Request = Callable[[str, int, int], bytes]
"""``request(run, connection, n)``: the raw HTTP/1.1 bytes of a connection's n-th request."""


def mixed_requests(port: int, key: str, accounts: list[str]) -> Request:
    """The :data:`CYCLE` of requests over ``accounts``."""
    common = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"

    def transfer(run: str, index: int, n: int) -> bytes:
        debit, credit = random.Random(f"{run}-{index}-{n}").sample(accounts, 2)
        body = json.dumps(
            {"debit_account_id": debit, "credit_account_id": credit, "amount": 1, "currency": "USD"}
        ).encode()
        return (
            f"POST /v1/transfers HTTP/1.1\r\n{common}Idempotency-Key: {run}-{index}-{n}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def request(run: str, index: int, n: int) -> bytes:
        kind = CYCLE[n % len(CYCLE)]
        if kind == "transfer":
            return transfer(run, index, n)
        if kind == "replay":
            return transfer(run, index, n - 1)
        account = random.Random(f"{run}-{index}-{n}").choice(accounts)
        path = {
            "balance": f"/v1/accounts/{account}/balance",
            "account": f"/v1/accounts/{account}",
            "list": f"/v1/transfers?account_id={account}&limit=10",
        }[kind]
        return f"GET {path} HTTP/1.1\r\n{common}\r\n".encode()

    return request


async def load(
    port: int, request: Request, cpu_s: Callable[[], float], *, window: float, count: int
) -> list[Window]:
    """``request`` over :data:`CONNECTIONS` keep-alive connections for ``count`` windows of
    ``window`` seconds; each request counted in the window it completed in, and the server's
    ``cpu_s()`` read at each window's end."""
    run = uuid.uuid4().hex[:8]
    windows = [Window() for _ in range(count)]
    start = time.perf_counter()
    stop_at = start + window * count

    async def sample_cpu() -> None:
        before = cpu_s()
        for index, each in enumerate(windows):
            await asyncio.sleep(start + (index + 1) * window - time.perf_counter())
            now = cpu_s()
            each.cpu_s, before = now - before, now

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        try:
            while (sent := time.perf_counter()) < stop_at:
                writer.write(request(run, index, n))
                status = await read_response(reader)
                done = time.perf_counter()
                slot = int((done - start) // window)
                if slot < count:
                    windows[slot].latencies_s.append(done - sent)
                    windows[slot].statuses[status] += 1
                n += 1
        finally:
            writer.close()

    await asyncio.gather(sample_cpu(), *(connection(i) for i in range(CONNECTIONS)))
    return windows


async def read_response(reader: asyncio.StreamReader) -> int:
    """One response's status (its body read and dropped: the ledger always sends a length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12])
