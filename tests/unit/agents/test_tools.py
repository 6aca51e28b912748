# Copyright 2026 stalwart contributors
"""@idempotent_tool: one effect per (conversation, tool, arguments), whatever the tool-call id."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent_support import own_event_loop, tool_returns
from stalwart.agents import idempotent_tool
from stalwart.idempotency import AsyncIdempotency, Idempotency
from stalwart.storage import open_async_store, open_store

if TYPE_CHECKING:
    from pathlib import Path


class Receipt(BaseModel):
    transfer: int
    cents: int


def calls_transfer_twice(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The model repeats one tool call with two ids (and the arguments in another order)."""
    if tool_returns(messages):
        return ModelResponse(parts=[TextPart("done")])
    return ModelResponse(
        parts=[
            ToolCallPart("transfer", {"source": "a", "target": "b", "cents": 500}, "call-1"),
            ToolCallPart("transfer", {"cents": 500, "target": "b", "source": "a"}, "call-2"),
        ]
    )


def test_a_tool_called_twice_in_a_run_has_one_effect(tmp_path: Path) -> None:
    layer = Idempotency(open_store(f"sqlite:///{tmp_path}/t.db?table=tools"))
    effects: list[int] = []

    @idempotent_tool(layer)
    def transfer(ctx: RunContext[None], source: str, target: str, cents: int) -> Receipt:
        effects.append(cents)
        return Receipt(transfer=len(effects), cents=cents)

    agent = Agent(FunctionModel(calls_transfer_twice), tools=[transfer])
    with own_event_loop():
        result = agent.run_sync("move 5", conversation_id="conv-1")
    assert effects == [500]
    contents = [part.content for part in tool_returns(result.all_messages())]
    assert contents == [Receipt(transfer=1, cents=500)] * 2
    layer.store.close()


async def test_a_retried_turn_does_not_repeat_the_effect(tmp_path: Path) -> None:
    store = open_async_store(f"sqlite:///{tmp_path}/t.db?table=tools")
    layer = AsyncIdempotency(store)
    effects: list[int] = []
    crash_after_tool = [True]

    @idempotent_tool(layer)
    async def transfer(ctx: RunContext[None], source: str, target: str, cents: int) -> Receipt:
        effects.append(cents)
        return Receipt(transfer=len(effects), cents=cents)

    def flaky(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not tool_returns(messages):
            return ModelResponse(
                parts=[ToolCallPart("transfer", {"source": "a", "target": "b", "cents": 7})]
            )
        if crash_after_tool.pop() if crash_after_tool else False:
            raise ConnectionError("model provider dropped the connection")
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(flaky), tools=[transfer])
    with pytest.raises(ConnectionError):
        await agent.run("move 7", conversation_id="conv-2")
    await agent.run("move 7", conversation_id="conv-2")  # the turn, retried: new tool-call ids
    assert effects == [7]
    await agent.run("move 7", conversation_id="conv-3")  # another conversation: a new effect
    assert effects == [7, 7]
    await store.close()


def test_other_arguments_are_another_effect(tmp_path: Path) -> None:
    layer = Idempotency(open_store(f"sqlite:///{tmp_path}/t.db?table=tools"))
    effects: list[str] = []

    @idempotent_tool(layer, name="notify")
    def notify(ctx: RunContext[None], who: str) -> str:
        effects.append(who)
        return f"notified {who}"

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if tool_returns(messages):
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(
            parts=[ToolCallPart("notify", {"who": "ann"}), ToolCallPart("notify", {"who": "bob"})]
        )

    with own_event_loop():
        Agent(FunctionModel(model), tools=[notify]).run_sync("go", conversation_id="c")
    assert sorted(effects) == ["ann", "bob"]
    layer.store.close()


def test_the_first_parameter_must_be_the_run_context(tmp_path: Path) -> None:
    layer = Idempotency(open_store(f"sqlite:///{tmp_path}/t.db?table=tools"))

    @idempotent_tool(layer)
    def plain(who: str, n: int) -> str:
        return who

    with pytest.raises(TypeError, match="RunContext"):
        plain("ann", 1)
    with pytest.raises(TypeError, match="first parameter"):
        idempotent_tool(layer)(lambda: "x")
    layer.store.close()
