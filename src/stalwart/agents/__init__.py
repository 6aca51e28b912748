# Copyright 2026 stalwart contributors
"""AI agents on pydantic-ai: resilient model calls, idempotent tools, durable conversations.

See ``docs/agents.md``. Needs the ``agents`` extra (pydantic-ai).
"""

from stalwart._extras import require_extra

require_extra("pydantic_ai", "agents", feature="stalwart.agents")

from stalwart.agents._conversations import (  # noqa: E402 - after the extra check
    AsyncConversations,
    ConversationConflict,
    ConversationError,
    ConversationNotFound,
    ConversationPolicy,
    Conversations,
)
from stalwart.agents._models import (  # noqa: E402
    MODEL_BREAKER,
    MODEL_HTTP_POLICY,
    GuardedModel,
    ModelCircuitOpen,
    anthropic_model,
    bedrock_model,
    openai_compatible_model,
    resilient_model,
)
from stalwart.agents._tools import idempotent_tool  # noqa: E402

__all__ = [
    "MODEL_BREAKER",
    "MODEL_HTTP_POLICY",
    "AsyncConversations",
    "ConversationConflict",
    "ConversationError",
    "ConversationNotFound",
    "ConversationPolicy",
    "Conversations",
    "GuardedModel",
    "ModelCircuitOpen",
    "anthropic_model",
    "bedrock_model",
    "idempotent_tool",
    "openai_compatible_model",
    "resilient_model",
]
