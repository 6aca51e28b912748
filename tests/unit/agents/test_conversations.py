# Copyright 2026 stalwart contributors
"""Durable conversations: store round trips per turn, client history refused, the turn deadline,
and the missing extra named. (Concurrency on every engine: tests/integration.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from agent_support import own_event_loop, tool_returns
from stalwart.agents import (
    AsyncConversations,
    ConversationNotFound,
    ConversationPolicy,
    Conversations,
    idempotent_tool,
)
from stalwart.idempotency import AsyncIdempotency
from stalwart.resilience import DeadlineExceeded
from stalwart.storage import AlreadyExists, AsyncStore, open_async_store, open_store

if TYPE_CHECKING:
    from pathlib import Path


class CountingStore:
    """An AsyncStore that counts the operations (each one round trip) it forwards."""

    def __init__(self, inner: AsyncStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name in {"get", "create", "replace", "delete", "increment", "query", "transact"}:
            self.calls[name] += 1
        return attribute


async def test_a_turn_is_one_read_and_one_conditional_write(tmp_path: Path) -> None:
    counting = CountingStore(open_async_store(f"sqlite:///{tmp_path}/c.db?table=chats"))
    chats = AsyncConversations(counting)  # type: ignore[arg-type]
    agent = Agent(TestModel(custom_output_text="ok"))
    await chats.run(agent, "c", "first")
    assert counting.calls == {"get": 1, "create": 1}
    counting.calls.clear()
    await chats.run(agent, "c", "second")
    assert counting.calls == {"get": 1, "replace": 1}
    await counting.inner.close()


async def test_a_side_effecting_tool_adds_two_round_trips(tmp_path: Path) -> None:
    counting = CountingStore(open_async_store(f"sqlite:///{tmp_path}/c.db?table=chats"))
    layer = AsyncIdempotency(counting)  # type: ignore[arg-type]

    @idempotent_tool(layer)
    async def book(ctx: RunContext[None], what: str) -> str:
        return f"booked {what}"

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if tool_returns(messages):
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(parts=[ToolCallPart("book", {"what": "tea"})])

    chats = AsyncConversations(counting)  # type: ignore[arg-type]
    await chats.run(Agent(FunctionModel(model), tools=[book]), "c", "book tea")
    assert sum(counting.calls.values()) == 4  # read + write of the history, claim + complete
    await counting.inner.close()


async def test_history_from_the_client_is_refused(tmp_path: Path) -> None:
    store = open_async_store(f"sqlite:///{tmp_path}/c.db?table=chats")
    chats = AsyncConversations(store)
    agent = Agent(TestModel())
    for option in ("message_history", "conversation"):
        with pytest.raises(TypeError, match="stored history"):
            await chats.run(agent, "c", "hi", **{option: []})
    assert await chats.history("c") == []
    await store.close()


async def test_the_turn_deadline_bounds_the_run_and_stores_nothing(tmp_path: Path) -> None:
    store = open_async_store(f"sqlite:///{tmp_path}/c.db?table=chats")
    chats = AsyncConversations(store, ConversationPolicy(deadline_s=0.2))

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        import asyncio  # noqa: PLC0415 - only this model sleeps

        await asyncio.sleep(5)
        return ModelResponse(parts=[TextPart("late")])

    with pytest.raises(DeadlineExceeded):
        await chats.run(Agent(FunctionModel(slow)), "c", "hi")
    assert await store.get(chats.key("c")) is None
    await store.close()


def test_policy_needs_an_attempt() -> None:
    with pytest.raises(ValueError, match="attempts"):
        ConversationPolicy(attempts=0)


def test_missing_extra_names_the_extra() -> None:
    program = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pydantic_ai":
            raise ImportError("blocked")
sys.meta_path.insert(0, Blocker())
try:
    import stalwart.agents
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert "stalwart[agents]" in done.stdout, done.stdout + done.stderr


async def test_must_exist_refuses_a_conversation_never_started(tmp_path: Path) -> None:
    store = open_async_store(f"sqlite:///{tmp_path}/c.db?table=chats")
    chats = AsyncConversations(store)
    agent = Agent(TestModel(custom_output_text="ok"))
    with pytest.raises(ConversationNotFound):
        await chats.run(agent, "c", "hi", must_exist=True)
    assert await chats.find("c") is None
    await chats.start("c")
    assert await chats.find("c") == []
    await chats.run(agent, "c", "hi", must_exist=True)
    assert len(await chats.history("c")) == 2
    await store.close()


def test_sync_start_and_must_exist(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/c.db?table=chats")
    chats = Conversations(store)
    agent = Agent(TestModel(custom_output_text="ok"))
    with own_event_loop():
        with pytest.raises(ConversationNotFound):
            chats.run(agent, "c", "hi", must_exist=True)
        chats.start("c")
        with pytest.raises(AlreadyExists):
            chats.start("c")
        chats.run(agent, "c", "hi", must_exist=True)
    assert len(chats.history("c")) == 2
    store.close()


async def test_the_history_is_stored_as_one_json_string(tmp_path: Path) -> None:
    # One str value, not a list of nested messages: the store encodes and checks it as one
    # value, and the next turn parses it with one pydantic call (the per-turn overhead).
    store = open_async_store(f"sqlite:///{tmp_path}/c.db?table=chats")
    chats = AsyncConversations(store)
    agent = Agent(TestModel(custom_output_text="ok"))
    await chats.run(agent, "c", "first")
    await chats.run(agent, "c", "second")
    record = await store.get(chats.key("c"))
    assert record is not None
    stored = record.data["messages"]
    assert isinstance(stored, str)
    history = await chats.history("c")
    assert [message.kind for message in history] == ["request", "response"] * 2
    assert json.loads(stored) == ModelMessagesTypeAdapter.dump_python(history, mode="json")
    await store.close()


@pytest.mark.parametrize("started", [False, True], ids=["turns", "started-empty"])
async def test_a_history_stored_as_a_list_still_loads_and_grows(
    tmp_path: Path, started: bool
) -> None:
    """Records written before the history became one string hold the messages as a JSON
    array: they load as they are, and the next turn appends to them (stored as a string)."""
    store = open_async_store(f"sqlite:///{tmp_path}/c.db?table=chats")
    chats = AsyncConversations(store)
    agent = Agent(TestModel(custom_output_text="ok"))
    earlier = [] if started else (await agent.run("earlier")).all_messages()
    old_data = {"messages": ModelMessagesTypeAdapter.dump_python(earlier, mode="json")}
    await store.create(chats.key("c"), old_data)
    assert await chats.history("c") == earlier
    await chats.run(agent, "c", "now")
    history = await chats.history("c")
    assert history[: len(earlier)] == earlier
    assert [message.kind for message in history] == ["request", "response"] * (
        len(earlier) // 2 + 1
    )
    record = await store.get(chats.key("c"))
    assert record is not None
    assert isinstance(record.data["messages"], str)
    await store.close()
