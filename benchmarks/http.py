"""Per-request cost of stalwart's resilient httpx client against its anchors, on a real server.

Run: ``uv run python benchmarks/http.py`` (add ``--quick`` for fewer rounds). It starts the
server in a separate process (``python benchmarks/http.py --serve PORT``: uvicorn with a
raw ASGI app answering ``200 ok``), so the server's CPU is not in the client's process.

Success path, one keep-alive connection per client, sync and async: a bare
``httpx.Client`` / ``AsyncClient``, stalwart's :func:`~stalwart.http.client`, an httpx-retries
``RetryTransport``, and a bare client's call decorated with ``stamina.retry``. Rounds are
interleaved (every case once per round) so background noise hits every case alike; each case
reports the median of its rounds in microseconds per request. Then the time to reject a
request when the host's breaker is open (no I/O): in stalwart's transport, which is the number
the target applies to, and through a whole ``client.get`` (httpx's own request building and
client machinery included). The last line is one JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: with its folder first on sys.path (``python benchmarks/http.py``)
# the standard library's ``http``, which httpx imports, would resolve to this file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import stamina
import stamina.instrumentation
from httpx_retries import Retry, RetryTransport

from stalwart.http import CircuitOpen, ClientPolicy, ResilientTransport, async_client, client
from stalwart.resilience import BreakerConfig, CountWindow

REQUESTS_PER_SAMPLE = 50
REJECTS_PER_SAMPLE = 2000


# -- the server (its own process) ----------------------------------------------------------------


async def app(scope: dict[str, Any], _receive: Any, send: Any) -> None:
    """``/fail`` answers 500, anything else ``200 ok``."""
    if scope["type"] != "http":
        return
    status = 500 if scope["path"] == "/fail" else 200
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def serve(port: int) -> None:
    import uvicorn  # noqa: PLC0415 - only the server process needs it

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url, timeout=1.0)
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the benchmark server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- the cases -----------------------------------------------------------------------------------

type SyncCase = Callable[[], httpx.Response]
type AsyncCase = Callable[[], Awaitable[httpx.Response]]


def sync_cases(url: str, stack: contextlib.ExitStack) -> dict[str, SyncCase]:
    stamina.instrumentation.set_on_retry_hooks([])  # no structlog/prometheus output: fair
    bare = stack.enter_context(httpx.Client())
    stalwart = stack.enter_context(client(ClientPolicy()))
    retries = stack.enter_context(httpx.Client(transport=RetryTransport(retry=Retry(total=3))))
    stamina_client = stack.enter_context(httpx.Client())

    @stamina.retry(on=httpx.HTTPError, attempts=3)
    def stamina_get() -> httpx.Response:
        return stamina_client.get(url)

    return {
        "bare_us": lambda: bare.get(url),
        "stalwart_us": lambda: stalwart.get(url),
        "httpx_retries_us": lambda: retries.get(url),
        "stamina_us": stamina_get,
    }


async def async_cases(url: str, stack: contextlib.AsyncExitStack) -> dict[str, AsyncCase]:
    bare = await stack.enter_async_context(httpx.AsyncClient())
    stalwart = await stack.enter_async_context(async_client(ClientPolicy()))
    return {"async_bare_us": lambda: bare.get(url), "async_stalwart_us": lambda: stalwart.get(url)}


def time_sync(fn: SyncCase) -> float:
    started = time.perf_counter()
    for _ in range(REQUESTS_PER_SAMPLE):
        if fn().status_code != 200:
            raise AssertionError("the benchmark server failed a request")
    return (time.perf_counter() - started) / REQUESTS_PER_SAMPLE * 1e6


async def time_async(fn: AsyncCase) -> float:
    started = time.perf_counter()
    for _ in range(REQUESTS_PER_SAMPLE):
        if (await fn()).status_code != 200:
            raise AssertionError("the benchmark server failed a request")
    return (time.perf_counter() - started) / REQUESTS_PER_SAMPLE * 1e6


def request_timings(url: str, rounds: int) -> dict[str, float]:
    loop = asyncio.new_event_loop()
    async_stack = contextlib.AsyncExitStack()
    try:
        with contextlib.ExitStack() as stack:
            sync = sync_cases(url, stack)
            asyncs = loop.run_until_complete(async_cases(url, async_stack))
            samples: dict[str, list[float]] = {name: [] for name in (*sync, *asyncs)}
            for round_number in range(rounds + 1):
                for name, fn in sync.items():
                    sample = time_sync(fn)
                    if round_number:  # round 0 warms connections up
                        samples[name].append(sample)
                for name, afn in asyncs.items():
                    sample = loop.run_until_complete(time_async(afn))
                    if round_number:
                        samples[name].append(sample)
    finally:
        loop.run_until_complete(async_stack.aclose())
        loop.close()
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def time_rejects(reject: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(REJECTS_PER_SAMPLE):
            try:
                reject()
            except CircuitOpen:
                continue
            raise AssertionError("the breaker did not reject")
        samples.append((time.perf_counter() - started) / REJECTS_PER_SAMPLE * 1e6)
    return round(statistics.median(samples), 2)


def open_breaker_reject_us(url: str, rounds: int) -> tuple[float, float]:
    """Rejecting a request to a host whose breaker is open (no byte sent): in the transport
    (stalwart's own cost), and through a whole ``client.get`` (adds httpx's request building
    and client machinery, the same for any transport)."""
    breaker = BreakerConfig(window=CountWindow(1), min_calls=1, open_s=3600.0)
    transport = ResilientTransport(ClientPolicy(attempts=1, breaker=breaker))
    with httpx.Client(transport=transport) as http:
        http.get(f"{url}/fail")  # one 500: the host's breaker opens for an hour
        request = http.build_request("GET", f"{url}/fail")
        in_transport = time_rejects(lambda: transport.handle_request(request), rounds)
        via_client = time_rejects(lambda: http.get(f"{url}/fail"), rounds)
    return in_transport, via_client


def web_rates() -> dict[str, float | None]:
    """Requests per second of a FastAPI route without and with the web kit.

    TODO(lead engineer): fill in after merging the web kit (stalwart.web), which is built on
    other branches; until then both rates are None.
    """
    return {"bare_rps": None, "kit_rps": None}


def main() -> None:
    if "--serve" in sys.argv:
        serve(int(sys.argv[sys.argv.index("--serve") + 1]))
        return
    rounds = 9 if "--quick" in sys.argv else 31
    with server_process() as url:
        timings = request_timings(url, rounds)
        reject_us, reject_via_client_us = open_breaker_reject_us(url, rounds)
    sync_ratio = timings["stalwart_us"] / timings["bare_us"]
    async_ratio = timings["async_stalwart_us"] / timings["async_bare_us"]
    for name, value in timings.items():
        print(f"{name:36} {value:>10.1f} us per request")
    print(f"{'stalwart / bare, sync':36} {sync_ratio:>10.3f} x  (target <= 1.15)")
    print(f"{'stalwart / bare, async':36} {async_ratio:>10.3f} x  (target <= 1.15)")
    print(f"{'open breaker rejects in':36} {reject_us:>10.2f} us  (target < 20)")
    print(f"{'  the same, through client.get':36} {reject_via_client_us:>10.2f} us")
    print(
        json.dumps(
            {
                "client": timings,
                "open_breaker_reject_us": reject_us,
                "open_breaker_reject_via_client_get_us": reject_via_client_us,
                "web": web_rates(),
            },
        )
    )


if __name__ == "__main__":
    main()
