# Copyright 2026 stalwart contributors
"""Agents benchmark: what durable history and an idempotent tool add to a pydantic-ai turn.

    uv run python benchmarks/agents.py [--turns 200]

Per engine (SQLite, Redis, DynamoDB on moto, MongoDB on secantusdb), turns of a FunctionModel
agent that calls one side-effecting tool per turn (then answers), two ways, interleaved in
slices so that machine load hits both alike:
- bare: ``await agent.run(prompt, message_history=...)`` with a plain tool, the history kept in
  memory (what an app without a store does);
- durable: ``AsyncConversations.run`` (the history read, then written with one conditional
  write) with the tool under ``@idempotent_tool`` (claim + complete), on the engine's store.
A conversation is restarted every 10 turns, so histories stay the size of a short chat.
A third kind of turn, interleaved too, is the floor of the durable one: its four store
operations alone (history read, tool claim, tool completion, history write, with records of
the durable turn's sizes), no agent and no stalwart code above the store.
Store round trips are counted by a thin wrapper around the store (every store operation is one
round trip to the engine: docs/storage.md). The added time per turn is the difference of the
median turn times. DynamoDB and MongoDB run on emulators (moto, secantusdb): their overhead is
the emulators' speed, not the services'.

The last line is JSON:
{"engines": {"<engine>": {"round_trips_per_turn": .., "overhead_ms_per_turn": ..}}}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import _paths  # noqa: F401  # first: sys.path and AWS env (see benchmarks/_paths.py)

# isort: split

from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from servers import mongodb_server, moto_server, redis_server
from stalwart.agents import AsyncConversations, idempotent_tool
from stalwart.idempotency import AsyncIdempotency
from stalwart.storage import AsyncStore, Key, open_async_store

ENGINES = ("sqlite", "redis", "dynamodb", "mongodb")
STORE_OPERATIONS = frozenset(
    {"get", "create", "replace", "delete", "increment", "query", "transact"}
)
TURNS_PER_CONVERSATION = 10
SLICE = 10


class CountingStore:
    """Forwards to an AsyncStore, counting the operations (one engine round trip each)."""

    def __init__(self, inner: AsyncStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        if name in STORE_OPERATIONS:
            self.calls[name] += 1
        return getattr(self.inner, name)


def model(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
    """Call the tool once, with the turn's number, then answer."""
    last = messages[-1]
    if any(part.part_kind == "tool-return" for part in last.parts):
        return ModelResponse(parts=[TextPart("done")])
    return ModelResponse(parts=[ToolCallPart("book", {"item": f"item-{len(messages)}"})])


def agents(store: AsyncStore) -> tuple[Agent[None, str], Agent[None, str]]:
    async def book(_ctx: RunContext[None], item: str) -> str:
        return f"booked {item}"

    bare = Agent(FunctionModel(model), tools=[book])
    once = idempotent_tool(AsyncIdempotency(store), name="book")(book)
    durable = Agent(FunctionModel(model), tools=[once])
    return bare, durable


async def store_only(store: AsyncStore, copy: Key, data: dict[str, Any]) -> None:
    """A durable turn's four store operations alone: read the history at ``copy``, claim and
    complete a tool call, write ``data`` (the durable turn's history) at ``copy``."""
    day = 24 * 3600.0
    current = await store.get(copy)
    tool = Key("bench-tool", uuid.uuid4().hex)
    claim = {"status": "IN_PROGRESS", "owner": uuid.uuid4().hex[:24], "lease_expires_at": 0.0}
    claimed = await store.create(tool, claim | {"fingerprint": "f" * 64}, ttl=day)
    done = claim | {"status": "COMPLETED", "fingerprint": "f" * 64, "result": "booked item"}
    await store.replace(tool, done, expected_version=claimed.version, ttl=day)
    if current is None:
        await store.create(copy, data)
    else:
        await store.replace(copy, data, expected_version=current.version)


async def measure(url: str, turns: int) -> dict[str, Any]:
    inner = open_async_store(url)
    counting = CountingStore(inner)
    store: AsyncStore = counting  # type: ignore[assignment]  # a transparent proxy
    bare, durable = agents(store)
    chats = AsyncConversations(store)
    bare_s: list[float] = []
    durable_s: list[float] = []
    store_s: list[float] = []
    cpu_s: dict[str, list[float]] = {"bare": [], "durable": []}
    conversation = uuid.uuid4().hex
    history: list[ModelMessage] = []
    for turn in range(turns):
        if turn % TURNS_PER_CONVERSATION == 0:
            conversation, history = uuid.uuid4().hex, []
        for kind in ("bare", "durable") if (turn // SLICE) % 2 == 0 else ("durable", "bare"):
            started, cpu_started = time.perf_counter(), time.process_time()
            if kind == "bare":
                history = (await bare.run(f"turn {turn}", message_history=history)).all_messages()
                bare_s.append(time.perf_counter() - started)
            else:
                await chats.run(durable, conversation, f"turn {turn}")
                durable_s.append(time.perf_counter() - started)
            cpu_s[kind].append(time.process_time() - cpu_started)
        # After the durable turn, with the history that turn wrote, on the uncounted inner
        # store (the floor's operations are not the turn's round trips).
        written = await inner.get(chats.key(conversation))
        data = {"messages": "[]" if written is None else written.data["messages"]}
        started = time.perf_counter()
        await store_only(inner, Key("bench-floor", conversation), data)
        store_s.append(time.perf_counter() - started)
    await inner.close()
    overhead = (statistics.median(durable_s) - statistics.median(bare_s)) * 1000.0
    return {
        "round_trips_per_turn": round(sum(counting.calls.values()) / turns, 2),
        "overhead_ms_per_turn": round(overhead, 3),
        "operations": dict(sorted(counting.calls.items())),
        "bare_ms": round(statistics.median(bare_s) * 1000.0, 3),
        # The four store operations alone: the floor of the overhead (see store_only).
        "store_ms_per_turn": round(statistics.median(store_s) * 1000.0, 3),
        # This process's CPU (the SQLite worker threads included, the servers not): less
        # sensitive than wall time to other processes on a shared machine.
        "cpu_overhead_ms_per_turn": round(
            (statistics.median(cpu_s["durable"]) - statistics.median(cpu_s["bare"])) * 1000.0, 3
        ),
    }


def engine_urls(stack: contextlib.ExitStack, tmp: Path) -> dict[str, str]:
    name = f"bench{uuid.uuid4().hex[:8]}"
    redis_url = stack.enter_context(redis_server()).url
    moto_url = stack.enter_context(moto_server()).url
    mongo_base = stack.enter_context(mongodb_server()).url.split("/?")[0]
    return {
        "sqlite": f"sqlite:///{tmp / 'bench.db'}?table={name}",
        "redis": f"{redis_url}?prefix={name}",
        "dynamodb": f"dynamodb://{name}?region=us-east-1&endpoint_url={moto_url}&create=true",
        "mongodb": (
            f"{mongo_base}/stalwart_bench?collection={name}&directConnection=true&create=true"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="turns on SQLite and Redis")
    parser.add_argument("--emulated-turns", type=int, default=40, help="on moto and secantusdb")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        urls = engine_urls(stack, Path(tmp))
        for engine in ENGINES:
            turns = args.turns if engine in {"sqlite", "redis"} else args.emulated_turns
            results[engine] = asyncio.run(measure(urls[engine], turns))
            print(f"{engine}: {json.dumps(results[engine])}", flush=True)
    summary = {
        engine: {key: entry[key] for key in ("round_trips_per_turn", "overhead_ms_per_turn")}
        for engine, entry in results.items()
    }
    print(json.dumps({"engines": summary}))


if __name__ == "__main__":
    main()
