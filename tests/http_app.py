"""A small scriptable ASGI app for the HTTP client tests (served by uvicorn on a thread).

Each test scripts its own path (``server.path()`` is unique), so tests share one server and
never each other's counts. A script is a list of :class:`Reply`; the last one repeats. The app
records, per path, the arrival time (``time.monotonic()``) and headers of every request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status with headers and body, after ``stall_s``; ``reset``
    sends the headers and half the body, then drops the connection."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    stall_s: float = 0.0
    reset: bool = False


@dataclass(frozen=True)
class Received:
    at: float
    method: str
    headers: dict[str, str]


class MidResponseReset(Exception):
    """Raised by the app after a partial body: uvicorn then closes the connection."""


class ScriptedApp:
    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.received: dict[str, list[Received]] = {}
        self.base_url = ""

    def path(self, *replies: Reply) -> str:
        """A fresh path answering ``replies`` in order (the last one repeats)."""
        path = f"/{uuid.uuid4().hex}"
        self.scripts[path] = list(replies) or [Reply()]
        self.received[path] = []
        return path

    def count(self, path: str) -> int:
        return len(self.received[path])

    def keys(self, path: str, header: str = "idempotency-key") -> list[str | None]:
        return [r.headers.get(header) for r in self.received[path]]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        while (await receive()).get("more_body"):
            pass
        log = self.received.setdefault(path, [])
        log.append(Received(time.monotonic(), scope["method"], headers))
        script = self.scripts.get(path, [Reply(404)])
        reply = script[min(len(log), len(script)) - 1]
        if reply.stall_s:
            await asyncio.sleep(reply.stall_s)
        length = len(reply.body) * (2 if reply.reset else 1)
        raw_headers = [(b"content-length", str(length).encode())]
        raw_headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": reply.body, "more_body": reply.reset})
        if reply.reset:
            await asyncio.sleep(0.05)  # let the partial body reach the client first
            raise MidResponseReset
