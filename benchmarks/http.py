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
client machinery included). Last, requests per second of a FastAPI ``POST /orders`` without
and with the web kit (``install(app)``, JSON request log lines rendered to /dev/null), each app
in its own uvicorn process, the load from wrk when it is on PATH (else a Python asyncio
generator; the output says which), and two bounds in the details line: the kit with its log
line turned off (its machinery alone), the bare route logging one JSON line per request
through stalwart.observability (the line alone), and the bare route with uvicorn's own access
line (which the kit's line replaces). The last line is one JSON object.
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
import os
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


WEB_MODES: dict[str, str] = {
    "bare_rps": "bare",
    "kit_rps": "kit",
    "kit_without_log_line_rps": "kit_quiet",
    "bare_with_json_log_line_rps": "bare_logged",
    "bare_with_uvicorn_access_line_rps": "bare_uvicorn_access",
}
"""What the web section measures (result key -> app mode); the others bound the first two:
the kit's machinery alone, one JSON log line per request alone, and uvicorn's own access line
(which the kit's line replaces)."""


def web_app(mode: str) -> Any:
    """``POST /orders`` answering 201 with a small JSON body: bare FastAPI, with the web kit
    (request ids, problem handlers, the JSON request log line rendered to /dev/null), the kit
    with its log line turned off, or bare with one JSON log line per request and no kit."""
    import logging  # noqa: PLC0415

    from fastapi import FastAPI  # noqa: PLC0415 - only the web server processes need it

    from stalwart.observability import configure_logging  # noqa: PLC0415
    from stalwart.web import ACCESS_LOGGER  # noqa: PLC0415
    from stalwart.web.fastapi import install  # noqa: PLC0415

    app = FastAPI()
    if mode not in {"bare", "bare_uvicorn_access"}:
        # The lines are written and discarded: rendering them is part of the cost.
        configure_logging("bench", stream=open(os.devnull, "w"))  # noqa: SIM115, PTH123
    if mode in {"kit", "kit_quiet"}:
        install(app)
    if mode == "kit_quiet":
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    line = logging.getLogger("bench.access") if mode == "bare_logged" else None

    @app.post("/orders", status_code=201)
    async def create_order(order: dict[str, Any]) -> dict[str, Any]:
        if line is not None:  # the same fields as the kit's line
            fields = {"method": "POST", "route": "/orders", "status": 201, "duration_ms": 0.1}
            line.info("POST /orders 201", extra={**fields, "request_id": "bench"})
        return {"ok": True, "item": order.get("item")}

    return app


def serve_web(mode: str, port: int) -> None:
    import copy  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415
    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415

    options: dict[str, Any] = {"log_level": "error", "access_log": False}
    if mode == "bare_uvicorn_access":
        # uvicorn's default access line, its own formatter, written to /dev/null.
        config = copy.deepcopy(LOGGING_CONFIG)
        config["handlers"]["access"] = {
            "class": "logging.FileHandler",
            "filename": os.devnull,
            "formatter": "access",
        }
        options = {"log_level": "info", "access_log": True, "log_config": config}
    uvicorn.run(
        web_app(mode),
        host="127.0.0.1",
        port=port,
        backlog=2048,
        loop="asyncio",  # pinned like benchmarks/idempotency.py, so runs compare
        http="h11",
        **options,
    )


def web_rates(rounds: int) -> dict[str, Any]:
    """Requests per second of a FastAPI route without and with the web kit: each app in its
    own uvicorn process, the load from wrk (else the asyncio generator), rounds interleaved
    with the order alternating; the median round counts."""
    import shutil  # noqa: PLC0415

    load = _load_module()
    use_wrk = shutil.which("wrk") is not None
    seconds = 2.0

    def measure(port: int) -> float:
        if use_wrk:
            return float(load.wrk_load(port, seconds, keyed=False))
        return float(asyncio.run(load.load(port, seconds, keyed=False)))

    rates: dict[str, list[float]] = {name: [] for name in WEB_MODES}
    with contextlib.ExitStack() as stack:
        ports = {
            name: stack.enter_context(load.load_process(__file__, "--serve-web", mode))
            for name, mode in WEB_MODES.items()
        }
        for port in ports.values():  # warm-up
            asyncio.run(load.load(port, 0.3, keyed=False))
        order = list(ports)
        for _ in range(rounds):
            for name in order:
                rates[name].append(measure(ports[name]))
            order.reverse()
    result: dict[str, Any] = {name: round(statistics.median(v), 1) for name, v in rates.items()}
    result["load_generator"] = "wrk -t1 -c16" if use_wrk else "python asyncio, 16 connections"
    return result


def _load_module() -> Any:
    """benchmarks/_load.py, imported by path (this folder stays off sys.path, see above)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("_load", Path(__file__).with_name("_load.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    if "-h" in sys.argv or "--help" in sys.argv:
        print(__doc__)
        return
    if "--serve" in sys.argv:
        serve(int(sys.argv[sys.argv.index("--serve") + 1]))
        return
    if "--serve-web" in sys.argv:
        serve_web(sys.argv[sys.argv.index("--serve-web") + 1], int(sys.argv[-1]))
        return
    rounds = 9 if "--quick" in sys.argv else 31
    with server_process() as url:
        timings = request_timings(url, rounds)
        reject_us, reject_via_client_us = open_breaker_reject_us(url, rounds)
    web = web_rates(3)
    details = {
        "open_breaker_reject_via_client_get_us": reject_via_client_us,
        "web_load_generator": web.pop("load_generator"),
        "web_kit_without_log_line_rps": web.pop("kit_without_log_line_rps"),
        "web_bare_with_json_log_line_rps": web.pop("bare_with_json_log_line_rps"),
        "web_bare_with_uvicorn_access_line_rps": web.pop("bare_with_uvicorn_access_line_rps"),
    }
    sync_ratio = timings["stalwart_us"] / timings["bare_us"]
    async_ratio = timings["async_stalwart_us"] / timings["async_bare_us"]
    for name, value in timings.items():
        print(f"{name:36} {value:>10.1f} us per request")
    print(f"{'stalwart / bare, sync':36} {sync_ratio:>10.3f} x  (target <= 1.15)")
    print(f"{'stalwart / bare, async':36} {async_ratio:>10.3f} x  (target <= 1.15)")
    print(f"{'open breaker rejects in':36} {reject_us:>10.2f} us  (target < 20)")
    print(f"{'  the same, through client.get':36} {reject_via_client_us:>10.2f} us")
    web_ratio = web["kit_rps"] / web["bare_rps"]
    print(f"{'web kit / bare route, requests/s':36} {web_ratio:>10.3f} x  (target >= 0.85)")
    for name in (
        "web_kit_without_log_line_rps",
        "web_bare_with_json_log_line_rps",
        "web_bare_with_uvicorn_access_line_rps",
    ):
        print(
            f"{'  ' + name.removeprefix('web_')[:-4] + ' / bare':36} "
            f"{details[name] / web['bare_rps']:>10.3f} x"
        )
    print("details", json.dumps(details))
    print(
        json.dumps(
            {
                "client": timings,
                "open_breaker_reject_us": reject_us,
                "web": web,
            },
        )
    )


if __name__ == "__main__":
    main()
