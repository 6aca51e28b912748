# Copyright 2026 stalwart contributors
"""Durable conversations: the history in a store, one read and one conditional write a turn.

Errors::

    ConversationError
    ├── ConversationConflict   other turns kept winning the write; nothing of ours was stored
    └── ConversationNotFound   ``run(..., must_exist=True)`` on a conversation never started
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
from pydantic_core import to_json

from stalwart.observability import get_logger
from stalwart.resilience import deadline
from stalwart.storage import AlreadyExists, AsyncStore, Key, Record, Store, VersionConflict

if TYPE_CHECKING:
    from pydantic_ai import Agent
    from pydantic_ai.agent import AgentRunResult

_log = get_logger("stalwart.agents")


class ConversationError(Exception):
    """Root of the durable conversations' errors."""


class ConversationConflict(ConversationError):
    """Concurrent turns on the conversation won every write we attempted.

    The stored history holds their messages, none of this turn's: send the message again.
    """

    def __init__(self, conversation_id: str, attempts: int) -> None:
        super().__init__(
            f"conversation {conversation_id!r}: {attempts} attempt(s) lost to concurrent turns; "
            "the stored history is theirs, this turn was not saved"
        )
        self.conversation_id = conversation_id
        self.attempts = attempts


class ConversationNotFound(ConversationError):
    """The conversation was never started (see ``start``), or it expired."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation {conversation_id!r} not found")
        self.conversation_id = conversation_id


@dataclass(frozen=True, slots=True)
class ConversationPolicy:
    """How conversations are stored.

    - ``key_prefix``: the record of conversation ``c`` is ``Key(f"{key_prefix}:{c}")``.
    - ``attempts``: how many times a turn runs when concurrent turns win the write (each
      attempt re-runs the agent on the history that won); then :class:`ConversationConflict`.
    - ``ttl``: seconds a conversation lives after its last turn (``None``: forever).
    - ``deadline_s``: a stalwart deadline bounding each turn (every model call gets the time
      left); ``None``: only the caller's.
    """

    key_prefix: str = "conversation"
    attempts: int = 3
    ttl: float | None = None
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("ConversationPolicy attempts must be >= 1")


def _messages_of(record: Record | None) -> list[ModelMessage]:
    if record is None:
        return []
    stored = record.data["messages"]
    if isinstance(stored, str):
        return ModelMessagesTypeAdapter.validate_json(stored)
    # A record written before the history became one string: the messages as a JSON array.
    return ModelMessagesTypeAdapter.validate_python(stored)


def _stored_json(record: Record | None) -> str:
    """The stored history as a JSON array (a record of the list format is converted)."""
    if record is None:
        return "[]"
    stored = record.data["messages"]
    return stored if isinstance(stored, str) else to_json(stored).decode()


def _data_of(messages: list[ModelMessage], before: Record | None = None) -> dict[str, Any]:
    """The record's data: the history as one JSON array in a string -- the stored one as it
    was (not dumped again: a turn costs its own messages, not the whole conversation's) and
    ``messages`` appended. One string, not nested objects: pydantic parses it in one call,
    and the store encodes and checks one value instead of walking every part of every
    message (that walk, on the write and the read, cost more than the rest of the turn)."""
    stored = _stored_json(before)
    added = ModelMessagesTypeAdapter.dump_json(messages).decode()
    if stored == "[]" or added == "[]":
        return {"messages": added if stored == "[]" else stored}
    return {"messages": f"{stored[:-1]},{added[1:]}"}


def _check_options(options: dict[str, Any]) -> None:
    for untrusted in ("message_history", "conversation"):
        if untrusted in options:
            raise TypeError(
                f"{untrusted}= is not accepted: the stored history is the turn's input, "
                "never history sent by a client"
            )


def _turn_deadline(policy: ConversationPolicy) -> deadline | contextlib.nullcontext[None]:
    """The turn's deadline, as ``with`` or ``async with`` (both forms serve both)."""
    return contextlib.nullcontext() if policy.deadline_s is None else deadline(policy.deadline_s)


@dataclass(frozen=True, slots=True)
class _Read:
    key: Key


@dataclass(frozen=True, slots=True)
class _RunAgent:
    history: list[ModelMessage]


@dataclass(frozen=True, slots=True)
class _Write:
    """Create the record (``expected_version`` None) or replace the version we read."""

    key: Key
    data: dict[str, Any]
    expected_version: int | None
    ttl: float | None

    def apply(self, store: Store) -> Record:
        if self.expected_version is None:
            return store.create(self.key, self.data, ttl=self.ttl)
        return store.replace(
            self.key, self.data, expected_version=self.expected_version, ttl=self.ttl
        )

    async def apply_async(self, store: AsyncStore) -> Record:
        if self.expected_version is None:
            return await store.create(self.key, self.data, ttl=self.ttl)
        return await store.replace(
            self.key, self.data, expected_version=self.expected_version, ttl=self.ttl
        )


@dataclass(frozen=True, slots=True)
class _Lost:
    """Our write lost to a concurrent turn; ``current`` is the record that beat us (returned
    with the conflict: no extra read)."""

    current: Record | None


def _turn_plan(
    key: Key, conversation_id: str, policy: ConversationPolicy, *, must_exist: bool
) -> Generator[_Read | _RunAgent | _Write, Any, AgentRunResult[Any]]:
    """One turn as steps a sync or an async driver performs: read, run the agent, write
    conditionally; after a lost write, run again on the winner's history."""
    record: Record | None = yield _Read(key)
    if must_exist and record is None:
        raise ConversationNotFound(conversation_id)
    for attempt in range(1, policy.attempts + 1):
        result: AgentRunResult[Any] = yield _RunAgent(_messages_of(record))
        version = None if record is None else record.version
        written = yield _Write(key, _data_of(result.new_messages(), record), version, policy.ttl)
        if not isinstance(written, _Lost):
            return result
        _log.info("conversation write conflict", conversation=conversation_id, attempt=attempt)
        record = written.current
    raise ConversationConflict(conversation_id, policy.attempts)


class Conversations:
    """Durable conversations on a sync :class:`~stalwart.storage.Store`.

    >>> from pydantic_ai import Agent
    >>> from pydantic_ai.models.test import TestModel
    >>> from stalwart.storage import open_store
    >>> chats = Conversations(open_store("sqlite:///:memory:?table=chats"))
    >>> agent = Agent(TestModel(custom_output_text="hello"))
    >>> chats.run(agent, "c-1", "hi").output
    'hello'
    >>> len(chats.history("c-1"))
    2
    """

    def __init__(self, store: Store, policy: ConversationPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or ConversationPolicy()

    def key(self, conversation_id: str) -> Key:
        """The record holding ``conversation_id``'s history."""
        return Key(f"{self.policy.key_prefix}:{conversation_id}")

    def history(self, conversation_id: str) -> list[ModelMessage]:
        """The stored messages (empty for an unknown conversation): one read."""
        return _messages_of(self.store.get(self.key(conversation_id)))

    def start(self, conversation_id: str) -> None:
        """Store an empty history (``AlreadyExists`` if the conversation exists): one write."""
        self.store.create(self.key(conversation_id), _data_of([]), ttl=self.policy.ttl)

    def run(
        self,
        agent: Agent[Any, Any],
        conversation_id: str,
        prompt: str,
        *,
        must_exist: bool = False,
        **options: Any,
    ) -> AgentRunResult[Any]:
        """Run one turn on the stored history and save it with one conditional write.

        ``options`` go to ``agent.run_sync`` (``deps=``...), except history, which only
        comes from the store. A turn that raises stores nothing; a turn whose write loses to a
        concurrent turn runs again on the winner's history, up to ``policy.attempts`` times.
        With ``must_exist``, a conversation never started raises :class:`ConversationNotFound`.
        """
        _check_options(options)
        plan = _turn_plan(
            self.key(conversation_id), conversation_id, self.policy, must_exist=must_exist
        )
        step = next(plan)
        while True:
            value: Any
            if isinstance(step, _Read):
                value = self.store.get(step.key)
            elif isinstance(step, _RunAgent):
                with _turn_deadline(self.policy):
                    value = agent.run_sync(
                        prompt,
                        message_history=step.history,
                        conversation_id=conversation_id,
                        **options,
                    )
            else:
                try:
                    value = step.apply(self.store)
                except (AlreadyExists, VersionConflict) as conflict:
                    value = _Lost(conflict.current)
            try:
                step = plan.send(value)
            except StopIteration as done:
                result: AgentRunResult[Any] = done.value
                return result


class AsyncConversations:
    """Durable conversations on an :class:`~stalwart.storage.AsyncStore` (``await run(...)``)."""

    def __init__(self, store: AsyncStore, policy: ConversationPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or ConversationPolicy()

    def key(self, conversation_id: str) -> Key:
        """The record holding ``conversation_id``'s history."""
        return Key(f"{self.policy.key_prefix}:{conversation_id}")

    async def history(self, conversation_id: str) -> list[ModelMessage]:
        """The stored messages (empty for an unknown conversation): one read."""
        return _messages_of(await self.store.get(self.key(conversation_id)))

    async def find(self, conversation_id: str) -> list[ModelMessage] | None:
        """The stored messages, or ``None`` for a conversation never started: one read."""
        record = await self.store.get(self.key(conversation_id))
        return None if record is None else _messages_of(record)

    async def start(self, conversation_id: str) -> None:
        """Store an empty history (``AlreadyExists`` if the conversation exists): one write."""
        await self.store.create(self.key(conversation_id), _data_of([]), ttl=self.policy.ttl)

    async def run(
        self,
        agent: Agent[Any, Any],
        conversation_id: str,
        prompt: str,
        *,
        must_exist: bool = False,
        **options: Any,
    ) -> AgentRunResult[Any]:
        """:meth:`Conversations.run` with ``await agent.run(...)``."""
        _check_options(options)
        plan = _turn_plan(
            self.key(conversation_id), conversation_id, self.policy, must_exist=must_exist
        )
        step = next(plan)
        while True:
            value: Any
            if isinstance(step, _Read):
                value = await self.store.get(step.key)
            elif isinstance(step, _RunAgent):
                async with _turn_deadline(self.policy):
                    value = await agent.run(
                        prompt,
                        message_history=step.history,
                        conversation_id=conversation_id,
                        **options,
                    )
            else:
                try:
                    value = await step.apply_async(self.store)
                except (AlreadyExists, VersionConflict) as conflict:
                    value = _Lost(conflict.current)
            try:
                step = plan.send(value)
            except StopIteration as done:
                result: AgentRunResult[Any] = done.value
                return result
