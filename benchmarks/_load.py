# Copyright 2026 stalwart contributors
"""HTTP load for the benchmarks: app servers in their own processes, wrk or a Python generator.

The load is ``POST /orders`` with a small JSON body over 16 keep-alive connections, each request
with a fresh ``Idempotency-Key`` when ``keyed``; any status but 201 fails the measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import free_port  # noqa: E402

APP_PIDS: dict[int, int] = {}
"""Port -> pid of the app processes (to read their CPU time)."""


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def load_process(script: str, *args: str) -> Iterator[int]:
    """``python script *args --port N`` in its own process, until its port answers; yields N."""
    port = free_port()
    with served_process([sys.executable, script, *args, "--port", str(port)], port):
        yield port


@contextlib.contextmanager
def served_process(
    argv: list[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    quiet: bool = False,
    start_s: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (a server on ``port``) until its port accepts connections; stop it after.

    ``quiet`` discards its output (e.g. one log line per request)."""
    output = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(argv, env=env, stdout=output, stderr=output)
    APP_PIDS[port] = proc.pid
    try:
        deadline = time.monotonic() + start_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{argv[0]} did not start")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


def _post(port: int, key: str | None) -> bytes:
    body = b'{"item":"tea","qty":1}'
    headers = [
        "POST /orders HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if key is not None:
        headers.append(f"Idempotency-Key: {key}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class LoadResult:
    requests_per_s: float
    latencies_s: list[float]
    statuses: Counter[int]

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies_s)
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2)


async def load_requests(
    port: int,
    seconds: float,
    request: Callable[[int, int], bytes],
    *,
    connections: int = 16,
    warm_up_s: float = 0.5,
) -> LoadResult:
    """``request(connection, n)`` -> raw HTTP/1.1 bytes, sent over ``connections`` keep-alive
    connections for ``seconds`` (after a warm-up); every request's latency and status kept."""
    latencies: list[float] = []
    statuses = Counter[int]()
    stop_at = 0.0
    counting = False

    async def worker(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        try:
            while time.perf_counter() < stop_at:
                payload = request(index, n)
                sent = time.perf_counter()
                status = await _request(reader, writer, payload)
                if counting:
                    latencies.append(time.perf_counter() - sent)
                    statuses[status] += 1
                n += 1
        finally:
            writer.close()

    if warm_up_s > 0:
        stop_at = time.perf_counter() + warm_up_s
        await asyncio.gather(*(worker(i) for i in range(connections)))
    counting = True
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(worker(i) for i in range(connections)))
    elapsed = time.perf_counter() - start
    return LoadResult(sum(statuses.values()) / elapsed, latencies, statuses)


async def load(port: int, seconds: float, *, keyed: bool, connections: int = 16) -> float:
    """Requests per second over ``connections`` keep-alive connections, fresh key each."""
    run = uuid.uuid4().hex[:8]

    def request(index: int, n: int) -> bytes:
        return _post(port, f"{run}-{index}-{n}" if keyed else None)

    result = await load_requests(port, seconds, request, connections=connections)
    if set(result.statuses) != {201}:
        raise RuntimeError(f"unexpected statuses under load: {dict(result.statuses)}")
    return result.requests_per_s


_WRK_SCRIPT = """
counter = 0
body = '{"item":"tea","qty":1}'
request = function()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json"}
  if keyed then headers["Idempotency-Key"] = run .. "-" .. counter end
  return wrk.format("POST", "/orders", headers, body)
end
"""


def wrk_load(port: int, seconds: float, *, keyed: bool, connections: int = 16) -> float:
    """Requests per second from wrk (one thread, so one Lua counter: keys never repeat)."""
    import re  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        run = uuid.uuid4().hex[:8]
        script.write(f'keyed = {"true" if keyed else "false"}\nrun = "{run}"\n{_WRK_SCRIPT}')
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",  # a stall on this shared box is not a failed request
                "-s",
                script.name,
                f"http://127.0.0.1:{port}/orders",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink()
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests: {out[out.find('requests in') :]}"[:300])
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"unexpected wrk output: {out}")
    return float(found.group(1))
