# Copyright 2026 stalwart contributors
"""Helpers of the agents tests (library and ledger)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def own_event_loop() -> Iterator[None]:
    """``agent.run_sync`` runs on the thread's event loop and leaves it open: give the thread
    one for the block and close it after (unclosed loops are errors under our warnings)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def tool_returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    """Every tool return in ``messages``, in order."""
    return [
        part
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]
