"""A real webhook receiver, real ``ledger serve`` / ``ledger worker`` processes, and the fault
scenario the benchmark runs (:func:`run_webhook_scenario`).

The receiver verifies every delivery's signature and records it; it counts a *concurrent
duplicate* whenever a delivery arrives while another delivery of the same event id is still
in progress.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
from api_support import LEDGER_SCRIPT, client, ledger_serve, make_key
from ledger.webhooks import SIGNATURE_HEADER, InvalidSignature, verify_signature

from servers import _stop, free_port

HERE = Path(__file__).resolve().parent
FAST_WORKER_ENV = {
    "LEDGER_WEBHOOK_RETRY_SCHEDULE_S": json.dumps([0.3] * 60),
    "LEDGER_WEBHOOK_TIMEOUT_S": "5",
    "LEDGER_WEBHOOK_LEASE_S": "8",
    "LEDGER_WEBHOOK_POLL_S": "0.1",
    "LEDGER_WEBHOOK_BREAKER_OPEN_S": "0.5",
    "LEDGER_EXPIRE_INTERVAL_S": "0",
}
"""Seconds instead of hours: retries every 0.3 s (60 of them), 5 s attempts, 8 s leases."""


@dataclass(frozen=True)
class Received:
    path: str
    event_id: str
    event_type: str
    verified: bool
    started: float
    ended: float
    status: int


@dataclass
class Receiver:
    """A WSGI webhook receiver. ``fail_first``: answer 500 to that many deliveries of each
    event first; ``stall_first_s``: hold the first delivery of each event that long;
    ``delay_s``: the time every delivery takes; ``status``: the answer otherwise."""

    secret: str = ""
    fail_first: int = 0
    stall_first_s: float = 0.0
    delay_s: float = 0.0
    status: int = 200
    deliveries: list[Received] = field(default_factory=list)
    arrivals: list[str] = field(default_factory=list)
    """Event ids in the order their deliveries arrived (before any answer)."""
    concurrent_duplicates: int = 0
    _in_flight: Counter[str] = field(default_factory=Counter)
    _seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        started = time.time()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        header = environ.get("HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_"), "")
        try:
            verify_signature(self.secret, header, body)
            verified = True
        except InvalidSignature:
            verified = False
        event = json.loads(body)
        event_id = event["id"]
        with self._lock:
            if self._in_flight[event_id]:
                self.concurrent_duplicates += 1
            self._in_flight[event_id] += 1
            self._seen[event_id] += 1
            self.arrivals.append(event_id)
            nth = self._seen[event_id]
        try:
            if nth == 1 and self.stall_first_s:
                time.sleep(self.stall_first_s)
            if self.delay_s:
                time.sleep(self.delay_s)
            status = 500 if nth <= self.fail_first else self.status
        finally:
            with self._lock:
                self._in_flight[event_id] -= 1
                self.deliveries.append(
                    Received(
                        environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", ""),
                        event_id,
                        event["type"],
                        verified,
                        started,
                        time.time(),
                        status,
                    )
                )
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        return [b"ok"]

    def delivered_ids(self) -> set[str]:
        """Events answered with a 2xx after a valid signature."""
        with self._lock:
            return {d.event_id for d in self.deliveries if d.verified and d.status < 300}


class ReceiverServer:
    """The receiver on werkzeug's threaded server, on one port it can leave and come back to
    (``stop``: connections are refused, as when a receiver is down)."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/ledger"
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._werkzeug_level = logging.NOTSET

    def start(self) -> None:
        from werkzeug.serving import make_server  # noqa: PLC0415 - only these tests need it

        werkzeug = logging.getLogger("werkzeug")
        self._werkzeug_level = werkzeug.level
        werkzeug.setLevel(logging.WARNING)  # no line per delivery
        self._server = make_server("127.0.0.1", self.port, self.receiver, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = None
            logging.getLogger("werkzeug").setLevel(self._werkzeug_level)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_worker(store_url: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``ledger worker`` as a real process (logs discarded)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    log = os.environ.get("WEBHOOK_WORKER_LOG")  # a file to debug the workers with
    with Path(log or os.devnull).open("ab") as output:
        return subprocess.Popen(
            [str(LEDGER_SCRIPT), "worker", "--store", store_url],
            env=environment | FAST_WORKER_ENV | (env or {}),
            stdout=output,
            stderr=output,
        )


stop = _stop
"""Terminate a process, kill it if it lingers."""


@contextlib.contextmanager
def workers(store_url: str, count: int, env: dict[str, str] | None = None) -> Iterator[list[Any]]:
    """``count`` worker processes; the list may be changed (kill one, append another)."""
    procs = [start_worker(store_url, env) for _ in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            stop(proc)


@dataclass
class Tenant:
    """An API client of one tenant with a registered endpoint and two accounts."""

    api: httpx.Client
    endpoint: dict[str, Any]
    debit: str
    credit: str

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.close()

    def transfer(self, key: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"debit_account_id": self.debit, "credit_account_id": self.credit}
        headers = {"Idempotency-Key": key or str(uuid.uuid4())}
        for _ in range(20):  # the client retries with the same key (a 409 contention, a 5xx)
            with contextlib.suppress(httpx.HTTPError):
                response = self.api.post(
                    "/v1/transfers",
                    json={"amount": 1, "currency": "USD", **body, **fields},
                    headers=headers,
                )
                if response.status_code < 300:
                    return dict(response.json())
            time.sleep(0.05)
        raise AssertionError("a transfer kept failing")

    def event_ids(self) -> list[str]:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = self.api.get("/v1/events", params=params).json()
            ids += [event["id"] for event in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return ids


def tenant_with_endpoint(base: str, store_url: str, receiver: ReceiverServer) -> Tenant:
    api = client(base, make_key(store_url, f"t{uuid.uuid4().hex[:8]}"))
    created = api.post("/v1/webhook-endpoints", json={"url": receiver.url, "enabled_events": ["*"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    receiver.receiver.secret = endpoint["secret"]
    accounts = [
        api.post("/v1/accounts", json={"currency": "USD", "name": n, "normal_balance": nb}).json()
        for n, nb in (("cash", "debit"), ("wallet", "credit"))
    ]
    return Tenant(api, endpoint, accounts[0]["id"], accounts[1]["id"])


def wait_until(condition: Any, timeout_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step_s)
    return True


def run_webhook_scenario(store_url: str, seconds: float) -> dict[str, int]:
    """Transfers for ``seconds`` through a real ``ledger serve`` with two ``ledger worker``
    processes delivering to a real receiver, which is down from 1/4 to 1/2 of the run; one
    worker is SIGKILLed at 3/8 (a fresh one replaces it). Then waits (bounded) for the
    deliveries to finish and counts: ``events`` listed by the API, ``delivered`` (received
    with a valid signature and answered 2xx), ``lost`` (listed, never delivered) and
    ``concurrent_duplicates`` (one event delivered twice at the same time)."""
    receiver = Receiver(delay_s=0.01)
    server = ReceiverServer(receiver)
    server.start()
    try:
        with (
            ledger_serve("--store", store_url, cwd=HERE, env=FAST_WORKER_ENV) as served,
            workers(store_url, 2) as procs,
            contextlib.ExitStack() as stack,
        ):
            tenant = tenant_with_endpoint(served.base, store_url, server)
            stack.callback(tenant.api.close)
            began = time.monotonic()
            phase = 0
            while (elapsed := time.monotonic() - began) < seconds:
                if phase == 0 and elapsed > seconds / 4:
                    server.stop()
                    phase = 1
                if phase == 1 and elapsed > seconds * 3 / 8:
                    procs[0].send_signal(signal.SIGKILL)
                    procs[0].wait(timeout=10)
                    procs.append(start_worker(store_url))
                    phase = 2
                if phase == 2 and elapsed > seconds / 2:
                    server.start()
                    phase = 3
                tenant.transfer()
                time.sleep(0.02)
            if phase < 3:
                server.start()
            events = set(tenant.event_ids())
            wait_until(lambda: events <= receiver.delivered_ids(), timeout_s=max(30, seconds))
            delivered = receiver.delivered_ids()
            return {
                "events": len(events),
                "delivered": len(events & delivered),
                "lost": len(events - delivered),
                "concurrent_duplicates": receiver.concurrent_duplicates,
            }
    finally:
        server.stop()
