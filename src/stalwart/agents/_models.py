# Copyright 2026 stalwart contributors
"""Model fallback where each candidate sits behind its own breaker and the caller's deadline."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from pydantic_ai.exceptions import ModelAPIError, ModelRequestRejectedError
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.wrapper import WrapperModel

from stalwart.http import ClientPolicy, async_client
from stalwart.observability import breaker_listener, get_logger, metrics_scope, put_metric
from stalwart.resilience import (
    BreakerConfig,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpen,
    CountWindow,
    DeadlineExceeded,
    deadline,
    remaining,
)

if TYPE_CHECKING:
    from pydantic_ai import RunContext
    from pydantic_ai.messages import ModelMessage, ModelResponse
    from pydantic_ai.settings import ModelSettings

_log = get_logger("stalwart.agents")

#: One breaker per candidate model: judged over its last 10 calls, opens at 50 % failures once
#: 5 calls are in, probes again after 30 s. Model calls are few and slow, so the window is
#: small: a dead provider is skipped after a handful of turns, not after a hundred.
MODEL_BREAKER = BreakerConfig(window=CountWindow(10), min_calls=5, failure_rate=0.5, open_s=30.0)

#: How the OpenAI-compatible helper calls a provider: 429/503 retried (POSTs carry an
#: automatic Idempotency-Key) honouring Retry-After up to 3 attempts; no per-host breaker (the
#: model's own breaker judges the provider) and no total timeout of its own (the caller's
#: deadline bounds the call); reads may take 120 s, as completions are slow.
MODEL_HTTP_POLICY = ClientPolicy(
    breaker=None,
    total_s=None,
    attempt_timeout_s=120.0,
    read_timeout_s=120.0,
    write_timeout_s=30.0,
)


class ModelCircuitOpen(ModelAPIError):
    """A candidate was skipped without a request: its breaker is open.

    A :class:`~pydantic_ai.exceptions.ModelAPIError`, so the fallback moves to the next
    candidate; ``retry_after`` is when the breaker probes again.
    """


def _counts_as_failure(exc: BaseException) -> bool | None:
    """True: the provider failed; False: it answered (a rejected request says it is up);
    None: no verdict (cancellation, a bug of ours, an error the provider never saw)."""
    if isinstance(exc, ModelRequestRejectedError | ModelCircuitOpen):
        return False
    if isinstance(exc, ModelAPIError | TimeoutError):
        return True
    return None


def _with_remaining_time(settings: ModelSettings | None) -> ModelSettings | None:
    """``settings`` with ``timeout`` capped at the time left before the caller's deadline."""
    left = remaining()
    if left is None:
        return settings
    if left <= 0:
        raise DeadlineExceeded("no time left for a model call")
    merged: dict[str, Any] = dict(settings or {})
    current = merged.get("timeout")
    if not isinstance(current, int | float) or current > left:
        merged["timeout"] = left
    return merged  # type: ignore[return-value]  # a ModelSettings with one key set


@dataclass(frozen=True, slots=True)
class _Candidate:
    breaker: CircuitBreaker
    next_name: str | None


class GuardedModel(WrapperModel):
    """One candidate of :func:`resilient_model`: its breaker admits or skips each call, the
    call gets the time left before the caller's deadline, and a failure is logged as a
    fallback to the next candidate."""

    def __init__(self, wrapped: Model, breaker: CircuitBreaker, next_name: str | None) -> None:
        super().__init__(wrapped)
        self._candidate = _Candidate(breaker, next_name)

    @property
    def breaker(self) -> CircuitBreaker:
        """This candidate's breaker."""
        return self._candidate.breaker

    def _admit(self) -> int:
        try:
            return self._candidate.breaker.admit()
        except CircuitOpen as exc:
            error = ModelCircuitOpen(self.model_name, str(exc), retry_after=exc.retry_after_s)
            self._fell_back(error)
            raise error from exc

    def _fell_back(self, exc: BaseException) -> None:
        """One log line and one metric per fallback (the fallback moves on after a
        ModelAPIError; after anything else the run fails, so nothing falls back)."""
        if not isinstance(exc, ModelAPIError):
            return
        _log.warning(
            "model fallback",
            model=self.model_name,
            next_model=self._candidate.next_name,
            cause_type=type(exc).__qualname__,
            cause=str(exc),
        )
        with metrics_scope(dimensions={"model": self.model_name}):
            put_metric("ModelFallbacks", 1)

    def _judge(self, ticket: int, started: float, exc: BaseException | None) -> None:
        elapsed = time.monotonic() - started
        verdict = False if exc is None else _counts_as_failure(exc)
        if verdict is None:
            self._candidate.breaker.release(ticket)
        elif verdict:
            self._candidate.breaker.record_failure(ticket, elapsed)
        else:
            self._candidate.breaker.record_success(ticket, elapsed)
        if exc is not None:
            self._fell_back(exc)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """Send the request if the breaker admits it, within the time left."""
        settings = _with_remaining_time(model_settings)
        ticket = self._admit()
        started = time.monotonic()
        try:
            left = remaining()
            if left is None:
                response = await self.wrapped.request(messages, settings, model_request_parameters)
            else:
                async with deadline(left):  # cancels a call that outlives the caller's deadline
                    response = await self.wrapped.request(
                        messages, settings, model_request_parameters
                    )
        except BaseException as exc:
            self._judge(ticket, started, exc)
            raise
        self._judge(ticket, started, None)
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """Open the stream if the breaker admits it, with the time left as its timeout."""
        settings = _with_remaining_time(model_settings)
        ticket = self._admit()
        started = time.monotonic()
        try:
            async with self.wrapped.request_stream(
                messages, settings, model_request_parameters, run_context
            ) as stream:
                yield stream
        except BaseException as exc:
            self._judge(ticket, started, exc)
            raise
        self._judge(ticket, started, None)


def _breaker_for_model(name: str) -> CircuitBreaker:
    return CircuitBreaker(name, MODEL_BREAKER, listeners=(breaker_listener(),))


def resilient_model(
    candidates: Sequence[Model], *, breakers: BreakerRegistry | None = None
) -> FallbackModel:
    """A pydantic-ai model trying ``candidates`` in order, each behind its own breaker.

    A candidate whose breaker is open is skipped at once (no request is sent); every call gets
    the time left before the caller's :func:`stalwart.resilience.deadline` as its timeout and
    is cancelled at the deadline. Breakers come from ``breakers`` by the name ``model
    <model_id>`` (default: a registry of :data:`MODEL_BREAKER` breakers that log and emit a
    metric per transition). Each fallback logs ``model fallback`` and emits ``ModelFallbacks``.

    >>> from pydantic_ai.models.test import TestModel
    >>> model = resilient_model([TestModel(custom_output_text="hi")])
    >>> [m.breaker.name for m in model.models]
    ['model test:test']
    """
    if not candidates:
        raise ValueError("resilient_model needs at least one candidate model")
    registry = breakers or BreakerRegistry(_breaker_for_model)
    names = [model.model_name for model in candidates]
    guarded = [
        GuardedModel(
            model,
            registry.get(f"model {model.model_id}"),
            names[index + 1] if index + 1 < len(names) else None,
        )
        for index, model in enumerate(candidates)
    ]
    return FallbackModel(guarded[0], *guarded[1:])


def _secret(value: str | SecretStr | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def openai_compatible_model(
    model_name: str,
    *,
    base_url: str | None = None,
    api_key: str | SecretStr | None = None,
    policy: ClientPolicy = MODEL_HTTP_POLICY,
) -> Model:
    """An OpenAI chat-completions model (OpenAI or any compatible server) whose requests go
    through :func:`stalwart.http.async_client` (``Retry-After`` honoured on 429/503, the
    caller's deadline bounding each attempt) with the SDK's own retries off.

    >>> model = openai_compatible_model("gpt-4o-mini", base_url="http://127.0.0.1:8000/v1")
    >>> model.model_name
    'gpt-4o-mini'
    """
    from openai import AsyncOpenAI  # noqa: PLC0415 - in the agents extra, like pydantic-ai's
    from pydantic_ai.models.openai import OpenAIChatModel  # noqa: PLC0415
    from pydantic_ai.providers.openai import OpenAIProvider  # noqa: PLC0415

    client = AsyncOpenAI(
        base_url=base_url,
        # A local OpenAI-compatible server often needs no key, but the SDK requires one.
        api_key=_secret(api_key) or "no-key",
        # The SDK's types name httpx2 only; it accepts an httpx client too (its legacy path).
        http_client=async_client(policy),  # type: ignore[arg-type]
        max_retries=0,  # stalwart.http retries, honouring Retry-After
    )
    return OpenAIChatModel(model_name, provider=OpenAIProvider(openai_client=client))


def anthropic_model(
    model_name: str, *, api_key: str | SecretStr | None = None, base_url: str | None = None
) -> Model:
    """An Anthropic model with the SDK's own retries off, so a failure falls back at once.

    The Anthropic SDK runs on ``httpx2`` and refuses httpx clients, so its requests cannot go
    through :mod:`stalwart.http`: ``Retry-After`` is not waited for; the breaker, the fallback
    and the deadline apply as for every candidate.
    """
    try:
        from anthropic import AsyncAnthropic  # noqa: PLC0415
        from pydantic_ai.models.anthropic import AnthropicModel  # noqa: PLC0415
        from pydantic_ai.providers.anthropic import AnthropicProvider  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(
            "anthropic_model needs pydantic-ai's Anthropic support: install "
            "'pydantic-ai-slim[anthropic]' beside stalwart[agents]",
            name="anthropic",
        ) from exc
    client = AsyncAnthropic(api_key=_secret(api_key), base_url=base_url, max_retries=0)
    return AnthropicModel(model_name, provider=AnthropicProvider(anthropic_client=client))


def bedrock_model(
    model_name: str,
    *,
    region_name: str | None = None,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 120.0,
) -> Model:
    """An Amazon Bedrock (Converse) model on a boto3 client making one attempt per call
    (botocore's retries off) with explicit timeouts; credentials from the usual AWS chain.
    Throttling falls back to the next candidate instead of waiting."""
    try:
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415
        from pydantic_ai.models.bedrock import BedrockConverseModel  # noqa: PLC0415
        from pydantic_ai.providers.bedrock import BedrockProvider  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(
            "bedrock_model needs pydantic-ai's Bedrock support: install "
            "'pydantic-ai-slim[bedrock]' beside stalwart[agents]",
            name="boto3",
        ) from exc
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    client = boto3.client("bedrock-runtime", region_name=region_name, config=config)
    return BedrockConverseModel(model_name, provider=BedrockProvider(bedrock_client=client))
