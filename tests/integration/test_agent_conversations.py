# Copyright 2026 stalwart contributors
"""Durable conversations on every engine: concurrent turns (real threads, real tasks) never
fork or lose the history; a failed turn leaves it as it was; one read + one write per turn."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent_support import own_event_loop
from conftest import ENGINES
from stalwart.agents import (
    AsyncConversations,
    ConversationConflict,
    ConversationPolicy,
    Conversations,
)
from stalwart.storage import open_async_store, open_store

if TYPE_CHECKING:
    from collections.abc import Callable

TURNS = 3


def prompts(messages: list[ModelMessage]) -> list[str]:
    return [
        part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart) and isinstance(part.content, str)
    ]


def check_linear(messages: list[ModelMessage], winners: list[str]) -> None:
    """Each winning turn exactly once (request, then its answer); nobody else's."""
    assert sorted(prompts(messages)) == sorted(winners)
    assert len(messages) == 2 * len(winners)
    for request, response in zip(messages[::2], messages[1::2], strict=True):
        assert isinstance(response, ModelResponse)
        assert response.parts == [TextPart(f"re: {prompts([request])[0]}")]


def echo(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart(f"re: {prompts(messages)[-1]}")])


def thread_model(first_calls: threading.Barrier) -> FunctionModel:
    """Answers each prompt; every turn's first call waits until all turns have read."""
    seen: set[str] = set()
    lock = threading.Lock()

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = prompts(messages)[-1]
        with lock:
            first = prompt not in seen
            seen.add(prompt)
        if first:
            first_calls.wait(timeout=20)
        return echo(messages, info)

    return FunctionModel(answer)


def task_model(first_calls: asyncio.Barrier) -> FunctionModel:
    seen: set[str] = set()

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = prompts(messages)[-1]
        if prompt not in seen:
            seen.add(prompt)
            async with asyncio.timeout(20):
                await first_calls.wait()
        return echo(messages, info)

    return FunctionModel(answer)


def run_threads(chats: Conversations, agent: Agent[None, str]) -> list[Any]:
    def turn(n: int) -> Any:
        with own_event_loop():
            try:
                return chats.run(agent, "conv", f"turn {n}").output
            except ConversationConflict as exc:
                return exc

    with ThreadPoolExecutor(TURNS) as pool:
        return list(pool.map(turn, range(TURNS)))


async def run_tasks(chats: AsyncConversations, agent: Agent[None, str]) -> list[Any]:
    async def turn(n: int) -> Any:
        try:
            return (await chats.run(agent, "conv", f"turn {n}")).output
        except ConversationConflict as exc:
            return exc

    return await asyncio.gather(*(turn(n) for n in range(TURNS)))


def winners_of(outcomes: list[Any]) -> list[str]:
    return [outcome.removeprefix("re: ") for outcome in outcomes if isinstance(outcome, str)]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("attempts", [1, TURNS], ids=["raise", "retry"])
def test_concurrent_turns_on_threads_never_fork(
    engine: str, attempts: int, store_url_factory: Callable[[str], Callable[[], str]]
) -> None:
    store = open_store(store_url_factory(engine)())
    chats = Conversations(store, ConversationPolicy(attempts=attempts))
    outcomes = run_threads(chats, Agent(thread_model(threading.Barrier(TURNS))))
    winners = winners_of(outcomes)
    conflicts = [o for o in outcomes if isinstance(o, ConversationConflict)]
    if attempts == 1:  # all read the empty history, then raced: exactly one write can win
        assert len(winners) == 1
        assert len(conflicts) == TURNS - 1
    else:  # the losers ran again on the winner's history
        assert len(winners) == TURNS
        assert not conflicts
    check_linear(chats.history("conv"), winners)
    store.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("attempts", [1, TURNS], ids=["raise", "retry"])
async def test_concurrent_turns_on_tasks_never_fork(
    engine: str, attempts: int, store_url_factory: Callable[[str], Callable[[], str]]
) -> None:
    store = open_async_store(store_url_factory(engine)())
    chats = AsyncConversations(store, ConversationPolicy(attempts=attempts))
    outcomes = await run_tasks(chats, Agent(task_model(asyncio.Barrier(TURNS))))
    winners = winners_of(outcomes)
    if attempts == 1:
        assert len(winners) == 1
    else:
        assert len(winners) == TURNS
    check_linear(await chats.history("conv"), winners)
    await store.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_failed_turn_leaves_the_history_unchanged(
    engine: str, store_url_factory: Callable[[str], Callable[[], str]]
) -> None:
    store = open_async_store(store_url_factory(engine)())
    chats = AsyncConversations(store)

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if prompts(messages)[-1] == "crash":
            raise ConnectionError("provider gone mid-turn")
        return echo(messages, info)

    agent = Agent(FunctionModel(answer))
    await chats.run(agent, "conv", "hello")
    before = await store.get(chats.key("conv"))
    with pytest.raises(ConnectionError):
        await chats.run(agent, "conv", "crash")
    assert await store.get(chats.key("conv")) == before
    await chats.run(agent, "conv", "again")
    check_linear(await chats.history("conv"), ["hello", "again"])
    await store.close()
