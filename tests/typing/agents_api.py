# Copyright 2026 stalwart contributors
"""Pins the public types of stalwart.agents: type-checked (strict), never run."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

from pydantic_ai import Agent, RunContext
from pydantic_ai.agent import AgentRunResult
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.test import TestModel

from stalwart.agents import AsyncConversations, Conversations, idempotent_tool, resilient_model
from stalwart.idempotency import AsyncIdempotency
from stalwart.storage import open_async_store, open_store


def tools(layer: AsyncIdempotency) -> None:
    @idempotent_tool(layer)
    async def book(ctx: RunContext[None], item: str, count: int = 1) -> str:
        return item

    # The decorated tool keeps its exact signature (pydantic-ai builds the tool's schema from it).
    keeps: Callable[[RunContext[None], str, int], Coroutine[Any, Any, str]] = book
    defaults: Callable[[RunContext[None], str], Coroutine[Any, Any, str]] = book
    del keeps, defaults
    # An unused ignore is an error under --strict: this line fails if the signature were lost.
    unchecked = book(None, "tea")  # type: ignore[arg-type]
    unchecked.close()


async def conversations() -> None:
    model = resilient_model([TestModel()])
    assert_type(model, FallbackModel)
    agent = Agent(model)
    chats = AsyncConversations(open_async_store("sqlite:///:memory:?table=c"))
    assert_type(await chats.run(agent, "c", "hi"), AgentRunResult[Any])
    sync_chats = Conversations(open_store("sqlite:///:memory:?table=c"))
    assert_type(sync_chats.run(agent, "c", "hi"), AgentRunResult[Any])
