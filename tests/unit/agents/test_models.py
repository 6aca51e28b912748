# Copyright 2026 stalwart contributors
"""resilient_model: fallback order, breakers skipping a dead provider, Retry-After, deadlines --
through a real OpenAI-compatible server on uvicorn, and FunctionModel where no wire is needed."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from openai_fake import FakeOpenAI, fake_openai_server
from stalwart.agents import (
    ModelCircuitOpen,
    anthropic_model,
    bedrock_model,
    openai_compatible_model,
    resilient_model,
)
from stalwart.observability import breaker_listener, capture_logs, capture_metrics
from stalwart.resilience import (
    BreakerRegistry,
    CircuitBreaker,
    CountWindow,
    DeadlineExceeded,
    deadline,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pydantic_ai.models import Model


@contextlib.asynccontextmanager
async def served(fake: FakeOpenAI, *names: str) -> AsyncIterator[list[Model]]:
    """One OpenAI-compatible model per name on the fake server; their clients closed after."""
    with fake_openai_server(fake) as base_url:
        models = [openai_compatible_model(name, base_url=base_url) for name in names]
        try:
            yield models
        finally:
            for model in models:
                await model.client.close()  # type: ignore[attr-defined]


def quick_breakers(seen: list[Any] | None = None) -> BreakerRegistry:
    """Breakers that open after 2 failures out of 2 calls, for 60 s."""
    listeners = (breaker_listener(span=False), *(() if seen is None else (seen.append,)))
    return BreakerRegistry(
        lambda name: CircuitBreaker(
            name, window=CountWindow(2), min_calls=2, open_s=60, listeners=listeners
        )
    )


async def test_candidates_are_tried_in_order_and_a_fallback_is_logged_and_counted() -> None:
    fake = FakeOpenAI(script={"first": ["500"], "second": ["ok"]})
    async with served(fake, "first", "second", "third") as models:
        agent = Agent(resilient_model(models))
        with capture_logs("stalwart.agents") as lines, capture_metrics() as docs:
            result = await agent.run("hi")
    assert result.output == "answer from second"
    assert [model for model, _ in fake.arrivals] == ["first", "second"]
    assert fake.requests["third"] == 0
    fallbacks = [line for line in lines if line["message"] == "model fallback"]
    assert [(f["model"], f["next_model"]) for f in fallbacks] == [("first", "second")]
    assert [d["ModelFallbacks"] for d in docs if "ModelFallbacks" in d] == [1]


async def test_an_open_breaker_skips_a_dead_provider_without_a_request() -> None:
    fake = FakeOpenAI(script={"dead": ["500"], "alive": ["ok"]})
    transitions: list[Any] = []
    async with served(fake, "dead", "alive") as models:
        model = resilient_model(models, breakers=quick_breakers(transitions))
        agent = Agent(model)
        for _ in range(2):  # two failures out of two calls: the dead provider's breaker opens
            assert (await agent.run("hi")).output == "answer from alive"
        assert fake.requests["dead"] == 2
        assert [(t.name, t.to_state) for t in transitions] == [("model openai:dead", "open")]
        with capture_logs("stalwart.agents") as lines:
            for _ in range(3):
                assert (await agent.run("hi")).output == "answer from alive"
    assert fake.requests["dead"] == 2, "an open breaker must send nothing to its provider"
    assert fake.requests["alive"] == 5
    skipped = [line for line in lines if line["message"] == "model fallback"]
    assert {line["cause_type"] for line in skipped} == {ModelCircuitOpen.__qualname__}


async def test_retry_after_is_honoured_with_the_sdk_retries_off() -> None:
    fake = FakeOpenAI(script={"busy": ["429", "ok"]}, retry_after="0.4")
    async with served(fake, "busy") as models:
        with capture_logs("stalwart.http") as lines:
            result = await Agent(resilient_model(models)).run("hi")
    assert result.output == "answer from busy"
    (_, first), (_, second) = fake.arrivals  # one retry, by stalwart.http, not by the SDK
    assert second - first >= 0.4
    assert [line["status"] for line in lines if line["message"] == "http retry scheduled"] == [429]


async def test_a_stalled_provider_is_cut_at_the_callers_deadline() -> None:
    fake = FakeOpenAI(script={"stuck": ["stall"], "spare": ["ok"]})
    async with served(fake, "stuck", "spare") as models:
        agent = Agent(resilient_model(models))
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            async with deadline(0.5):
                await agent.run("hi")
        elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 2.0
    assert fake.requests["spare"] == 0, "no time was left for the next candidate"


async def test_every_model_call_gets_the_time_left_as_its_timeout() -> None:
    timeouts: list[float] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        assert info.model_settings is not None
        timeouts.append(info.model_settings["timeout"])  # type: ignore[arg-type]
        return ModelResponse(parts=[TextPart("ok")])

    agent = Agent(resilient_model([FunctionModel(answer)]), model_settings={"timeout": 600})
    async with deadline(2.0):
        await agent.run("hi")
    await agent.run("hi")  # no deadline: the caller's own timeout stays
    assert 1.5 < timeouts[0] <= 2.0
    assert timeouts[1] == 600


async def test_no_time_left_means_no_call() -> None:
    calls: list[int] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        return ModelResponse(parts=[TextPart("ok")])

    agent = Agent(resilient_model([FunctionModel(answer)]))
    with pytest.raises(DeadlineExceeded):
        async with deadline(0.0):
            await agent.run("hi")
    assert calls == []


def test_needs_a_candidate() -> None:
    with pytest.raises(ValueError, match="at least one"):
        resilient_model([])


async def test_provider_helpers_turn_the_sdk_retries_off() -> None:
    openai = openai_compatible_model("m", base_url="http://127.0.0.1:9/v1")
    anthropic = anthropic_model("claude-x", api_key="k")
    bedrock = bedrock_model("anthropic.claude-x", region_name="us-east-1")
    try:
        assert openai.client.max_retries == 0  # type: ignore[attr-defined]
        assert anthropic.client.max_retries == 0  # type: ignore[attr-defined]
        retries = bedrock.client.meta.config.retries  # type: ignore[attr-defined]
        assert retries["total_max_attempts"] == 1
    finally:
        await openai.client.close()  # type: ignore[attr-defined]
        await anthropic.client.close()  # type: ignore[attr-defined]
        bedrock.client.close()  # type: ignore[attr-defined]
