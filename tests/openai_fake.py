# Copyright 2026 stalwart contributors
"""A real OpenAI-compatible HTTP server for the agents tests: ``/v1/chat/completions`` on
uvicorn, scripted per model name to answer, answer 429 with Retry-After, 500, or stall."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from servers import uvicorn_server

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass
class FakeOpenAI:
    """``script[model]`` is a list of behaviours consumed one per request (the last repeats):
    ``"ok"``, ``"429"`` (Retry-After: ``retry_after``), ``"500"`` or ``"stall"``."""

    script: dict[str, list[str]] = field(default_factory=dict)
    retry_after: str = "1"
    requests: Counter[str] = field(default_factory=Counter)
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    # Set when the server stops, so a stalled request ends and uvicorn can shut down at once.
    stop: threading.Event = field(default_factory=threading.Event)

    def behaviour(self, model: str) -> str:
        steps = self.script.get(model, ["ok"])
        index = self.requests[model] - 1
        return steps[min(index, len(steps) - 1)]

    async def completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        model = body["model"]
        self.requests[model] += 1
        self.arrivals.append((model, time.monotonic()))
        step = self.behaviour(model)
        if step == "429":
            return JSONResponse(
                {"error": {"message": "slow down", "type": "rate_limit"}},
                status_code=429,
                headers={"Retry-After": self.retry_after},
            )
        if step == "500":
            return JSONResponse({"error": {"message": "boom", "type": "server"}}, status_code=500)
        if step == "stall":
            await asyncio.to_thread(self.stop.wait, 30)
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": f"answer from {model}"},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])


@contextlib.contextmanager
def fake_openai_server(fake: FakeOpenAI, **options: Any) -> Iterator[str]:
    """Serve ``fake`` on a free port; yields the ``/v1`` base URL."""
    with uvicorn_server(fake.app(), **options) as base:
        try:
            yield f"{base}/v1"
        finally:
            fake.stop.set()
