"""``/v1/assistant``: conversations with the ledger's assistant, and confirming its proposals.

No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.

The answer to a message is streamed as NDJSON (``application/x-ndjson``), one JSON object per
line: ``{"type": "answer", ...}``, one ``{"type": "proposal", ...}`` per transfer proposed,
then ``{"type": "done"}``. The turn is stored before the first line is sent, so a client that
disconnects mid-stream loses nothing: ``GET`` the conversation.
"""

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ledger.api.deps import LedgerDep, MeteredRoute, Tenant
from ledger.api.problems import ledger_responses
from ledger.assistant.proposals import Proposal, confirm_proposal, get_proposal
from ledger.domain.errors import Contention, NotFound
from stalwart.storage import AsyncStore

if TYPE_CHECKING:
    from ledger.assistant.service import Assistant, Reply

router = APIRouter(prefix="/v1/assistant", tags=["assistant"], route_class=MeteredRoute)
NDJSON = "application/x-ndjson"


class Conversation(BaseModel):
    id: str = Field(description="The conversation id.", examples=["conv_3f9a0c1b2d4e5f6a7b8c"])


class History(Conversation):
    messages: list[dict[str, Any]] = Field(
        description="The stored messages, in pydantic-ai's message JSON (requests, responses, "
        "tool calls and returns).",
        examples=[[]],
    )


class Message(BaseModel):
    message: str = Field(
        min_length=1, max_length=4000, examples=["balance of alice"], description="Your words."
    )


class Confirmed(BaseModel):
    proposal: Proposal = Field(description="The proposal, confirmed, with its transfer id.")
    replayed: bool = Field(
        description="The transfer had already been made by an earlier confirm.", examples=[False]
    )


def _assistant(request: Request) -> "Assistant":
    """The app's assistant, built on first use: pydantic-ai and the model SDKs take seconds
    to import, which ``ledger serve``'s start-up (every worker) does not pay. Two first
    requests racing may each build one; they are equivalent, and one is kept."""
    state = request.app.state
    assistant: Assistant | None = getattr(state, "assistant", None)
    if assistant is None:
        from ledger.assistant.service import build_assistant  # noqa: PLC0415 - see above

        assistant = state.assistant = build_assistant(state.ledger, state.store, state.settings)
    return assistant


def _lines(reply: "Reply") -> AsyncIterator[bytes]:
    async def lines() -> AsyncIterator[bytes]:
        events: list[dict[str, Any]] = [
            {"type": "answer", "text": reply.text, "offline": reply.offline},
            *({"type": "proposal", **p.model_dump()} for p in reply.proposals),
            {"type": "done", "conversation_id": reply.conversation_id},
        ]
        for event in events:
            yield json.dumps(event).encode() + b"\n"

    return lines()


@router.post("/conversations", status_code=201)
async def start_conversation(request: Request, tenant: Tenant, response: Response) -> Conversation:
    """Start a conversation with the assistant (yours only: another tenant gets 404)."""
    conversation_id = await _assistant(request).start(tenant)
    response.headers["Location"] = f"/v1/assistant/conversations/{conversation_id}"
    return Conversation(id=conversation_id)


@router.get(
    "/conversations/{conversation_id}",
    responses=ledger_responses(NotFound),
)
async def get_conversation(request: Request, tenant: Tenant, conversation_id: str) -> History:
    """The conversation's stored history."""
    messages = await _assistant(request).history_json(tenant, conversation_id)
    return History(id=conversation_id, messages=messages)


@router.post(
    "/conversations/{conversation_id}/messages",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The answer as NDJSON lines: answer, proposal(s), done.",
            "content": {NDJSON: {"schema": {"type": "string"}}},
        },
        **ledger_responses(NotFound, Contention),
    },
)
async def send_message(
    request: Request,
    tenant: Tenant,
    conversation_id: str,
    body: Annotated[Message, Body()],
) -> StreamingResponse:
    """Ask the assistant; the turn is stored, then the answer is streamed (NDJSON)."""
    reply = await _assistant(request).ask(tenant, conversation_id, body.message)
    return StreamingResponse(_lines(reply), media_type=NDJSON)


@router.get(
    "/conversations/{conversation_id}/proposals/{proposal_id}",
    responses=ledger_responses(NotFound),
)
async def read_proposal(
    request: Request, tenant: Tenant, conversation_id: str, proposal_id: str
) -> Proposal:
    """A transfer the assistant proposed."""
    store: AsyncStore = request.app.state.store
    return await get_proposal(store, tenant, conversation_id, proposal_id)


@router.post(
    "/conversations/{conversation_id}/proposals/{proposal_id}/confirm",
    responses=ledger_responses(NotFound, Contention),
)
async def confirm(
    request: Request, tenant: Tenant, ledger: LedgerDep, conversation_id: str, proposal_id: str
) -> Confirmed:
    """Make the proposed transfer. Idempotent: confirming again returns the same transfer
    (``replayed: true``) and never moves the money twice."""
    store: AsyncStore = request.app.state.store
    proposal, replayed = await confirm_proposal(ledger, store, tenant, conversation_id, proposal_id)
    return Confirmed(proposal=proposal, replayed=replayed)
