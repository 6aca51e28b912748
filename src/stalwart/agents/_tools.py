# Copyright 2026 stalwart contributors
"""``@idempotent_tool``: a side-effecting tool runs once per conversation, tool and arguments."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from typing import TYPE_CHECKING, Any, cast

from pydantic_ai import RunContext

from stalwart.idempotency import AsyncIdempotency, Codec, Idempotency, InProgress, idempotent
from stalwart.idempotency._core import canonical_sha256
from stalwart.idempotency._function import jsonable
from stalwart.resilience import remaining

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from stalwart.idempotency import IdempotentDecorator


def _conversation_of(ctx: object, tool: str) -> str:
    if not isinstance(ctx, RunContext):
        raise TypeError(
            f"@idempotent_tool {tool}: the first argument must be pydantic-ai's RunContext "
            f"(got {type(ctx).__name__}); declare the tool as def {tool}(ctx: RunContext[...], ...)"
        )
    conversation = ctx.conversation_id
    if not conversation:
        raise ValueError(f"@idempotent_tool {tool}: the run has no conversation_id")
    return conversation


def _pauses(wait_s: float) -> Iterator[float]:
    """Pauses between polls of a duplicate in progress: 10 ms doubling to 250 ms, for at most
    ``wait_s`` seconds and never past the caller's deadline."""
    give_up = time.monotonic() + wait_s
    pause = 0.01
    while True:
        left = min(give_up - time.monotonic(), remaining() or wait_s)
        if left <= 0:
            return
        yield min(pause, left)
        pause = min(pause * 2, 0.25)


def _waiting_for_duplicates[**P, R](func: Callable[P, R], wait_s: float) -> Callable[P, R]:
    """``func`` (an idempotent call) waiting while a duplicate holds the key, then replaying
    its result: models often send the same call twice in one response, run in parallel."""
    if inspect.iscoroutinefunction(func):
        async_func = cast("Callable[..., Awaitable[Any]]", func)

        @functools.wraps(func)
        async def wait_async(*args: Any, **kwargs: Any) -> Any:
            for pause in _pauses(wait_s):
                try:
                    return await async_func(*args, **kwargs)
                except InProgress:
                    await asyncio.sleep(pause)
            return await async_func(*args, **kwargs)

        return cast("Callable[P, R]", wait_async)

    @functools.wraps(func)
    def wait(*args: P.args, **kwargs: P.kwargs) -> R:
        for pause in _pauses(wait_s):
            try:
                return func(*args, **kwargs)
            except InProgress:
                time.sleep(pause)
        return func(*args, **kwargs)

    return wait


def idempotent_tool(
    layer: Idempotency | AsyncIdempotency,
    *,
    name: str | None = None,
    codec: Codec | None = None,
    namespace_prefix: str = "agent-tool",
    wait_s: float = 30.0,
) -> IdempotentDecorator:
    """Run a side-effecting tool once per (conversation, tool name, arguments); a repeated or
    retried call -- in the same run, a later turn, or a retried turn -- gets the first result
    back and the effect never happens twice.

    The tool's first parameter is pydantic-ai's ``RunContext``; its ``conversation_id`` scopes
    the key, never the model's ``tool_call_id`` (a new one for every call). The other
    arguments are hashed canonically (key order and JSON formatting do not matter). Built on
    :func:`stalwart.idempotency.idempotent`: sync tools need an ``Idempotency``, async ones an
    ``AsyncIdempotency``; results are stored with ``codec`` (default: the return annotation's
    JSON form); an exception is not stored, so a retry runs the tool again. A duplicate
    arriving while the first call runs (models send parallel calls) waits up to ``wait_s``
    seconds (never past the caller's deadline) for its result, then raises ``InProgress``.

    >>> from pydantic_ai import Agent, RunContext
    >>> from pydantic_ai.models.test import TestModel
    >>> from stalwart.storage import open_store
    >>> layer = Idempotency(open_store("sqlite:///:memory:?table=tools"))
    >>> sent: list[str] = []
    >>> @idempotent_tool(layer)
    ... def send_email(ctx: RunContext[None], to: str) -> str:
    ...     sent.append(to)
    ...     return f"sent to {to}"
    >>> agent = Agent(TestModel(), tools=[send_email])
    >>> _ = agent.run_sync("mail bob", conversation_id="c-1")
    >>> _ = agent.run_sync("mail bob again", conversation_id="c-1")
    >>> len(sent)
    1
    """

    def decorate[**P, R](func: Callable[P, R], /) -> Callable[P, R]:
        tool = name or func.__name__
        signature = inspect.signature(func)
        parameters = list(signature.parameters)
        if not parameters:
            raise TypeError(f"@idempotent_tool {tool}: the first parameter must be the RunContext")
        arguments = parameters[1:]

        def key(*args: Any, **kwargs: Any) -> str:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            conversation = _conversation_of(values.pop(parameters[0]), tool)
            # A hash: the conversation id and the arguments may be long, a key is <= 255.
            return canonical_sha256([conversation, jsonable(values)])

        once = idempotent(
            layer,
            key=key,
            namespace=f"{namespace_prefix}:{tool}",
            codec=codec,
            fingerprint_args=arguments,
        )(func)
        return _waiting_for_duplicates(once, wait_s)

    return decorate
